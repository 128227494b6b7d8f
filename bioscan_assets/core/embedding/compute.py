"""A partition's embeddings: one forward pass per distinct sequence, one vector per row.

`embed_partition` reads every row's `sequence_hash`, computes only the distinct hashes the
tenant's hash store (`hash_store`) lacks, committing them there in chunks as it goes, then
writes the partition's per-row layout from the store (`partition_layout`), `_manifest.json`
last. A killed run resumes from the store: what it committed is not computed again. A changed
shard version or model makes the old per-row parts stale and they are replaced.

The executor (`executor`) and the reader of committed embeddings (`reader`) are re-exported here,
where callers have always imported them from.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bioscan_assets.core import layout
from bioscan_assets.core.embedding.executor import (  # noqa: F401  (re-exported)
    EmbeddingExecutor,
    EmbedStats,
    embed_sequences,
)
from bioscan_assets.core.embedding.hash_store import HashStore
from bioscan_assets.core.embedding.partition_layout import vector_matrix, write_rows
from bioscan_assets.core.embedding.reader import (  # noqa: F401  (re-exported)
    iter_embedding_batches,
    read_embedding_manifest,
)
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches, read_shard_manifest
from bioscan_assets.core.manifests import MANIFEST_NAME as MANIFEST
from bioscan_assets.core.storage import Store


def run_key(shard_version: str, weights_hash: str) -> str:
    """What the partition's parts were made from; parts of another key are stale."""
    return hashlib.sha256(f"{shard_version}|{weights_hash}".encode()).hexdigest()[:12]


@dataclass
class _Missing:
    """Distinct hashes the store lacks, computed in committed chunks (see `_compute_missing`)."""

    where: str
    hashes: dict[str, int]  # hash -> its row in the distinct matrix
    commits: set[str] = field(default_factory=set)
    computed: int = 0


def _compute_missing(
    store: Store,
    tenant: str,
    sample_id: str,
    executor: EmbeddingExecutor,
    hs: HashStore,
    missing: _Missing,
    vectors: np.ndarray,
    *,
    chunk_rows: int,
    chunk_seconds: float,
    log: Callable[[str], None],
) -> None:
    """Embed the first row of every missing hash, in shard order; commit every chunk to the store
    (a killed run keeps its commits) and copy the vectors into their distinct rows."""
    stats = executor.stats
    todo = len(missing.hashes)
    wanted = pa.array(list(missing.hashes), pa.string())
    chunk: list[tuple[str, str]] = []
    clock = started = time.perf_counter()

    def flush() -> None:
        nonlocal chunk, clock
        hashes = [h for h, _ in chunk]
        computed = executor.embed([s for _, s in chunk])
        if not np.isfinite(computed).all():
            raise FloatingPointError(f"{missing.where}: NaN/Inf in embeddings")
        t = time.perf_counter()
        doc = hs.add(hashes, computed, by=layout.partition_key(tenant, sample_id))
        stats.write_s += time.perf_counter() - t
        missing.commits.add(doc["commit"])
        vectors[[missing.hashes[h] for h in hashes]] = computed
        missing.computed += len(hashes)
        rate = missing.computed / max(time.perf_counter() - started, 1e-9)
        log(
            f"{missing.where}: {missing.computed}/{todo} new sequences embedded ({rate:.1f} vectors/s)"
        )
        chunk, clock = [], time.perf_counter()

    left = set(missing.hashes)
    t_read = time.perf_counter()
    for batch in iter_shard_batches(
        store, tenant, sample_id, columns=["sequence_hash", "dna_sequence"]
    ):
        stats.read_s += time.perf_counter() - t_read
        flagged = pc.is_in(batch.column(0), value_set=wanted).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(flagged)
        hashes = batch.column(0).take(pa.array(rows)).to_pylist()
        sequences = batch.column(1).take(pa.array(rows)).to_pylist()
        for sequence_hash, sequence in zip(hashes, sequences, strict=True):
            if sequence_hash not in left:
                continue  # a second copy of a sequence already queued
            left.discard(sequence_hash)
            chunk.append((sequence_hash, sequence))
            if len(chunk) >= chunk_rows or time.perf_counter() - clock >= chunk_seconds:
                flush()
        if not left:
            break
        t_read = time.perf_counter()
    if chunk:
        flush()
    if left:
        raise RuntimeError(f"{missing.where}: {len(left)} hashes were not found in the shards")


def _row_hashes(store: Store, tenant: str, sample_id: str) -> pa.ChunkedArray:
    batches = iter_shard_batches(store, tenant, sample_id, columns=["sequence_hash"])
    return pa.chunked_array([b.column(0) for b in batches], pa.string())


def embed_partition(
    store: Store,
    tenant: str,
    sample_id: str,
    executor: EmbeddingExecutor,
    *,
    chunk_rows: int = 512,
    chunk_seconds: float = 120.0,
    lock_timeout_s: float = 24 * 3600.0,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """One vector per shard row, computing only the distinct sequences the tenant's hash store
    lacks (under its lock, so two runs never compute one twice), in chunks committed as they
    go; then the per-row layout, manifest last. Returns the manifest plus the run's counts:
    `distinct`, `computed` (now), `reused` (from the store) and `wall_s`."""
    started = time.perf_counter()
    model = executor.model
    stats = executor.stats
    where = f"{tenant}/{sample_id}"
    shards = read_shard_manifest(store, tenant, sample_id)
    key = run_key(shards["version"], model.weights_hash)
    directory = layout.embedding_dir(model.model_id, tenant, sample_id)
    manifest_rel = f"{directory}/{MANIFEST}"
    if store.exists(manifest_rel):
        existing = json.loads(store.read_bytes(manifest_rel))
        if existing.get("key") == key:
            log(f"{where}: embeddings already current ({existing['rows']} rows)")
            distinct = int(existing.get("distinct", existing["rows"]))
            wall = time.perf_counter() - started
            return {
                **existing,
                "distinct": distinct,
                "computed": 0,
                "reused": distinct,
                "wall_s": wall,
            }

    hs = HashStore(store, model.model_id, model.weights_hash, tenant)
    t = time.perf_counter()
    row_hashes = _row_hashes(store, tenant, sample_id)
    stats.read_s += time.perf_counter() - t
    total = int(shards["rows"])
    if len(row_hashes) != total:
        raise RuntimeError(f"{where}: shard manifest says {total} rows, read {len(row_hashes)}")
    distinct = pc.unique(row_hashes) if total else pa.array([], pa.string())
    dim = model.config.hidden_size
    computed = 0
    with vector_matrix(len(distinct), dim) as vectors:
        for attempt in (1, 2):
            missing = _Missing(where, {})
            with hs.lock(lock_timeout_s):
                holdings = hs.holdings()
                positions = holdings.locate(distinct)
                absent = np.flatnonzero(positions < 0)
                absent_hashes = distinct.take(pa.array(absent)).to_pylist()
                missing.hashes = dict(zip(absent_hashes, absent.tolist(), strict=True))
                log(
                    f"{where}: {total} rows, {len(distinct)} distinct sequences; "
                    f"{len(distinct) - len(absent)} in the hash store, {len(absent)} to compute"
                )
                if missing.hashes:
                    _compute_missing(
                        store,
                        tenant,
                        sample_id,
                        executor,
                        hs,
                        missing,
                        vectors,
                        chunk_rows=chunk_rows,
                        chunk_seconds=chunk_seconds,
                        log=log,
                    )
            computed += missing.computed
            try:
                t = time.perf_counter()
                used = hs.fill(holdings, positions, vectors) | missing.commits
                stats.read_s += time.perf_counter() - t
                break
            except FileNotFoundError:  # a commit expired since we looked: look again, once
                if attempt == 2:
                    raise
                log(f"{where}: a hash-store commit went away while reading it; looking again")
        t = time.perf_counter()
        files = write_rows(
            store,
            directory,
            key,
            iter_shard_batches(store, tenant, sample_id, columns=["sequence_id", "sequence_hash"]),
            distinct,
            vectors,
        )
        stats.write_s += time.perf_counter() - t
    manifest = {
        "key": key,
        "model_id": model.model_id,
        "weights_hash": model.weights_hash,
        "pretrained": model.pretrained,
        "dim": dim,
        "shard_version": shards["version"],
        "rows": total,
        "distinct": len(distinct),
        "files": files,
        "hash_store": {"path": hs.folder, "commits": sorted(used)},
    }
    store.write_bytes(manifest_rel, json.dumps(manifest, indent=2).encode())
    keep = {f["path"] for f in files} | {MANIFEST}
    for rel in store.list_files(directory):
        if rel.rsplit("/", 1)[-1] not in keep:
            store.delete(rel)
    wall = time.perf_counter() - started
    log(
        f"{where}: {total} rows, {len(distinct)} distinct sequences: {computed} computed now, "
        f"{len(distinct) - computed} reused from the hash store; "
        f"{computed / max(wall, 1e-9):.1f} computed vectors/s, "
        f"{total / max(wall, 1e-9):.1f} effective rows/s"
    )
    return {
        **manifest,
        "computed": computed,
        "reused": len(distinct) - computed,
        "wall_s": wall,
    }
