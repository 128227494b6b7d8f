"""One writer at a time per hash-store folder (local storage).

On GCS there is no lock here (the same limit as the vector index's writer lock): two runs of one
tenant at once may then compute a hash twice. That wastes compute but corrupts nothing, because
the store is append-only and readers take the earliest commit of a hash.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bioscan_assets.core.file_lock import exclusive_lock
from bioscan_assets.core.storage import Store

LOCK_NAME = ".writer.lock"


@contextlib.contextmanager
def folder_lock(store: Store, folder: str, timeout_s: float) -> Iterator[str | None]:
    """Exclusive lock on `<folder>/.writer.lock`; yields its path, or None on GCS."""
    local = store.local_path(folder)
    if local is None:
        yield None
        return
    with exclusive_lock(local / LOCK_NAME, "hash-store lock", timeout_s) as path:
        yield path
