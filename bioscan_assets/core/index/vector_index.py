"""The tenant's LanceDB vector index: one database per tenant, one table per model.

Layout (DESIGN.md "Data layouts"): `<storage>/lancedb/<tenant>/` is the tenant's database; each
model id gets its own table `sequences_<model id>` ("table `sequences` per model id": the model
id is part of the name, so vectors of two models never share a table, and the table's schema
metadata records the model id, weights hash and dimension, checked on every write and query).

Columns: `key` (= `<sample_id>/<sequence_id>`, the merge key; sample ids never contain `/`),
the shards' first six, `vector`, `tenant`, `sample_id`, `model_id`, then one column per rank
(kingdom .. species, split from `taxonomy`) so rank filters are plain equality and can use
bitmap indexes. `key` comes first and carries a BTree index: LanceDB's merge_insert can
silently match nothing when the key is not a leading indexed column (lancedb#3515), and every
upsert checks its counts against what it streamed.

`upsert_partition` streams the partition (shard rows joined with embedding rows) into one
`merge_insert` on `key` (update matched, insert new: it uses the key's BTree, so its cost
follows the partition, not the table), then deletes the sample's rows whose keys were not
streamed (a QC change), found through the `sample_id` bitmap; rows of other samples are never
touched. Between those two commits a reader may see the stale rows next to the new ones,
never a missing row; a re-run after a crash finishes the job. (merge_insert's own
`when_not_matched_by_source_delete` scans the whole table: 2 s against 0.3 s at 100k rows.)
Writers of one table are serialised by a file lock on local storage (concurrent
merge_inserts can duplicate keys, lancedb#3377); on GCS the Dagster pool `lancedb` (limit 1)
is the guard. Indexes are kept current incrementally: new rows get a delta segment
(`optimize_indices(num_indices_to_merge=0)`, cost proportional to the new rows); deltas are
merged when there are too many, and the ANN index is retrained when the table has grown enough
that its partitions are several times their target size. `optimize_indices` comes from
pylance (`lance`, the same Lance release lancedb bundles); without it lancedb's `optimize()`
is used, which also compacts the table (cost grows with the table). Old table versions are
never pruned here: that is the retention job's call.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioscan_assets.core import layout
from bioscan_assets.core.embedding import reader as embedding_store
from bioscan_assets.core.ingest.shards import iter_shard_batches, read_shard_manifest
from bioscan_assets.core.schema import SHARD_SCHEMA
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS, split_taxon

TABLE_PREFIX = "sequences_"
KEY_SEPARATOR = "/"
VECTOR_INDEX_NAME = "vector_idx"
EMBEDDING_MANIFEST = embedding_store.MANIFEST
SCHEMA_VERSION = "1"
META_MODEL_ID = b"bioscan.model_id"
META_WEIGHTS = b"bioscan.weights_hash"
META_DIM = b"bioscan.dim"
META_SCHEMA = b"bioscan.schema_version"
SHARD_COLUMNS = [f.name for f in SHARD_SCHEMA][:6]
# Never prune versions from here: lancedb's optimize() would otherwise drop those > 7 days old.
_KEEP_ALL_VERSIONS = timedelta(days=365 * 100)
_TABLE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]")


class VectorIndexError(ValueError):
    """Bad input to the index: inconsistent shards/embeddings, wrong model, bad names."""


@dataclass(frozen=True)
class AnnParams:
    """ANN index type and parameters, chosen with tests/benchmarks/bench_index.py.

    Measured on 100k x 2560 clustered unit vectors, 200 queries, 2 busy cores (load 8-12):
    IVF_SQ stops at recall@10 0.95 whatever nprobes (quantisation error); IVF_RQ (1-bit
    RaBitQ codes, 320 B/vector) alone gives 0.48 but with refine_factor 5 (re-ranking 50
    candidates with full vectors) 1.00 at p50 ~20 ms (nprobes 10; 0.997 with a sample
    filter); IVF_FLAT 1.00 at ~60 ms; exact search ~700 ms. IVF_RQ also builds fastest
    (21 s against 29 s for IVF_SQ, 70 s for IVF_FLAT; IVF_PQ took 183 s at only 20k rows).
    Partitions: rows / 2048 (49 at 100k).
    """

    index_type: str = "IVF_RQ"  # IVF_RQ | IVF_SQ | IVF_PQ | IVF_HNSW_SQ | IVF_FLAT
    min_rows: int = 4096  # below this, exact search is about as fast as any index
    target_partition_rows: int = 2048  # IVF partitions ~ rows / this, when (re)trained
    retrain_growth: float = 4.0  # retrain once rows per partition exceed this x the target
    num_sub_vectors: int | None = None  # IVF_PQ only (default dim / 16)
    num_bits: int | None = None  # IVF_RQ (1..) / IVF_PQ (4 or 8)
    max_delta_segments: int = 8  # merge index deltas beyond this many
    # query-time
    nprobes: int = 10
    refine_factor: int | None = 5  # re-rank 5 x k candidates with the full vectors

    def num_partitions(self, rows: int) -> int:
        return max(1, min(4096, round(rows / self.target_partition_rows)))

    def config(self, rows: int) -> Any:
        from lancedb.index import IvfFlat, IvfHnswSq, IvfPq, IvfRq, IvfSq

        partitions = self.num_partitions(rows)
        kind = self.index_type.upper()
        if kind == "IVF_SQ":
            return IvfSq(distance_type="cosine", num_partitions=partitions)
        if kind == "IVF_FLAT":
            return IvfFlat(distance_type="cosine", num_partitions=partitions)
        if kind == "IVF_RQ":
            return IvfRq(
                distance_type="cosine", num_partitions=partitions, num_bits=self.num_bits or 1
            )
        if kind == "IVF_PQ":
            extra = {"num_sub_vectors": self.num_sub_vectors} if self.num_sub_vectors else {}
            return IvfPq(
                distance_type="cosine",
                num_partitions=partitions,
                num_bits=self.num_bits or 8,
                **extra,
            )
        if kind == "IVF_HNSW_SQ":
            return IvfHnswSq(distance_type="cosine", num_partitions=max(1, partitions // 16))
        raise VectorIndexError(
            f"unknown ANN index type {self.index_type!r}: use IVF_SQ, IVF_RQ, IVF_PQ, "
            "IVF_HNSW_SQ or IVF_FLAT"
        )


@dataclass
class UpsertResult:
    tenant: str
    sample_id: str
    model_id: str
    table: str
    rows: int  # rows of this partition in the table now (= its embedding rows)
    inserted: int
    updated: int
    deleted: int
    table_rows: int
    version: int
    index: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- names and paths ---------------------------------------------------------------------------


def table_name(model_id: str) -> str:
    """`sequences_<model id>`; ids with characters LanceDB refuses get a hash suffix, never a clash."""
    if not model_id:
        raise VectorIndexError("model id must not be empty")
    safe = _TABLE_NAME_RE.sub("_", model_id)
    if safe != model_id:
        safe = f"{safe[:80]}_{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"
    return TABLE_PREFIX + safe


def check_tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not layout.TENANT_RE.fullmatch(tenant):
        raise VectorIndexError(
            f"tenant {tenant!r} is not a valid tenant name (lower-case letters, digits and '-', "
            "starting with a letter or digit, at most 63 characters)"
        )
    return tenant


def check_sample_id(sample_id: str) -> str:
    if (
        not isinstance(sample_id, str)
        or not layout.SAMPLE_ID_RE.fullmatch(sample_id)
        or ".." in sample_id
    ):
        raise VectorIndexError(f"sample id {sample_id!r} is not a valid sample id")
    return sample_id


def database_uri(store: Store, tenant: str) -> str:
    """The tenant's LanceDB URI, built only from a validated tenant name."""
    return store.url(layout.lancedb_dir(check_tenant(tenant)))


def sql_string(value: str) -> str:
    """A SQL string literal for LanceDB filters."""
    if any(ord(ch) < 32 for ch in value):
        raise VectorIndexError("filter values must not contain control characters")
    return "'" + value.replace("'", "''") + "'"


def rank_column(rank: str) -> str:
    """A rank column in a filter; `class` and `order` are SQL keywords, so always quoted."""
    if rank not in RANKS:
        raise VectorIndexError(f"unknown rank {rank!r}; ranks are {', '.join(RANKS)}")
    return f"`{rank}`"


def connect(store: Store, tenant: str):
    import lancedb

    return lancedb.connect(database_uri(store, tenant))


def tenant_exists(store: Store, tenant: str) -> bool:
    rel = layout.lancedb_dir(check_tenant(tenant))
    local = store.local_path(rel)
    if local is not None:
        return local.is_dir()
    return bool(store.list_files(rel)[:1])


def list_model_tables(store: Store, tenant: str) -> dict[str, str]:
    """{model id: table name} of the tenant's index tables (model id from the schema metadata)."""
    if not tenant_exists(store, tenant):
        return {}
    db = connect(store, tenant)
    out = {}
    for name in _table_names(db):
        if not name.startswith(TABLE_PREFIX):
            continue
        meta = db.open_table(name).schema.metadata or {}
        model_id = meta.get(META_MODEL_ID, name[len(TABLE_PREFIX) :].encode()).decode()
        out[model_id] = name
    return dict(sorted(out.items()))


def _table_names(db) -> list[str]:
    names: list[str] = []
    token = None
    while True:
        page = db.list_tables(page_token=token)
        names.extend(page.tables)
        token = page.page_token
        if not token:
            return names


def open_table(store: Store, tenant: str, model_id: str):
    """The model's table for the tenant, or None when it does not exist."""
    if not tenant_exists(store, tenant):
        return None
    db = connect(store, tenant)
    name = table_name(model_id)
    if name not in _table_names(db):
        return None
    table = db.open_table(name)
    found = (table.schema.metadata or {}).get(META_MODEL_ID, b"").decode()
    if found and found != model_id:
        raise VectorIndexError(f"table {name} holds model {found!r}, not {model_id!r}")
    return table


def table_dim(table) -> int:
    return table.schema.field("vector").type.list_size


# --- schema ------------------------------------------------------------------------------------


def index_schema(dim: int, model_id: str, weights_hash: str = "") -> pa.Schema:
    shard = {f.name: f for f in SHARD_SCHEMA}
    fields = [
        pa.field("key", pa.string(), nullable=False),
        *(shard[name] for name in SHARD_COLUMNS),
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("tenant", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        *(pa.field(rank, pa.string()) for rank in RANKS),
    ]
    metadata = {
        META_MODEL_ID: model_id.encode(),
        META_WEIGHTS: weights_hash.encode(),
        META_DIM: str(dim).encode(),
        META_SCHEMA: SCHEMA_VERSION.encode(),
    }
    return pa.schema(fields, metadata=metadata)


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


# --- reading the partition: shard rows joined with embedding rows ----------------------------


def read_embedding_manifest(store: Store, model_id: str, tenant: str, sample_id: str) -> dict:
    """The embedding manifest, checked for the fields the index relies on."""
    rel = f"{layout.embedding_dir(model_id, tenant, sample_id)}/{EMBEDDING_MANIFEST}"
    manifest = embedding_store.read_embedding_manifest(store, model_id, tenant, sample_id)
    for key in ("rows", "files"):
        if key not in manifest:
            raise VectorIndexError(f"{store.url(rel)}: field {key!r} missing")
    if manifest.get("model_id", model_id) != model_id:
        raise VectorIndexError(
            f"{store.url(rel)}: field model_id is {manifest['model_id']!r}, expected {model_id!r}"
        )
    return manifest


def embedding_models(store: Store, tenant: str, sample_id: str) -> list[str]:
    """Model ids with committed embeddings (a manifest) for this partition."""
    out = []
    for st in store.list_stats("embeddings"):
        parts = st.rel.split("/")
        if (
            len(parts) == 5
            and parts[2] == f"tenant={tenant}"
            and parts[3] == f"sample={sample_id}"
            and parts[4] == EMBEDDING_MANIFEST
        ):
            out.append(parts[1])
    return sorted(out)


def choose_model_id(store: Store, tenant: str, sample_id: str, preferred: str | None = None) -> str:
    """The model whose embeddings to index: `preferred` (the upstream run's), else the only one."""
    if preferred:
        return preferred
    found = embedding_models(store, tenant, sample_id)
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(
            f"no embeddings for {tenant}/{sample_id} under {store.url('embeddings')}: "
            "materialise sequence_embeddings for that partition first"
        )
    raise VectorIndexError(
        f"{tenant}/{sample_id} has embeddings of several models ({', '.join(found)}): "
        "say which to index (run config model_id)"
    )


def _iter_embedding_batches(
    store: Store, model_id: str, tenant: str, sample_id: str, manifest: dict
) -> Iterator[pa.RecordBatch]:
    """Embedding rows in manifest order; each part's sha256 and row count are checked."""
    folder = layout.embedding_dir(model_id, tenant, sample_id)
    for entry in manifest["files"]:
        rel = f"{folder}/{entry['path']}"
        data = store.read_bytes(rel)
        if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise VectorIndexError(f"{store.url(rel)}: sha256 differs from the manifest's")
        parquet = pq.ParquetFile(pa.BufferReader(data))
        if "rows" in entry and parquet.metadata.num_rows != entry["rows"]:
            raise VectorIndexError(
                f"{store.url(rel)} holds {parquet.metadata.num_rows} rows, its manifest says "
                f"{entry['rows']}"
            )
        yield from parquet.iter_batches(batch_size=4096, columns=["sequence_id", "vector"])


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
    shard_columns = [*SHARD_COLUMNS]
    shards = _Slicer(iter_shard_batches(store, tenant, sample_id, columns=shard_columns))
    vectors = _Slicer(
        _iter_embedding_batches(store, model_id, tenant, sample_id, embedding_manifest)
    )
    schema = schema or index_schema(dim, model_id)
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
            **{name: shard.column(name).combine_chunks() for name in SHARD_COLUMNS},
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


# --- the writer lock ---------------------------------------------------------------------------

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def writer_lock(
    store: Store, tenant: str, table: str, timeout_s: float = 3600.0
) -> Iterator[str | None]:
    """One writer per table: an flock on `<db>/_locks/<table>.lock` (local storage only).

    flock locks belong to the open file, so threads of one process exclude each other too.
    On GCS there is no lock here: run the asset under the Dagster pool `lancedb` (limit 1).
    Yields the lock path, or None when no lock is taken.
    """
    local = store.local_path(layout.lancedb_dir(check_tenant(tenant)))
    if local is None:
        yield None
        return
    path = local / "_locks" / f"{table}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(str(path), threading.Lock())
    deadline = time.monotonic() + timeout_s
    if not thread_lock.acquire(timeout=timeout_s):
        raise TimeoutError(f"waited {timeout_s:.0f} s for the writer lock {path}")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = Path(path).read_text(errors="replace").strip() or "unknown"
                        raise TimeoutError(
                            f"waited {timeout_s:.0f} s for the writer lock {path} (held by "
                            f"{holder})"
                        ) from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            try:
                yield str(path)
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        thread_lock.release()


# --- upsert --------------------------------------------------------------------------------


def embedding_dim(
    store: Store, model_id: str, tenant: str, sample_id: str, manifest: dict | None = None
) -> int:
    """The model's vector dimension as the partition's embeddings record it."""
    manifest = manifest or read_embedding_manifest(store, model_id, tenant, sample_id)
    if manifest.get("dim"):
        return int(manifest["dim"])
    folder = layout.embedding_dir(model_id, tenant, sample_id)
    for entry in manifest["files"]:
        with store.open_read(f"{folder}/{entry['path']}") as handle:
            return pq.ParquetFile(handle).schema_arrow.field("vector").type.list_size
    raise VectorIndexError(
        f"{tenant}/{sample_id}: the embedding manifest lists no files, so the vector "
        "dimension is unknown"
    )


def _open_or_create(db, name: str, schema: pa.Schema):
    if name in _table_names(db):
        table = db.open_table(name)
        meta = table.schema.metadata or {}
        want = schema.metadata
        if meta.get(META_MODEL_ID) != want[META_MODEL_ID]:
            raise VectorIndexError(
                f"table {name} holds model {meta.get(META_MODEL_ID, b'?').decode()!r}, "
                f"not {want[META_MODEL_ID].decode()!r}"
            )
        if table_dim(table) != schema.field("vector").type.list_size:
            raise VectorIndexError(
                f"table {name} holds {table_dim(table)}-dim vectors; the embeddings have "
                f"{schema.field('vector').type.list_size}"
            )
        old, new = meta.get(META_WEIGHTS, b""), want[META_WEIGHTS]
        if old and new and old != new:
            raise VectorIndexError(
                f"table {name} was built with weights {old.decode()[:12]}…, these embeddings "
                f"come from weights {new.decode()[:12]}… of the same model id: vectors of "
                "different weights must not share a table; give the new weights their own "
                "model id (a checkpoint's id includes its digest) or drop the table"
            )
        return table, False
    return db.create_table(name, schema=schema), True


def upsert_partition(
    store: Store,
    tenant: str,
    sample_id: str,
    model_id: str,
    *,
    params: AnnParams | None = None,
    lock_timeout_s: float = 3600.0,
    batch_rows: int = 2048,
    log: Callable[[str], None] = lambda _msg: None,
) -> UpsertResult:
    """Make the table hold exactly this partition's current rows; other partitions untouched."""
    params = params or AnnParams()
    check_tenant(tenant)
    check_sample_id(sample_id)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    manifest = read_embedding_manifest(store, model_id, tenant, sample_id)
    shard_manifest = read_shard_manifest(store, tenant, sample_id)
    if manifest.get("shard_version") and manifest["shard_version"] != shard_manifest["version"]:
        raise VectorIndexError(
            f"{tenant}/{sample_id}: embeddings were computed from shard version "
            f"{manifest['shard_version']}, the shards are now {shard_manifest['version']}: "
            "re-materialise sequence_embeddings first"
        )
    if int(manifest["rows"]) != int(shard_manifest["rows"]):
        raise VectorIndexError(
            f"{tenant}/{sample_id}: {manifest['rows']} embedding rows for "
            f"{shard_manifest['rows']} shard rows: re-materialise sequence_embeddings"
        )
    dim = embedding_dim(store, model_id, tenant, sample_id, manifest)
    schema = index_schema(dim, model_id, manifest.get("weights_hash") or "")
    name = table_name(model_id)
    counters: dict[str, int] = {}
    streamed_keys: list[pa.Array] = []

    with writer_lock(store, tenant, name, lock_timeout_s):
        timings["lock_wait_s"] = time.perf_counter() - started
        db = connect(store, tenant)
        table, created = _open_or_create(db, name, schema)
        if created:
            log(f"created table {name} ({dim}-dim vectors) for tenant {tenant}")
        t = time.perf_counter()
        batches = iter_index_batches(
            store,
            tenant,
            sample_id,
            model_id,
            dim=dim,
            batch_rows=batch_rows,
            counters=counters,
            schema=table.schema,
            keys_out=streamed_keys,
        )
        failures: list[BaseException] = []

        def guarded() -> Iterator[pa.RecordBatch]:
            try:
                yield from batches
            except BaseException as error:  # re-raised below as itself, not Arrow's wrapper
                failures.append(error)
                raise

        reader = pa.RecordBatchReader.from_batches(table.schema, guarded())
        # Update + insert only: merge_insert uses the key's BTree and costs O(partition).
        # `when_not_matched_by_source_delete` would scan the whole table (measured: 2 s at
        # 100k x 2560 against 0.3 s), so stale rows are found with the sample_id bitmap below.
        merge = table.merge_insert("key").when_matched_update_all().when_not_matched_insert_all()
        try:
            result = merge.execute(reader)
        except Exception:
            if failures:
                raise failures[0] from None
            raise
        timings["merge_s"] = time.perf_counter() - t
        rows = counters.get("rows", 0)
        if result.num_inserted_rows + result.num_updated_rows != rows:
            raise RuntimeError(
                f"{tenant}/{sample_id}: merge_insert into {name} inserted "
                f"{result.num_inserted_rows} and updated {result.num_updated_rows} rows for "
                f"{rows} rows streamed (lancedb#3515?); table version {result.version}"
            )
        t = time.perf_counter()
        deleted = _delete_stale(table, sample_id, streamed_keys)
        timings["delete_s"] = time.perf_counter() - t
        t = time.perf_counter()
        index = maintain_indexes(table, params, log=log)
        timings["index_s"] = time.perf_counter() - t
        table.checkout_latest()
        present = table.count_rows(f"sample_id = {sql_string(sample_id)}")
        if present != rows:
            raise RuntimeError(
                f"{tenant}/{sample_id}: {name} holds {present} rows of this sample after the "
                f"upsert, expected {rows}"
            )
        table_rows = table.count_rows()
        version = table.version
    timings["total_s"] = time.perf_counter() - started
    log(
        f"{tenant}/{sample_id} -> {name}: {result.num_inserted_rows} inserted, "
        f"{result.num_updated_rows} updated, {deleted} deleted; "
        f"{table_rows} rows in the table (version {version})"
    )
    return UpsertResult(
        tenant=tenant,
        sample_id=sample_id,
        model_id=model_id,
        table=name,
        rows=rows,
        inserted=result.num_inserted_rows,
        updated=result.num_updated_rows,
        deleted=deleted,
        table_rows=table_rows,
        version=version,
        index=index,
        timings={k: round(v, 4) for k, v in timings.items()},
    )


_DELETE_CHUNK = 2000


def _delete_stale(table, sample_id: str, current: list[pa.Array]) -> int:
    """Delete the sample's rows whose keys were not streamed now; returns how many."""
    sample = f"sample_id = {sql_string(sample_id)}"
    table.checkout_latest()
    if not current:
        return table.delete(sample).num_deleted_rows if table.count_rows(sample) else 0
    existing = table.search().where(sample).select(["key"]).limit(None).to_arrow().column("key")
    keep = pa.chunked_array(current, pa.string())
    stale = pc.filter(existing, pc.invert(pc.is_in(existing, value_set=keep.combine_chunks())))
    deleted = 0
    values = stale.to_pylist()
    for start in range(0, len(values), _DELETE_CHUNK):
        chunk = ", ".join(sql_string(v) for v in values[start : start + _DELETE_CHUNK])
        deleted += table.delete(f"{sample} AND key IN ({chunk})").num_deleted_rows
    return deleted


# --- index maintenance -------------------------------------------------------------------------

SCALAR_INDEXES: dict[str, str] = {
    "key": "BTree",  # unique per row: merge key and id lookups
    "sample_id": "Bitmap",  # few distinct values per tenant: the sample filter
    **dict.fromkeys(RANKS, "Bitmap"),  # rank filters; a few thousand values at most per rank
}


def _indexes(table) -> dict[str, Any]:
    return {ix.columns[0]: ix for ix in table.list_indices()}


def _lance_dataset(table):
    try:
        import lance
    except ImportError:
        return None
    return lance.dataset(table.uri)


def _ann_partitions(dataset) -> int | None:
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    try:
        stats = dataset.stats.index_stats(VECTOR_INDEX_NAME)
    except Exception:
        return None
    parts = [ix.get("num_partitions") for ix in stats.get("indices", [])]
    parts = [p for p in parts if p]
    return max(parts) if parts else None


def maintain_indexes(
    table, params: AnnParams, *, log: Callable[[str], None] = lambda _msg: None
) -> dict[str, Any]:
    """Create missing indexes, add new rows to existing ones; returns the index state."""
    from lancedb.index import Bitmap, BTree

    rows = table.count_rows()
    existing = _indexes(table)
    actions: list[str] = []
    if rows:
        for column, kind in SCALAR_INDEXES.items():
            if column not in existing:
                table.create_index(column, config=BTree() if kind == "BTree" else Bitmap())
                actions.append(f"created {kind} on {column}")
    vector = existing.get("vector")
    if vector is None:
        if rows >= params.min_rows:
            _train_ann(table, params, rows)
            actions.append(
                f"created {params.index_type} ({params.num_partitions(rows)} partitions)"
            )
    else:
        dataset = _lance_dataset(table)
        partitions = _ann_partitions(dataset) if dataset is not None else None
        if partitions and rows / partitions > params.retrain_growth * params.target_partition_rows:
            _train_ann(table, params, rows)
            actions.append(
                f"retrained {params.index_type}: {partitions} -> "
                f"{params.num_partitions(rows)} partitions"
            )
    table.checkout_latest()
    stale = any(ix.num_unindexed_rows for ix in table.list_indices())
    if stale:
        dataset = _lance_dataset(table)
        if dataset is not None:
            # a delta segment per index for the new rows: cost grows with them, not the table
            dataset.optimize.optimize_indices(num_indices_to_merge=0)
            actions.append("appended index deltas")
            table.checkout_latest()
            segments = max((ix.num_segments or 1) for ix in table.list_indices())
            if segments > params.max_delta_segments:
                _lance_dataset(table).optimize.optimize_indices(num_indices_to_merge=segments)
                actions.append(f"merged {segments} index segments")
        else:
            # Without pylance, lancedb's optimize() also compacts the table (cost grows with
            # it); it never prunes versions here.
            table.optimize(cleanup_older_than=_KEEP_ALL_VERSIONS)
            actions.append("optimize() (pylance missing: compaction included)")
        table.checkout_latest()
    for action in actions:
        log(f"{table.name}: {action}")
    return index_state(table, actions)


def _train_ann(table, params: AnnParams, rows: int) -> None:
    table.create_index("vector", config=params.config(rows), replace=True, name=VECTOR_INDEX_NAME)


def index_state(table, actions: list[str] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"scalar": {}, "ann": None}
    for ix in table.list_indices():
        info = {
            "type": ix.index_type,
            "indexed_rows": ix.num_indexed_rows,
            "unindexed_rows": ix.num_unindexed_rows,
            "segments": ix.num_segments,
        }
        if ix.columns == ["vector"]:
            state["ann"] = info
        else:
            state["scalar"][ix.columns[0]] = info
    if actions is not None:
        state["actions"] = actions
    return state


# --- reads used by checks and search -------------------------------------------------------------


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
