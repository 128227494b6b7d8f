"""The one reader of committed embeddings (manifest + parts), without importing JAX.

The embed checks, the vector index and search read vectors the embedding step wrote; all of them
go through here, so every part is checked against its manifest's sha256 and row count
(`core.manifests`) and every manifest against the model it is filed under.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_assets.core import layout
from bioscan_assets.core.manifests import (
    MANIFEST_NAME,
    CorruptArtefactError,
    iter_parts,
    read_manifest,
)
from bioscan_assets.core.storage import Store


def read_embedding_manifest(
    store: Store, model_id: str, tenant: str, sample_id: str
) -> dict[str, Any]:
    """The committed embedding manifest, checked for the fields readers rely on."""
    folder = layout.embedding_dir(model_id, tenant, sample_id)
    manifest = read_manifest(
        store,
        folder,
        f"no embeddings for {tenant}/{sample_id} with model {model_id}: materialise "
        "sequence_embeddings for that partition first",
    )
    url = store.url(f"{folder}/{MANIFEST_NAME}")
    if "rows" not in manifest:
        raise CorruptArtefactError(f"{url}: field 'rows' missing")
    if manifest.get("model_id", model_id) != model_id:
        raise CorruptArtefactError(
            f"{url}: field model_id is {manifest['model_id']!r}, expected {model_id!r}"
        )
    return manifest


def iter_embedding_batches(
    store: Store,
    model_id: str,
    tenant: str,
    sample_id: str,
    *,
    manifest: dict[str, Any] | None = None,
    columns: list[str] | None = None,
    batch_rows: int = 8192,
) -> Iterator[pa.RecordBatch]:
    """Embedding rows in shard order, from the parts the manifest lists (read it if not given)."""
    manifest = manifest or read_embedding_manifest(store, model_id, tenant, sample_id)
    folder = layout.embedding_dir(model_id, tenant, sample_id)
    yield from iter_parts(store, folder, manifest, columns, batch_rows)


def embedding_dim(
    store: Store,
    model_id: str,
    tenant: str,
    sample_id: str,
    manifest: dict[str, Any] | None = None,
) -> int:
    """The model's vector dimension as the partition's embeddings record it."""
    manifest = manifest or read_embedding_manifest(store, model_id, tenant, sample_id)
    if manifest.get("dim"):
        return int(manifest["dim"])
    folder = layout.embedding_dir(model_id, tenant, sample_id)
    for entry in manifest["files"]:  # a manifest without "dim": the first part says
        with store.open_read(f"{folder}/{entry['path']}") as handle:
            return pq.ParquetFile(handle).schema_arrow.field("vector").type.list_size
    raise CorruptArtefactError(
        f"{tenant}/{sample_id}: the embedding manifest lists no files, so the vector "
        "dimension is unknown"
    )


def embedding_models(store: Store, tenant: str, sample_id: str) -> list[str]:
    """Model ids with committed embeddings (a manifest) for this partition."""
    out = []
    for st in store.list_stats(layout.embeddings_root()):
        parts = st.rel.split("/")
        if (
            len(parts) == 5
            and parts[2] == f"tenant={tenant}"
            and parts[3] == f"sample={sample_id}"
            and parts[4] == MANIFEST_NAME
        ):
            out.append(parts[1])
    return sorted(out)
