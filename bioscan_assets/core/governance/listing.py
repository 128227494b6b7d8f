"""What governance asks a store beyond reading files: its sub-folders and when a file was written.

Both work on a local root and on GCS, where folders are only name prefixes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bioscan_assets.core.storage import Store


def child_dirs(store: Store, prefix: str, *, hidden: bool = False) -> list[str]:
    """Names of the folders directly under `prefix`, sorted; [] when it does not exist.

    Locally, names starting with "." (a writer's temp folders) are left out unless `hidden`.
    """
    local = store.local_path(prefix)
    if local is not None:
        if not local.is_dir():
            return []
        return sorted(
            p.name for p in local.iterdir() if p.is_dir() and (hidden or not p.name.startswith("."))
        )
    try:
        entries = store.fs.ls(store.url(prefix).removeprefix("gs://"), detail=True)
    except FileNotFoundError:
        return []
    return sorted(
        e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"
    )


def modified_at(store: Store, rel: str) -> datetime | None:
    """When a file was last written (UTC), or None when it does not exist."""
    local = store.local_path(rel)
    if local is not None:
        try:
            return datetime.fromtimestamp(local.stat().st_mtime, UTC)
        except FileNotFoundError:
            return None
    try:
        info = store.fs.info(store.url(rel).removeprefix("gs://"))
    except FileNotFoundError:
        return None
    stamp = info.get("updated") or info.get("mtime") or info.get("timeCreated")
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return None
