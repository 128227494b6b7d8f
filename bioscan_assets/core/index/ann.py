"""The table's indexes: scalar (key BTree, sample and rank bitmaps) and the ANN (cosine) index,
kept current incrementally after every upsert.

New rows get a delta segment (`optimize_indices(num_indices_to_merge=0)`, cost proportional to
the new rows); deltas are merged when there are too many, and the ANN index is retrained when
the table has grown enough that its partitions are several times their target size.
`optimize_indices` comes from pylance (`lance`, the same Lance release lancedb bundles); without
it lancedb's `optimize()` is used, which also compacts the table (cost grows with the table).
Old table versions are never pruned here: that is the retention job's call. lancedb is slow to
import, so it loads only when an index is built: the resource that carries `AnnParams` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bioscan_assets.core.index.tables import VectorIndexError
from bioscan_assets.core.taxonomy import RANKS

VECTOR_INDEX_NAME = "vector_idx"
# Never prune versions from here: lancedb's optimize() would otherwise drop those > 7 days old.
_KEEP_ALL_VERSIONS = timedelta(days=365 * 100)


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
            train_ann(table, params, rows)
            actions.append(
                f"created {params.index_type} ({params.num_partitions(rows)} partitions)"
            )
    else:
        dataset = _lance_dataset(table)
        partitions = _ann_partitions(dataset) if dataset is not None else None
        if partitions and rows / partitions > params.retrain_growth * params.target_partition_rows:
            train_ann(table, params, rows)
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


def train_ann(table, params: AnnParams, rows: int) -> None:
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
