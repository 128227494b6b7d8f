"""`vector_index`: the partition's rows in the tenant's LanceDB table for the embedding model."""

import time
from collections.abc import Iterator, Mapping
from typing import Any

from bioscan_resources.storage import StorageResource
from bioscan_resources.vector_store import VectorStoreResource
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset_check,
)
from pydantic import Field

from bioscan_assets.assets.batch import (
    SAMPLE_BACKFILL,
    combine_check_results,
    materialize_partitions,
    partition_keys,
)
from bioscan_assets.assets.keys import EMBEDDINGS_KEY, INDEX_KEY, OWNERS, SHARDS_KEY
from bioscan_assets.assets.provenance import record_provenance
from bioscan_assets.assets.retry import STORAGE_RETRY
from bioscan_assets.core.embedding.reader import embedding_dim, read_embedding_manifest
from bioscan_assets.core.governance.lineage import lineage_inputs
from bioscan_assets.core.index.partition_rows import choose_model_id, partition_summary
from bioscan_assets.core.index.tables import SCHEMA_VERSION, database_uri
from bioscan_assets.core.index.upsert import upsert_partition
from bioscan_assets.core.layout import split_partition_key
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions


class VectorIndexConfig(Config):
    model_id: str = Field(
        default="",
        description="Model whose embeddings to index. Default: the model of the latest "
        "sequence_embeddings materialisation of this partition, else the only one on storage.",
    )


def _latest_metadata(context, key: AssetKey, partition: str, name: str) -> str | None:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    for record in records:
        materialization = record.asset_materialization
        value = materialization.metadata.get(name) if materialization else None
        if value is not None and value.value:
            return str(value.value)
    return None


def _model_id(context, store, key: str, configured: str = "") -> str:
    if configured:
        return configured
    upstream = _latest_metadata(context, EMBEDDINGS_KEY, key, "model_id")
    return choose_model_id(store, *split_partition_key(key), upstream)


@asset(
    key=INDEX_KEY,
    group_name="index",
    partitions_def=samples_partitions,
    deps=[EMBEDDINGS_KEY, SHARDS_KEY],
    kinds={"lancedb"},
    owners=OWNERS,
    code_version=f"index-{SCHEMA_VERSION}",
    retry_policy=STORAGE_RETRY,
    backfill_policy=SAMPLE_BACKFILL,
    # One writer per LanceDB table: concurrent merge_inserts can duplicate rows (lancedb#3377).
    # The file lock covers one machine; set the pool's limit to 1 for everything else:
    # `dagster instance concurrency set lancedb 1` (or concurrency.pools in dagster.yaml).
    pool="lancedb",
    description="The partition's shard rows + embedding vectors upserted into the tenant's "
    "LanceDB table for the model (<storage>/lancedb/<tenant>/sequences_<model_id>); rows the "
    "shards no longer hold are removed, other samples are untouched; scalar and ANN (cosine) "
    "indexes kept current.",
)
def vector_index(
    context: AssetExecutionContext,
    config: VectorIndexConfig,
    storage: StorageResource,
    vector_store: VectorStoreResource,
) -> MaterializeResult:
    return materialize_partitions(
        context,
        lambda key: _upsert(context, config, storage, vector_store, key),
        summary=("rows", "inserted", "updated", "deleted"),
        batch_metadata=_batch_models,
    )


def _batch_models(results: Mapping[str, MaterializeResult]) -> dict[str, Any]:
    """The batch's model (the index checks read it), when all its partitions share one."""
    models = {str(r.metadata["model_id"]) for r in results.values() if r.metadata}
    return {"model_id": models.pop()} if len(models) == 1 else {}


def _upsert(
    context: AssetExecutionContext,
    config: VectorIndexConfig,
    storage: StorageResource,
    vector_store: VectorStoreResource,
    key: str,
) -> MaterializeResult:
    tenant, sample_id = split_partition_key(key)
    store = storage.output_store()
    started_at = time.time()
    model_id = _model_id(context, store, key, config.model_id)
    manifest = read_embedding_manifest(store, model_id, tenant, sample_id)
    result = upsert_partition(
        store,
        tenant,
        sample_id,
        model_id,
        params=vector_store.params(),
        lock_timeout_s=vector_store.lock_timeout_s,
        log=context.log.info,
    )
    ann = result.index.get("ann") or {}
    provenance = record_provenance(
        context,
        store,
        partition_key=key,
        started_at=started_at,
        inputs=lineage_inputs(store, tenant, sample_id, model_id),
        rows={"rows": result.rows, "inserted": result.inserted, "deleted": result.deleted},
        model={"model_id": model_id, "weights_hash": manifest.get("weights_hash") or ""},
    )
    return MaterializeResult(
        metadata={
            **provenance,
            "dagster/row_count": result.rows,
            "rows": result.rows,
            "inserted": result.inserted,
            "updated": result.updated,
            "deleted": result.deleted,
            "table": result.table,
            "table_uri": MetadataValue.path(database_uri(store, tenant) + "/" + result.table),
            "table_rows": result.table_rows,
            "table_version": result.version,
            "model_id": model_id,
            "weights_hash": manifest.get("weights_hash") or "",
            "embedding_manifest_rows": int(manifest["rows"]),
            "ann_index": ann.get("type") or "none (table below min_rows: exact search)",
            "ann_indexed_rows": ann.get("indexed_rows") or 0,
            "ann_segments": ann.get("segments") or 0,
            "index_actions": MetadataValue.json(result.index.get("actions", [])),
            "scalar_indexes": MetadataValue.json(sorted(result.index.get("scalar", {}))),
            **{k: v for k, v in result.timings.items()},
        }
    )


def _check_model(context, store, key: str) -> str:
    found = _latest_metadata(context, INDEX_KEY, key, "model_id")
    return found or choose_model_id(
        store, *split_partition_key(key), _latest_metadata(context, EMBEDDINGS_KEY, key, "model_id")
    )


def evaluate_checks(
    store: Store, tenant: str, sample_id: str, model_id: str
) -> dict[str, AssetCheckResult]:
    """The three checks' results for one partition from one summary of the table (a plain
    function: testable without a run)."""
    manifest = read_embedding_manifest(store, model_id, tenant, sample_id)
    summary = partition_summary(store, tenant, model_id, sample_id)
    expected_dim = embedding_dim(store, model_id, tenant, sample_id, manifest)
    severity = AssetCheckSeverity.ERROR
    return {
        "index_rows_match_embeddings": AssetCheckResult(
            check_name="index_rows_match_embeddings",
            asset_key=INDEX_KEY,
            passed=summary["rows"] == int(manifest["rows"]),
            severity=severity,
            metadata={
                "model_id": model_id,
                "index_rows": summary["rows"],
                "embedding_rows": int(manifest["rows"]),
            },
        ),
        "index_unique_keys": AssetCheckResult(
            check_name="index_unique_keys",
            asset_key=INDEX_KEY,
            passed=summary["duplicate_keys"] == 0,
            severity=severity,
            metadata={"model_id": model_id, "duplicate_keys": summary["duplicate_keys"]},
        ),
        "index_vector_dimension": AssetCheckResult(
            check_name="index_vector_dimension",
            asset_key=INDEX_KEY,
            passed=summary["dim"] == expected_dim,
            severity=severity,
            metadata={
                "model_id": model_id,
                "table_dim": summary["dim"] or 0,
                "model_dim": expected_dim,
            },
        ),
    }


_CHECKS = {
    "index_rows_match_embeddings": "The table holds exactly as many rows of this sample as it "
    "has embedding rows.",
    "index_unique_keys": "No key (sample_id/sequence_id) occurs twice in the table.",
    "index_vector_dimension": "The table's vector dimension equals the model's (its embeddings' "
    "dimension).",
}


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            name,
            asset=INDEX_KEY,
            partitions_def=samples_partitions,
            blocking=True,
            description=description,
        )
        for name, description in _CHECKS.items()
    ],
    description="The partition's rows in the index against its embeddings, from one summary "
    "of the table.",
)
def vector_index_checks(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> Iterator[AssetCheckResult]:
    store = storage.output_store()
    by_partition = {
        key: evaluate_checks(store, *split_partition_key(key), _check_model(context, store, key))
        for key in partition_keys(context)
    }
    for name in _CHECKS:
        yield combine_check_results({key: checks[name] for key, checks in by_partition.items()})


index_assets = [vector_index]
index_checks = [vector_index_checks]
