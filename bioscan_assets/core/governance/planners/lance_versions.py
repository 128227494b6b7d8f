"""LanceDB: table versions older than the policy's age go, never the latest; tags per policy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from bioscan_assets.core import layout
from bioscan_assets.core.governance.deletion import Deletion
from bioscan_assets.core.governance.lineage import INDEX_ASSET
from bioscan_assets.core.governance.listing import child_dirs
from bioscan_assets.core.governance.policy import days
from bioscan_assets.core.layout import TENANT_RE
from bioscan_assets.core.storage import Store


def _lance_tables(store: Store) -> Iterator[tuple[str, str, Any]]:
    """(tenant, table name, table) of every LanceDB database under `lancedb/`."""
    import lancedb  # heavy: only a retention run with this policy on pays for it

    for tenant in child_dirs(store, layout.lancedb_root()):
        if not TENANT_RE.fullmatch(tenant):
            continue
        db = lancedb.connect(store.url(layout.lancedb_dir(tenant)))
        names: list[str] = []
        token = None
        while True:  # list_tables pages its answer
            page = db.list_tables(page_token=token)
            names += list(getattr(page, "tables", page))
            token = getattr(page, "page_token", None)
            if not token:
                break
        for name in sorted(names):
            yield tenant, name, db.open_table(name)


def _version_time(entry: Mapping[str, Any]) -> datetime:
    # LanceDB reports naive local times; astimezone() reads a naive time as local.
    return entry["timestamp"].astimezone(UTC)


def plan_lancedb(store: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    """Versions older than the cutoff, never the latest; tags per the policy's `tags`."""
    older = days(settings["cleanup_older_than_days"])
    tag_mode = settings.get("tags", "keep")
    out = []
    for tenant, name, table in _lance_tables(store):
        versions = sorted(table.list_versions(), key=lambda v: v["version"])
        if len(versions) < 2:
            continue
        times = {int(v["version"]): _version_time(v) for v in versions}
        latest = max(times)
        cutoff = min(now - older, times[latest])
        tags = {name_: int(info["version"]) for name_, info in table.tags.list().items()}
        actions: list[tuple[str, str, int]] = []
        old_tagged = {t: v for t, v in tags.items() if v != latest and times.get(v, now) < cutoff}
        if old_tagged:
            if tag_mode == "keep":
                cutoff = min(times[v] for v in old_tagged.values())
            else:
                actions = [(tag_mode, t, v) for t, v in sorted(old_tagged.items())]
        doomed = [v for v, t in sorted(times.items()) if t < cutoff and v != latest]
        if not doomed:
            continue
        kept = [t for v, t in times.items() if v not in doomed]
        # The cut lies halfway between the newest version that goes and the oldest that stays,
        # so the clock moving on between plan and cleanup does not change what goes.
        last_out, first_in = max(times[v] for v in doomed), min(kept)
        cut = last_out + (first_in - last_out) / 2
        out.append(
            Deletion(
                policy="lancedb",
                root="storage",
                target=f"{layout.lancedb_dir(tenant)}/{name}",
                files=(),
                bytes=0,
                reason=f"table versions older than {older.days} day(s) (latest {latest} kept"
                + (
                    f"; tagged versions {sorted(old_tagged.values())} {tag_mode}"
                    if old_tagged
                    else ""
                )
                + ")",
                asset=INDEX_ASSET,
                versions=tuple(doomed),
                tag_actions=tuple(actions),
                cutoff=cut.isoformat(),
                details=(("tenant", tenant), ("table", name), ("latest", latest)),
            )
        )
    return out
