"""Reading committed embeddings (manifest + parts) without importing JAX: the index and search
paths read vectors that the embedding step wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_assets.core import layout
from bioscan_assets.core.storage import Store

MANIFEST = "_manifest.json"


def read_embedding_manifest(store: Store, model_id: str, tenant: str, sample_id: str) -> dict:
    rel = f"{layout.embedding_dir(model_id, tenant, sample_id)}/{MANIFEST}"
    try:
        return json.loads(store.read_bytes(rel))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no embeddings for {tenant}/{sample_id} with model {model_id} ({store.url(rel)} "
            "missing): materialise sequence_embeddings for that partition first"
        ) from None


def iter_embedding_batches(
    store: Store, model_id: str, tenant: str, sample_id: str
) -> Iterator[pa.RecordBatch]:
    """Embedding rows in shard order, from the parts the manifest lists."""
    manifest = read_embedding_manifest(store, model_id, tenant, sample_id)
    directory = layout.embedding_dir(model_id, tenant, sample_id)
    for part in manifest["files"]:
        with store.open_read(f"{directory}/{part['path']}") as handle:
            yield from pq.ParquetFile(handle).iter_batches()
