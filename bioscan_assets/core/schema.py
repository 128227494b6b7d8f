"""Arrow schemas of the data layouts in DESIGN.md."""

from __future__ import annotations

import pyarrow as pa

# The first six columns are the historical shard format other tools already read.
SHARD_SCHEMA = pa.schema(
    [
        pa.field("sequence_id", pa.string(), nullable=False),
        pa.field("dna_sequence", pa.string(), nullable=False),
        pa.field("taxonomy", pa.string()),
        pa.field("depth", pa.float64()),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("read_number", pa.int8(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
        pa.field("gc_fraction", pa.float32(), nullable=False),
        pa.field("n_fraction", pa.float32(), nullable=False),
        pa.field("mean_quality", pa.float32()),
        # xxh3-128 of dna_sequence as 32 hex digits (shard format 2; core.ingest.sequence_hash)
        pa.field("sequence_hash", pa.string(), nullable=False),
    ]
)


def embedding_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("sequence_id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )
