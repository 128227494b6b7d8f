"""Reading a sample's committed shards: what every later stage needs, without the writer.

Readers trust only `_manifest.json` (written last): rows come from the parts it lists, in its
(part) order, each part checked against its recorded sha256 and row count by `core.manifests`.
The order is deterministic though not the input order (see `shard_lanes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from bioscan_assets.core.ingest.sequence_hash import hash_strings
from bioscan_assets.core.layout import shard_dir
from bioscan_assets.core.manifests import iter_parts, read_manifest
from bioscan_assets.core.schema import SHARD_SCHEMA
from bioscan_assets.core.storage import Store


def read_shard_manifest(store: Store, tenant: str, sample_id: str) -> dict[str, Any]:
    """The committed shard manifest of a sample; FileNotFoundError when there is none."""
    return read_manifest(
        store,
        shard_dir(tenant, sample_id),
        f"materialise sequence_shards for partition {tenant}/{sample_id} first",
    )


def iter_shard_batches(
    store: Store,
    tenant: str,
    sample_id: str,
    columns: list[str] | None = None,
    batch_rows: int = 8192,
) -> Iterator[pa.RecordBatch]:
    """Rows of a sample's shards in manifest order, streamed part by part.

    Shards written before format 2 have no `sequence_hash` column: asked for, it is computed
    from `dna_sequence` on the fly, so readers need not care which format they got.
    """
    manifest = read_shard_manifest(store, tenant, sample_id)
    folder = shard_dir(tenant, sample_id)
    if int(manifest.get("format_version", 1)) >= 2 or (
        columns is not None and "sequence_hash" not in columns
    ):
        yield from iter_parts(store, folder, manifest, columns, batch_rows)
        return
    wanted = columns or [*SHARD_SCHEMA.names]
    read = [c for c in wanted if c != "sequence_hash"]
    if "dna_sequence" not in read:
        read.append("dna_sequence")
    for batch in iter_parts(store, folder, manifest, read, batch_rows):
        hashes = hash_strings(batch.column("dna_sequence"))
        arrays = [hashes if c == "sequence_hash" else batch.column(c) for c in wanted]
        yield pa.RecordBatch.from_arrays(arrays, names=wanted)
