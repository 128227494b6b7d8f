"""`taxonomy_calls` and `taxonomic_profile` [taxonomy], partitioned by `samples`.

Thin: the classifier (fitted only on references the partition's tenant may use), the calls,
their layout and the profile all live in `core.calls`; these functions pick the method from
the latest evaluation, call core, and record what happened.
"""

import json
import time
from typing import Any

from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from bioscan_assets.assets.keys import (
    CALLS_KEY,
    INDEX_KEY,
    OWNERS,
    PROFILE_KEY,
    REPORT_KEY,
    SHARDS_KEY,
)
from bioscan_assets.assets.provenance import record_provenance
from bioscan_assets.core.calls.calls_layout import CALLS_FORMAT_VERSION, TSV_NAME, iter_calls
from bioscan_assets.core.calls.method_choice import choose_method
from bioscan_assets.core.calls.model_calls import AdapterNotUsable
from bioscan_assets.core.calls.plots import stacked_barplot
from bioscan_assets.core.calls.profile import (
    profile_from_calls,
    rank_rows,
    rank_shares,
    top_taxa_markdown,
    write_profile,
)
from bioscan_assets.core.calls.sample_calls import (
    CallSettings,
    ModelContext,
    call_sample,
    fit_tenant_classifier,
)
from bioscan_assets.core.classify.knn_baseline import IndexNotReady
from bioscan_assets.core.evaluation.evaluate import EvaluationSettings
from bioscan_assets.core.layout import profile_dir, split_partition_key, taxonomy_dir
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.partitions import samples_partitions, tenants_partitions

_EVAL = EvaluationSettings()  # the calls replay the evaluated methods with the same knobs


class TaxonomyCallsConfig(Config):
    threshold: float = Field(default=0.8, description="Bootstrap cut-off per rank (RDP: 0.8).")
    bootstrap: int = Field(default=100, description="Bootstrap trials per distinct sequence.")
    unseen_rate: float = Field(
        default=CallSettings.unseen_rate,
        description="Reference gate: share of leave-one-out 'unseen genus' cases let through "
        "at genus and species (lower abstains more; see core.classify.reference_gate).",
    )
    knn_k: int = Field(default=_EVAL.knn_k, description="kNN calls: neighbours that vote.")
    knn_threshold: float = Field(
        default=_EVAL.knn_threshold, description="kNN calls: abstain below this vote share."
    )
    lora_threshold: float = Field(
        default=_EVAL.lora_threshold,
        description="LoRA calls: abstain below this softmax probability.",
    )
    shared_reference_keys: list[str] = Field(
        default_factory=list,
        description="Partition keys of reference samples every tenant may use, besides the "
        "'shared' tenant's (e.g. a public 16S database).",
    )

    def settings(self) -> CallSettings:
        return CallSettings(
            threshold=self.threshold,
            bootstrap=self.bootstrap,
            unseen_rate=self.unseen_rate,
            knn_k=self.knn_k,
            knn_threshold=self.knn_threshold,
            lora_threshold=self.lora_threshold,
        )


def _latest_evaluation(
    context: AssetExecutionContext, store, tenant: str
) -> tuple[dict | None, dict]:
    """(metrics.json of the tenant's latest evaluation_report, where it came from).

    Only evaluations recorded for this tenant count: another tenant's (or one from before
    tuning was per tenant) learnt from references this tenant may not use.
    """
    records = context.instance.fetch_materializations(REPORT_KEY, limit=50).records
    for record in records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        if "tenant" in metadata and metadata["tenant"].value == tenant:
            break
    else:
        return None, {"evaluation": "none", "tenant": tenant}
    path = metadata.get("metrics_json")
    source = {"evaluation_run_id": record.run_id, "tenant": tenant}
    if path is None:
        return None, source
    rel = str(path.value).removeprefix(store.root).lstrip("/")
    try:
        return json.loads(store.read_bytes(rel)), source | {"metrics_json": str(path.value)}
    except (FileNotFoundError, ValueError):
        return None, source | {"metrics_json": f"unreadable: {path.value}"}


def _no_regression_passed(context: AssetExecutionContext, run_id: str | None) -> bool | None:
    """Whether no_regression passed in the evaluation's own run (None: not checked there)."""
    if run_id is None:
        return None
    storage = context.instance.event_log_storage
    history = storage.get_asset_check_execution_history(
        AssetCheckKey(REPORT_KEY, "no_regression"), limit=50
    )
    for execution in history:
        if execution.run_id != run_id:
            continue
        event = execution.event
        evaluation = (
            event.dagster_event.event_specific_data if event and event.dagster_event else None
        )
        return bool(getattr(evaluation, "passed", False))
    return None


def _models(
    method: str, metrics: dict | None, accelerator: AcceleratorResource
) -> ModelContext | None:
    """The encoder (and the evaluated adapter) for kNN and LoRA calls; None for naive Bayes."""
    if method == "kmer_nb":
        return None
    executor = accelerator.executor()
    adapter = ((metrics or {}).get("adapter") or {}).get("path")
    return ModelContext(executor.model, executor.accelerator, adapter)


@asset(
    key=CALLS_KEY,
    group_name="taxonomy",
    partitions_def=samples_partitions,
    deps=[SHARDS_KEY, INDEX_KEY, REPORT_KEY],
    kinds={"parquet"},
    owners=OWNERS,
    code_version=f"calls-{CALLS_FORMAT_VERSION}",
    # re-called when the shards, the index or the evaluation (the choice of method) change;
    # without any evaluation yet the naive Bayes calls, so a missing report does not hold them
    automation_condition=AutomationCondition.eager().replace(
        "any_deps_missing",
        AutomationCondition.any_deps_missing().ignore(AssetSelection.assets(REPORT_KEY)),
    ),
    description="A call at each of the seven ranks for every shard row, with confidence and "
    "method (abstaining at a rank blanks the ranks below): Parquet + manifest and a QIIME 2 "
    "taxonomy.tsv under <storage>/taxonomy/tenant=<t>/sample=<s>/. The method is the one the "
    "tenant's latest evaluation ranks best (naive Bayes, kNN over the index's labelled "
    "references, or the LoRA adapter); it learns only from references the tenant may use "
    "(its own and the shared ones).",
)
def taxonomy_calls(
    context: AssetExecutionContext,
    config: TaxonomyCallsConfig,
    storage: StorageResource,
    accelerator: AcceleratorResource,
) -> MaterializeResult:
    started_at = time.time()
    store = storage.output_store()
    key = context.partition_key
    tenant, sample_id = split_partition_key(key)
    metrics, source = _latest_evaluation(context, store, tenant)
    choice = choose_method(metrics, _no_regression_passed(context, source.get("evaluation_run_id")))
    partitions = context.instance.get_dynamic_partitions(samples_partitions.name)
    try:
        fitted = fit_tenant_classifier(
            store,
            tenant,
            partitions,
            config.settings(),
            shared_keys=config.shared_reference_keys,
            method=choice["used"],
            models=_models(choice["used"], metrics, accelerator),
        )
    except (AdapterNotUsable, IndexNotReady) as error:
        raise Failure(str(error), allow_retries=False) from None
    context.log.info(
        f"{key}: {choice['used']} calls ({choice['reason']}), fingerprint {fitted.fingerprint}"
    )
    manifest = call_sample(store, key, fitted)
    summary = manifest["summary"]
    if fitted.classifier is None:
        context.log.warning(f"{key}: tenant {tenant} has no usable reference: calls unassigned")
    called = {f"called_{rank}": summary["called_at_rank"][rank] for rank in RANKS}
    provenance = record_provenance(
        context,
        store,
        inputs={f"sequence_shards/{key}": str(manifest["shard_version"])}
        | {f"references/{k}": v for k, v in fitted.references.versions.items()},
        config=config.model_dump(),
        rows={"calls": manifest["rows"]},
        started_at=started_at,
        outputs={"calls": store.url(taxonomy_dir(tenant, sample_id))},
    )
    return MaterializeResult(
        metadata={
            "dagster/row_count": manifest["rows"],
            "method": fitted.description["method"],
            "method_preferred": choice["preferred"],
            "method_reason": choice["reason"],
            "evaluation": MetadataValue.json(source | {"ranking": choice["ranking"]}),
            "classifier": MetadataValue.json(fitted.description),
            "classifier_fingerprint": fitted.fingerprint,
            "reference_partitions": ", ".join(sorted(fitted.references.versions)) or "none",
            "reference_sequences": len(fitted.references),
            "calls_version": manifest["version"],
            "taxonomy_tsv": MetadataValue.path(
                store.url(f"{taxonomy_dir(tenant, sample_id)}/{TSV_NAME}")
            ),
            "status": MetadataValue.json(summary["status"]),
            "reverse_strand_reads": summary["reverse_strand"],
            **called,
            **provenance,
        }
    )


class TaxonomicProfileConfig(Config):
    rank: str = Field(default="genus", description="Rank of the top-taxa table and the barplot.")
    top: int = Field(default=10, description="Taxa shown in the table and the barplot.")


@asset(
    key=PROFILE_KEY,
    group_name="taxonomy",
    partitions_def=samples_partitions,
    deps=[CALLS_KEY],
    kinds={"parquet"},
    owners=OWNERS,
    code_version="profile-1",
    automation_condition=AutomationCondition.eager(),
    description="Per rank: each taxon's reads and fraction of the sample (every read counts, "
    "unassigned included), with a top-taxa table and a stacked barplot, under "
    "<storage>/profiles/tenant=<t>/sample=<s>/.",
)
def taxonomic_profile(
    context: AssetExecutionContext, config: TaxonomicProfileConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.output_store()
    tenant, sample_id = split_partition_key(context.partition_key)
    if config.rank not in RANKS:
        raise ValueError(f"rank {config.rank!r} is not one of {', '.join(RANKS)}")
    if not context.instance.has_dynamic_partition(tenants_partitions.name, tenant):
        # samples registered before per-tenant views existed: their tenant's cohort_report
        # partition appears with the first profile
        context.instance.add_dynamic_partitions(tenants_partitions.name, [tenant])
    profile = profile_from_calls(iter_calls(store, tenant, sample_id, columns=list(RANKS)))
    folder = profile_dir(tenant, sample_id)
    paths = write_profile(store, tenant, sample_id, profile)
    bars = {rank: rank_shares(rank_rows(profile, rank)) for rank in RANKS[1:]}
    png = stacked_barplot(bars, title=f"{tenant}/{sample_id}", top=config.top)
    metadata: dict[str, Any] = {
        "dagster/row_count": profile.num_rows,
        "top_taxa": MetadataValue.md(top_taxa_markdown(profile, config.rank, config.top)),
        "profile": MetadataValue.path(store.url(paths["parquet"])),
        "profile_tsv": MetadataValue.path(store.url(paths["tsv"])),
    }
    if png is not None:
        store.write_bytes(f"{folder}/barplot.png", png)
        metadata["barplot"] = MetadataValue.path(store.url(f"{folder}/barplot.png"))
        metadata["barplot_preview"] = MetadataValue.md(
            f"![barplot]({store.url(f'{folder}/barplot.png')})"
        )
    reads = sum(row["reads"] for row in rank_rows(profile, "kingdom"))
    metadata["reads"] = reads
    return MaterializeResult(metadata=metadata)


taxonomy_assets = [taxonomy_calls, taxonomic_profile]
