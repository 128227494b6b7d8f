"""A sample partition's rows in the index: streamed in as shard rows joined with embedding rows,
and summarised back out of the table for the asset checks and search (reads per sequence hash).

Shards and embeddings are both in shard order, so the join is positional and checked: every
slice's sequence ids must agree and both sides must end together; a mismatch means the
embeddings are stale and is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bioscan_assets.core import layout
from bioscan_assets.core.embedding.reader import (
    embedding_models,
    iter_embedding_batches,
    read_embedding_manifest,
)
from bioscan_assets.core.index.tables import (
    HASH_COLUMN,
    KEY_SEPARATOR,
    SHARD_COLUMNS,
    VectorIndexError,
    check_sample_id,
    index_schema,
    open_table,
    sql_string,
    table_dim,
)
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS, split_taxon

_EMBEDDING_BATCH_ROWS = 4096  # x 2560 float32 = 40 MB a batch at the NT-2.5B width


def choose_model_id(store: Store, tenant: str, sample_id: str, preferred: str | None = None) -> str:
    """The model whose embeddings to index: `preferred` (the upstream run's), else the only one."""
    if preferred:
        return preferred
    found = embedding_models(store, tenant, sample_id)
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(
            f"no embeddings for {tenant}/{sample_id} under {store.url(layout.embeddings_root())}: "
            "materialise sequence_embeddings for that partition first"
        )
    raise VectorIndexError(
        f"{tenant}/{sample_id} has embeddings of several models ({', '.join(found)}): "
        "say which to index (run config model_id)"
    )


def _rank_arrays(taxonomy: pa.Array) -> list[pa.Array]:
    """Seven rank columns; each distinct taxon string is split once."""
    encoded = (
        pc.dictionary_encode(taxonomy).combine_chunks()
        if isinstance(taxonomy, pa.ChunkedArray)
        else pc.dictionary_encode(taxonomy)
    )
    split = [split_taxon(value) for value in encoded.dictionary.to_pylist()]
    out = []
    for position in range(len(RANKS)):
        values = pa.array([ranks[position] for ranks in split], pa.string())
        out.append(
            values.take(encoded.indices) if len(values) else pa.nulls(len(taxonomy), pa.string())
        )
    return out


class _Slicer:
    """Hands out row slices of a batch stream regardless of how the batches were cut."""

    def __init__(self, batches: Iterator[pa.RecordBatch]):
        self._batches = batches
        self._current: pa.RecordBatch | None = None
        self._offset = 0

    def available(self) -> int:
        while self._current is None or self._offset >= self._current.num_rows:
            nxt = next(self._batches, None)
            if nxt is None:
                return 0
            self._current, self._offset = nxt, 0
        return self._current.num_rows - self._offset

    def take(self, n: int) -> pa.RecordBatch:
        assert self._current is not None
        out = self._current.slice(self._offset, n)
        self._offset += n
        return out


def iter_index_batches(
    store: Store,
    tenant: str,
    sample_id: str,
    model_id: str,
    *,
    dim: int,
    batch_rows: int = 2048,
    counters: dict[str, int] | None = None,
    schema: pa.Schema | None = None,
    keys_out: list[pa.Array] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The partition's rows in the index schema: shard rows joined with embedding rows.

    Both are in shard order, so the join is positional and checked: every slice's sequence ids
    must agree, and both sides must end together.
    """
    embedding_manifest = read_embedding_manifest(store, model_id, tenant, sample_id)
    schema = schema or index_schema(dim, model_id)
    # tables made before the column existed have no `sequence_hash` (upsert adds it)
    extra = [HASH_COLUMN] if HASH_COLUMN in schema.names else []
    shards = _Slicer(iter_shard_batches(store, tenant, sample_id, columns=[*SHARD_COLUMNS, *extra]))
    vectors = _Slicer(
        iter_embedding_batches(
            store,
            model_id,
            tenant,
            sample_id,
            manifest=embedding_manifest,
            columns=["sequence_id", "vector"],
            batch_rows=_EMBEDDING_BATCH_ROWS,
        )
    )
    counters = counters if counters is not None else {}
    counters.setdefault("rows", 0)
    pending: list[tuple[pa.RecordBatch, pa.RecordBatch]] = []
    pending_rows = 0
    where = f"{tenant}/{sample_id} (model {model_id})"

    def build() -> pa.RecordBatch:
        shard = pa.Table.from_batches([s for s, _ in pending]).combine_chunks()
        emb = pa.Table.from_batches([e for _, e in pending]).combine_chunks()
        ids = shard.column("sequence_id")
        if not pc.all(pc.equal(ids, emb.column("sequence_id"))).as_py():
            mismatch = pc.index(pc.equal(ids, emb.column("sequence_id")), False).as_py()
            row = counters["rows"] + mismatch
            raise VectorIndexError(
                f"{where}: shard row {row} has sequence_id {ids[mismatch].as_py()!r} but the "
                f"embedding row has {emb.column('sequence_id')[mismatch].as_py()!r}; embeddings "
                "are not in shard order (re-materialise sequence_embeddings)"
            )
        vector = emb.column("vector").combine_chunks()
        if vector.type.list_size != dim:
            raise VectorIndexError(
                f"{where}: embedding dimension {vector.type.list_size}, expected {dim}"
            )
        n = shard.num_rows
        sample = pa.array([sample_id] * n, pa.string())
        columns: dict[str, Any] = {
            "key": pc.binary_join_element_wise(sample, ids.combine_chunks(), KEY_SEPARATOR),
            **{name: shard.column(name).combine_chunks() for name in [*SHARD_COLUMNS, *extra]},
            "vector": vector.cast(schema.field("vector").type),
            "tenant": pa.array([tenant] * n, pa.string()),
            "sample_id": sample,
            "model_id": pa.array([model_id] * n, pa.string()),
        }
        for rank, values in zip(RANKS, _rank_arrays(columns["taxonomy"]), strict=True):
            columns[rank] = values
        counters["rows"] += n
        if keys_out is not None:
            keys_out.append(columns["key"])
        return pa.RecordBatch.from_arrays(
            [columns[f.name].cast(f.type) for f in schema], schema=schema
        )

    while True:
        a, b = shards.available(), vectors.available()
        if not a or not b:
            break
        n = min(a, b, batch_rows - pending_rows)
        pending.append((shards.take(n), vectors.take(n)))
        pending_rows += n
        if pending_rows >= batch_rows:
            yield build()
            pending, pending_rows = [], 0
    if pending:
        yield build()
    a, b = shards.available(), vectors.available()
    if a or b:
        raise VectorIndexError(
            f"{where}: shards and embeddings differ in length (one ends after "
            f"{counters['rows']} rows, the other has more); re-materialise sequence_embeddings"
        )
    if counters["rows"] != int(embedding_manifest["rows"]):
        raise VectorIndexError(
            f"{where}: embedding manifest says {embedding_manifest['rows']} rows, read "
            f"{counters['rows']}"
        )


def partition_summary(store: Store, tenant: str, model_id: str, sample_id: str) -> dict[str, Any]:
    """Rows, duplicate keys and vector dimension of one partition in the model's table."""
    check_sample_id(sample_id)
    table = open_table(store, tenant, model_id)
    if table is None:
        return {"rows": 0, "duplicate_keys": 0, "dim": None, "table": None}
    keys = (
        table.search()
        .where(f"sample_id = {sql_string(sample_id)}")
        .select(["key"])
        .limit(None)
        .to_arrow()
        .column("key")
    )
    counts = pc.value_counts(keys)
    duplicates = int(np.sum(counts.field("counts").to_numpy() > 1)) if len(counts) else 0
    return {
        "rows": len(keys),
        "duplicate_keys": duplicates,
        "dim": table_dim(table),
        "table": table.name,
        "version": table.version,
    }


def reads_per_hash(table: Any, hashes: list[str]) -> dict[str, int]:
    """How many rows (reads) of the table share each of these sequence hashes: what one search
    hit stands for. One filtered scan of the hash column; {} for tables without it."""
    wanted = sorted({h for h in hashes if h})
    if not wanted or HASH_COLUMN not in table.schema.names:
        return {}
    clause = f"{HASH_COLUMN} IN ({', '.join(sql_string(h) for h in wanted)})"
    found = table.search().where(clause).select([HASH_COLUMN]).limit(None).to_arrow()
    counts = pc.value_counts(found.column(HASH_COLUMN).combine_chunks())
    return dict(
        zip(
            counts.field("values").to_pylist(),
            counts.field("counts").to_pylist(),
            strict=True,
        )
    )
