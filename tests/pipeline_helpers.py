"""Build real shards for downstream tests: a lab drop through raw copy and the shard writer."""

from __future__ import annotations

from pathlib import Path

from bioscan_assets.core.ingest.raw import copy_drop
from bioscan_assets.core.ingest.shard_config import ShardConfig
from bioscan_assets.core.ingest.shard_writer import write_shards
from bioscan_assets.core.ingest.validation import validate_drop
from bioscan_assets.core.storage import Store
from bioscan_assets.demo import DEMO_LANDING, stage_drops


def ingest(
    landing: Store, storage: Store, tenant: str, sample_id: str, config: ShardConfig | None = None
) -> dict:
    """raw copy + shards for one drop, the way the ingest assets do it; returns the shard manifest."""
    drop = validate_drop(landing, tenant, sample_id)
    raw = copy_drop(landing, storage, drop, landing.read_bytes(f"{tenant}/{sample_id}/sample.json"))
    return write_shards(storage, drop, raw, config)


def ingest_demo(tmp_path: Path) -> tuple[Store, Store, list[str]]:
    """All bundled demo drops ingested into fresh landing/storage stores under tmp_path."""
    landing, storage = Store(str(tmp_path / "landing")), Store(str(tmp_path / "storage"))
    staged = stage_drops(DEMO_LANDING, landing)
    for tenant, sample_id in staged:
        ingest(landing, storage, tenant, sample_id)
    return landing, storage, [f"{t}/{s}" for t, s in staged]
