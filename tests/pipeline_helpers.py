"""Build real shards for downstream tests: a lab drop through raw copy and the shard writer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bioscan_assets.core.ingest.raw import copy_drop
from bioscan_assets.core.ingest.shards import ShardConfig, write_shards
from bioscan_assets.core.ingest.validation import validate_drop
from bioscan_assets.core.storage import Store
from bioscan_assets.demo import DEMO_LANDING, stage_drops


def write_fasta_drop(
    landing: Path,
    tenant: str,
    sample_id: str,
    sequences: dict[str, str],
    taxonomy: dict | None = None,
) -> None:
    folder = landing / tenant / sample_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seqs.fasta").write_text("".join(f">{k}\n{v}\n" for k, v in sequences.items()))
    doc = {
        "sample_id": sample_id,
        "tenant": tenant,
        "collected_at": "2026-11-01T00:00:00Z",
        "files": [
            {
                "path": "seqs.fasta",
                "sha256": hashlib.sha256((folder / "seqs.fasta").read_bytes()).hexdigest(),
            }
        ],
    }
    if taxonomy:
        (folder / "taxonomy.tsv").write_text(
            "Feature ID\tTaxon\n" + "".join(f"{k}\t{v}\n" for k, v in taxonomy.items())
        )
        doc["taxonomy"] = "taxonomy.tsv"
    (folder / "sample.json").write_text(json.dumps(doc))


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
