from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from bioscan_assets.core.index.ann import AnnParams

_DEFAULT = AnnParams()


class VectorStoreResource(ConfigurableResource):
    """LanceDB index settings: ANN index type and parameters (chosen by
    tests/benchmarks/bench_index.py), query-time probes, and the writer lock timeout.

    The tables live under the storage resource's root (`<storage>/lancedb/<tenant>`); writers
    of one table are serialised by a file lock on local storage and, for multi-process or GCS
    deployments, by the Dagster concurrency pool `lancedb` with limit 1
    (`dagster instance concurrency set lancedb 1`, or `concurrency: pools:` in dagster.yaml).
    """

    index_type: str = Field(
        default=_DEFAULT.index_type, description="IVF_SQ, IVF_RQ, IVF_PQ, IVF_HNSW_SQ or IVF_FLAT"
    )
    min_rows: int = Field(
        default=_DEFAULT.min_rows,
        description="Build the ANN index once a table has this many rows.",
    )
    target_partition_rows: int = Field(
        default=_DEFAULT.target_partition_rows, description="Rows per IVF partition when trained."
    )
    retrain_growth: float = Field(
        default=_DEFAULT.retrain_growth,
        description="Retrain when rows per partition exceed this multiple of the target.",
    )
    max_delta_segments: int = Field(
        default=_DEFAULT.max_delta_segments, description="Merge index deltas beyond this many."
    )
    nprobes: int = Field(default=_DEFAULT.nprobes, description="IVF partitions probed per query.")
    refine_factor: int = Field(
        default=_DEFAULT.refine_factor or 0,
        description="Re-rank refine_factor x k candidates with full vectors (0: off).",
    )
    lock_timeout_s: float = Field(
        default=3600.0, description="How long a writer waits for the table's lock."
    )

    def params(self) -> AnnParams:
        return AnnParams(
            index_type=self.index_type,
            min_rows=self.min_rows,
            target_partition_rows=self.target_partition_rows,
            retrain_growth=self.retrain_growth,
            max_delta_segments=self.max_delta_segments,
            nprobes=self.nprobes,
            refine_factor=self.refine_factor or None,
        )
