"""Real shards (through the ingest code) plus embedding parts written the way the embed step does."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_assets.core import layout
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches
from bioscan_assets.core.schema import embedding_schema
from bioscan_assets.core.storage import Store
from tests.helpers import write_drop
from tests.pipeline_helpers import ingest

GENERA = {
    "Bacillus": "k__Bacteria; p__Firmicutes; c__Bacilli; o__Bacillales; f__Bacillaceae; g__Bacillus; s__",
    "Listeria": "k__Bacteria; p__Firmicutes; c__Bacilli; o__Bacillales; f__Listeriaceae; g__Listeria; s__",
    "Escherichia": "k__Bacteria; p__Proteobacteria; c__Gammaproteobacteria; o__Enterobacterales; f__Enterobacteriaceae; g__Escherichia; s__coli",
    "Vibrio": "k__Bacteria; p__Proteobacteria; c__Gammaproteobacteria; o__Vibrionales; f__Vibrionaceae; g__Vibrio; s__",
}


def clustered_vectors(
    labels: list[str], dim: int, *, seed: int = 0, spread: float = 0.15
) -> np.ndarray:
    """Unit vectors: one Gaussian cluster per distinct label (a stand-in for genus structure)."""
    rng = np.random.default_rng(seed)
    centres = {}
    for label in sorted(set(labels)):
        digest = int(hashlib.sha256(label.encode()).hexdigest()[:8], 16)
        centres[label] = np.random.default_rng(digest).standard_normal(dim).astype(np.float32)
    out = np.stack([centres[label] for label in labels])
    out = out / np.linalg.norm(out, axis=1, keepdims=True)
    out += spread * rng.standard_normal(out.shape).astype(np.float32) / np.sqrt(dim) * 4
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def make_shards(
    tmp: Path,
    storage: Store,
    tenant: str,
    sample_id: str,
    sequences: dict[str, str],
    taxonomy: dict[str, str] | None = None,
) -> dict:
    """Shards for one sample via a real lab drop and the shard writer; returns the manifest."""
    landing = tmp / "landing"
    folder = landing / tenant / sample_id
    if folder.exists():  # a re-drop (e.g. after QC): replace the files
        for path in folder.iterdir():
            path.unlink()
    write_drop(landing, tenant, sample_id, sequences=sequences, taxonomy=taxonomy)
    return ingest(Store(str(landing)), storage, tenant, sample_id)


def shard_ids(storage: Store, tenant: str, sample_id: str) -> list[str]:
    return [
        sid
        for batch in iter_shard_batches(storage, tenant, sample_id, columns=["sequence_id"])
        for sid in batch.column(0).to_pylist()
    ]


def write_embeddings(
    storage: Store,
    model_id: str,
    tenant: str,
    sample_id: str,
    vectors_by_id: dict[str, np.ndarray],
    *,
    rows_per_part: int = 7,
    weights_hash: str = "w-test",
    shard_version: str | None = None,
    ids: list[str] | None = None,
    dim: int | None = None,
) -> dict:
    """Embedding parts in shard order (or `ids` order) and `_manifest.json` last (DESIGN.md)."""
    ids = ids if ids is not None else shard_ids(storage, tenant, sample_id)
    dim = dim or len(next(iter(vectors_by_id.values())))
    folder = layout.embedding_dir(model_id, tenant, sample_id)
    for rel in storage.list_files(folder):
        storage.delete(rel)
    files = []
    for index, start in enumerate(range(0, len(ids), rows_per_part)):
        chunk = ids[start : start + rows_per_part]
        matrix = np.stack([vectors_by_id[i] for i in chunk]).astype(np.float32)
        table = pa.Table.from_arrays(
            [
                pa.array(chunk, pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim),
            ],
            schema=embedding_schema(dim),
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
        name = f"part-{index:05d}.parquet"
        storage.write_bytes(f"{folder}/{name}", data)
        files.append({"path": name, "rows": len(chunk), "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {
        "model_id": model_id,
        "weights_hash": weights_hash,
        "dim": dim,
        "rows": len(ids),
        "files": files,
    }
    if shard_version:
        manifest["shard_version"] = shard_version
    storage.write_bytes(f"{folder}/_manifest.json", json.dumps(manifest).encode())
    return manifest
