"""Build real data for downstream tests: a lab drop through raw copy and the shard writer, and
a labelled reference through tiny-model embeddings and the index."""

from __future__ import annotations

from pathlib import Path

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
from bioscan_assets.core.index.upsert import upsert_partition
from bioscan_assets.core.ingest.raw import copy_drop
from bioscan_assets.core.ingest.shard_config import ShardConfig
from bioscan_assets.core.ingest.shard_writer import write_shards
from bioscan_assets.core.ingest.validation import validate_drop
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from bioscan_assets.demo import DEMO_LANDING, stage_drops
from tests.helpers import write_drop
from tests.synthetic_taxa import make_reference, taxonomy_tsv


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


def embedded_reference(tmp_path: Path, per_genus: int) -> tuple[Store, Store]:
    """One labelled drop `lab-a/REF-1` through shards, tiny-model embeddings and the index."""
    landing, store = Store(str(tmp_path / "landing")), Store(str(tmp_path / "storage"))
    ids, seqs, lineages = make_reference(seed=5, per_genus=per_genus)
    write_drop(
        landing,
        "lab-a",
        "REF-1",
        sequences=dict(zip(ids, seqs, strict=True)),
        taxonomy=taxonomy_tsv(ids, lineages),
    )
    ingest(landing, store, "lab-a", "REF-1")
    embed_partition(
        store, "lab-a", "REF-1", EmbeddingExecutor(load_model("tiny"), Accelerator.discover())
    )
    upsert_partition(store, "lab-a", "REF-1", "tiny")
    return landing, store
