"""`sequence_embeddings`: one 2560-dim (model hidden size) vector per shard row, each distinct
sequence computed once per tenant and model weights (`core.embedding.hash_store`)."""

import os
import time

import numpy as np
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from bioscan_assets.assets.batch import SAMPLE_BACKFILL, combine_check_results, partition_keys
from bioscan_assets.assets.keys import EMBEDDINGS_KEY, OWNERS, SHARDS_KEY
from bioscan_assets.assets.provenance import (
    embedding_data_version,
    model_code_version,
    record_provenance,
)
from bioscan_assets.assets.retry import STORAGE_RETRY
from bioscan_assets.core.embedding.compute import (
    EmbedStats,
    embed_partition,
    iter_embedding_batches,
    read_embedding_manifest,
)
from bioscan_assets.core.governance.lineage import lineage_inputs
from bioscan_assets.core.ingest.shard_reader import read_shard_manifest
from bioscan_assets.core.layout import split_partition_key
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from bioscan_assets.k8s import accelerator_step_tags
from bioscan_assets.partitions import samples_partitions


@asset(
    key=EMBEDDINGS_KEY,
    group_name="embed",
    partitions_def=samples_partitions,
    deps=[SHARDS_KEY],
    kinds={"jax", "parquet"},
    owners=OWNERS,
    code_version=model_code_version("1", os.environ.get("BIOSCAN_MODEL", "demo")),
    op_tags=accelerator_step_tags(),
    pool="tpu",
    retry_policy=STORAGE_RETRY,
    backfill_policy=SAMPLE_BACKFILL,
    description="Nucleotide Transformer embeddings (mean of the last layer), one vector per shard "
    "row under <storage>/embeddings/<model_id>/; each distinct sequence is computed once per "
    "tenant and model weights and kept in the hash store under <storage>/vectors/.",
)
def sequence_embeddings(
    context: AssetExecutionContext, storage: StorageResource, accelerator: AcceleratorResource
) -> MaterializeResult:
    store = storage.output_store()
    started = time.perf_counter()
    executor = accelerator.executor()
    model = executor.model
    load_s = time.perf_counter() - started
    compiled_before = executor.compilations
    counts: dict[str, dict] = {}
    total = EmbedStats()
    provenance: dict = {}
    result: dict = {}
    for key in context.partition_keys:
        tenant, sample_id = split_partition_key(key)
        partition_started = time.time()
        executor.stats = EmbedStats(shapes=set())
        result = embed_partition(
            store,
            tenant,
            sample_id,
            executor,
            chunk_rows=accelerator.chunk_rows,
            chunk_seconds=accelerator.chunk_seconds,
            log=context.log.info,
        )
        counts[key] = {k: result[k] for k in ("rows", "distinct", "computed", "reused", "wall_s")}
        provenance = record_provenance(
            context,
            store,
            partition_key=key,
            inputs=lineage_inputs(store, tenant, sample_id),
            rows={k: result[k] for k in ("rows", "distinct", "computed", "reused")},
            model=model.provenance(),
            device=executor.accelerator.describe(),
            started_at=partition_started,
        )
        stats = executor.stats
        for name in ("sequences", "real_tokens", "computed_tokens", "windowed", "batches"):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
        for name in ("read_s", "tokenise_s", "compute_s", "write_s"):
            setattr(total, name, getattr(total, name) + getattr(stats, name))
        total.shapes |= stats.shapes
    wall = time.perf_counter() - started
    stats_md = total.as_metadata(wall)
    if not model.pretrained:
        context.log.warning(
            f"model {model.model_id} is NOT pretrained (random weights): vectors are for testing"
        )
    single = len(counts) == 1
    sums = {k: sum(c[k] for c in counts.values()) for k in ("rows", "distinct", "computed")}
    embed_s = sum(c["wall_s"] for c in counts.values())
    return MaterializeResult(
        # one data version per run: only meaningful when the run covers one partition
        data_version=embedding_data_version(result) if single else None,
        metadata={
            **(provenance if single else {}),
            "rows": sums["rows"],
            "distinct_sequences": sums["distinct"],
            "computed_now": sums["computed"],
            "reused_from_store": sums["distinct"] - sums["computed"],
            "computed_vectors_per_s": round(sums["computed"] / embed_s, 2) if embed_s else 0.0,
            "effective_rows_per_s": round(sums["rows"] / embed_s, 2) if embed_s else 0.0,
            "model_id": model.model_id,
            "weights_hash": model.weights_hash,
            "pretrained": model.pretrained,
            **{k: v for k, v in executor.accelerator.describe().items()},
            "dim": model.config.hidden_size,
            "sequences_per_s": stats_md["sequences_per_s"],
            "tokens_per_s": stats_md["tokens_per_s"],
            "padding_efficiency": stats_md["padding_efficiency"],
            "batch_shapes": stats_md["compilations"],
            "new_compilations": executor.compilations - compiled_before,
            "windowed_sequences": stats_md["windowed"],
            "model_load_s": round(load_s, 3),
            "read_s": stats_md["read_s"],
            "tokenise_s": stats_md["tokenise_s"],
            "compute_s": stats_md["compute_s"],
            "write_s": stats_md["write_s"],
            "wall_s": stats_md["wall_s"],
            "partitions": MetadataValue.md(_partition_table(counts)),
        },
    )


def _partition_table(counts: dict[str, dict]) -> str:
    """Per partition: rows, distinct sequences, computed now, reused, and both rates."""
    lines = [
        "| partition | rows | distinct | computed now | reused from store | computed vectors/s "
        "| effective rows/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, c in counts.items():
        wall = max(c["wall_s"], 1e-9)
        lines.append(
            f"| {key} | {c['rows']} | {c['distinct']} | {c['computed']} | {c['reused']} | "
            f"{c['computed'] / wall:.1f} | {c['rows'] / wall:.1f} |"
        )
    return "\n".join(lines)


@asset_check(
    asset="sequence_embeddings",
    description="One finite vector per shard row, of the model's hidden size.",
)
def embeddings_complete(
    context: AssetCheckExecutionContext, storage: StorageResource, accelerator: AcceleratorResource
) -> AssetCheckResult:
    store = storage.output_store()
    model = load_model(accelerator.model)  # cached; no need to put weights on devices here
    return combine_check_results(
        {key: _vectors_complete(store, model, key) for key in partition_keys(context)}
    )


def _vectors_complete(store: Store, model: LoadedModel, key: str) -> AssetCheckResult:
    tenant, sample_id = split_partition_key(key)
    shard_rows = read_shard_manifest(store, tenant, sample_id)["rows"]
    manifest = read_embedding_manifest(store, model.model_id, tenant, sample_id)
    problems = []
    rows = 0
    for batch in iter_embedding_batches(store, model.model_id, tenant, sample_id):
        vectors = batch.column("vector")
        if vectors.type.list_size != model.config.hidden_size:
            problems.append(f"dimension {vectors.type.list_size}")
        if not np.isfinite(vectors.flatten().to_numpy(zero_copy_only=False)).all():
            problems.append("NaN/Inf in vectors")
        rows += batch.num_rows
    if rows != shard_rows or manifest["rows"] != shard_rows:
        problems.append(f"{rows} vectors for {shard_rows} shard rows")
    return AssetCheckResult(
        passed=not problems,
        metadata={"vectors_checked": rows, "problems": "; ".join(problems) or "none"},
    )


embed_checks = [embeddings_complete]
