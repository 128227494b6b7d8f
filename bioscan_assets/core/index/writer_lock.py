"""One writer per LanceDB table: concurrent merge_inserts can duplicate keys (lancedb#3377).

On local storage an flock serialises writers across processes and threads; on GCS there is no
lock here and the Dagster pool `lancedb` (limit 1) is the guard. The retention job's compaction
takes the same lock, so it never races an upsert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bioscan_assets.core import layout
from bioscan_assets.core.file_lock import exclusive_lock
from bioscan_assets.core.index.tables import check_tenant
from bioscan_assets.core.storage import Store


@contextlib.contextmanager
def writer_lock(
    store: Store, tenant: str, table: str, timeout_s: float = 3600.0
) -> Iterator[str | None]:
    """One writer per table: an flock on `<db>/_locks/<table>.lock` (local storage only).

    On GCS there is no lock here: run the asset under the Dagster pool `lancedb` (limit 1).
    Yields the lock path, or None when no lock is taken.
    """
    local = store.local_path(layout.lancedb_dir(check_tenant(tenant)))
    if local is None:
        yield None
        return
    with exclusive_lock(local / "_locks" / f"{table}.lock", "writer lock", timeout_s) as path:
        yield path
