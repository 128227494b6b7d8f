"""`evaluation_report` [evaluate] and its blocking `no_regression` check.

The report compares the tenant's LoRA adapter with kNN over the vector index and an 8-mer naive
Bayes on held-out references (`core.evaluation.evaluate`); the check refuses a genus accuracy that
falls against the same tenant's previous evaluation.
"""

import json
import time
from dataclasses import fields

import numpy as np
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.tracking import WandbResource
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from pydantic import Field

from bioscan_assets.assets.keys import ADAPTER_KEY, INDEX_KEY, OWNERS, REPORT_KEY
from bioscan_assets.assets.provenance import record_provenance
from bioscan_assets.assets.retry import STORAGE_RETRY
from bioscan_assets.core.classify.knn_baseline import IndexNotReady
from bioscan_assets.core.evaluation.evaluate import AdapterMismatch, EvaluationSettings, evaluate
from bioscan_assets.core.evaluation.report import publish_latest
from bioscan_assets.core.layout import evaluation_report_dir
from bioscan_assets.core.storage import Store
from bioscan_assets.core.tuning.adapter import latest_adapter_folder

GENUS_METRIC = "lora/genus_accuracy_seen"
_EVAL = EvaluationSettings()


class EvaluationConfig(Config):
    lora_threshold: float = Field(
        default=_EVAL.lora_threshold, description="LoRA: abstain below this softmax probability."
    )
    knn_k: int = Field(default=_EVAL.knn_k, description="kNN: neighbours that vote.")
    knn_threshold: float = Field(
        default=_EVAL.knn_threshold, description="kNN: abstain below this vote share."
    )
    nb_threshold: float = Field(
        default=_EVAL.nb_threshold,
        description="Naive Bayes: abstain below this bootstrap confidence (RDP: 0.8).",
    )
    nb_bootstrap: int = Field(
        default=_EVAL.nb_bootstrap, description="Naive Bayes bootstrap trials."
    )
    nb_unseen_rate: float = Field(
        default=_EVAL.nb_unseen_rate,
        description="Naive Bayes reference gate (as taxonomy_calls' unseen_rate): share of "
        "leave-one-out 'unseen genus' cases let through at genus and species.",
    )
    tenant: str = Field(
        default="",
        description="Evaluate this tenant's latest adapter; empty: the adapter lora_adapter "
        "last produced (whichever tenant it was for). The report and no_regression are per "
        "tenant, and taxonomy_calls of a tenant follow only that tenant's evaluations.",
    )
    max_genus_drop_points: float = Field(
        default=5.0,
        description="no_regression fails when LoRA genus accuracy (seen genera) drops by more "
        "than this many percentage points below the previous materialisation.",
    )

    def settings(self) -> EvaluationSettings:
        names = {f.name for f in fields(EvaluationSettings)}
        return EvaluationSettings(**{k: v for k, v in self.model_dump().items() if k in names})


def _adapter_folder(
    context: AssetExecutionContext, store: Store, model_id: str, tenant: str = ""
) -> tuple[str, str]:
    """(folder, tenant) of the adapter lora_adapter last produced (for `tenant` when given),
    else of the store's latest pointer; the tenant is the one recorded in adapter.json."""
    records = context.instance.fetch_materializations(ADAPTER_KEY, limit=50).records
    folder = None
    for record in records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        recorded = metadata["tenant"].value if "tenant" in metadata else ""
        if "adapter_path" in metadata and (not tenant or recorded == tenant):
            folder = str(metadata["adapter_path"].value)
            break
    try:
        folder = folder or latest_adapter_folder(store, model_id, tenant or None)
        doc = json.loads(store.read_bytes(f"{folder}/adapter.json"))
    except FileNotFoundError:
        scope = f" and tenant {tenant}" if tenant else ""
        raise Failure(
            f"no adapter for model {model_id}{scope}: materialise lora_adapter first",
            allow_retries=False,
        ) from None
    return folder, str((doc.get("extra") or {}).get("tenant") or "")


@asset(
    key=REPORT_KEY,
    group_name="evaluate",
    deps=[ADAPTER_KEY, INDEX_KEY],
    kinds={"jax", "html"},
    owners=OWNERS,
    code_version="eval-1",
    retry_policy=STORAGE_RETRY,
    description="Held-out evaluation of the LoRA classifier, kNN over the vector index (base "
    "embeddings) and an RDP-style 8-mer naive Bayes: per-rank accuracy, macro-F1 and coverage, "
    "seen vs unseen labels; HTML report, Markdown summary and JSON under "
    "<storage>/reports/evaluation/tenant=<t>/<run_id>/, the newest also under .../latest/.",
)
def evaluation_report(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    storage: StorageResource,
    accelerator: AcceleratorResource,
    tracking: WandbResource,
) -> MaterializeResult:
    started_at = time.time()
    store = storage.output_store()
    executor = accelerator.executor()
    model, acc = executor.model, executor.accelerator
    folder, tenant = _adapter_folder(context, store, model.model_id, config.tenant)
    report_dir = f"{evaluation_report_dir(tenant)}/{context.run.run_id}"
    try:
        outcome = evaluate(store, model, acc, folder, report_dir, config.settings())
    except (AdapterMismatch, IndexNotReady) as error:
        raise Failure(str(error), allow_retries=False) from None
    split, headline, paths = outcome.split, outcome.headline, outcome.paths
    latest = publish_latest(store, paths)
    context.log.info(f"evaluation report: {store.url(latest['html'])}")
    with tracking.start(
        f"eval-{model.model_id}-{context.run.run_id[:8]}",
        "evaluate",
        {
            "adapter_version": outcome.adapter_version,
            "dagster_run_id": context.run.run_id,
            "tenant": tenant,
        },
        tags=["evaluation", model.model_id] + ([f"tenant:{tenant}"] if tenant else []),
        archive=store,
    ) as run:
        run.log({f"eval/{k}": v for k, v in headline.items() if v is not None})
        run.summary({f"eval/{k}": v for k, v in headline.items() if v is not None})
        wandb_dir = run.dir

    provenance = record_provenance(
        context,
        store,
        inputs={"lora_adapter": outcome.adapter_version}
        | {f"sequence_shards/{k}": v for k, v in outcome.shard_versions.items()},
        config=config.model_dump(),
        rows={"train": len(split.train), "test": len(split.test)},
        model=model.provenance(),
        device=acc.describe(),
        started_at=started_at,
        outputs={k: store.url(v) for k, v in paths.items()},
    )
    genus = headline["lora/genus_accuracy_seen"]
    return MaterializeResult(
        metadata={
            "summary": MetadataValue.md(outcome.summary),
            "report": MetadataValue.path(store.url(paths["html"])),
            "latest_report": MetadataValue.path(store.url(latest["html"])),
            "metrics_json": MetadataValue.path(store.url(paths["metrics"])),
            "adapter_version": outcome.adapter_version,
            "adapter_path": folder,
            # whose references the adapter and baselines learnt from; "" before tenant scoping
            "tenant": tenant,
            "pretrained": model.pretrained,
            "test_sequences": len(split.test),
            "test_seen_genus": len(split.test_seen),
            "test_unseen_genus": len(split.test_unseen),
            GENUS_METRIC: float(genus) if genus is not None else float("nan"),
            "knn/genus_accuracy_seen": as_metric(headline["knn/genus_accuracy_seen"]),
            "kmer_nb/genus_accuracy_seen": as_metric(headline["kmer_nb/genus_accuracy_seen"]),
            "max_genus_drop_points": config.max_genus_drop_points,
            "wandb_dir": wandb_dir or "disabled",
            **run.metadata(),
            **{k: round(v, 2) for k, v in outcome.timings.items()},
            **provenance,
        }
    )


def as_metric(value: float | None) -> float:
    """A metadata float: NaN stands for "not measured"."""
    return float("nan") if value is None else float(value)


def _tenant_of(metadata) -> str:
    return str(metadata["tenant"].value) if "tenant" in metadata else ""


@asset_check(
    asset=REPORT_KEY,
    blocking=True,
    description="Fails when the LoRA classifier's genus accuracy (seen genera) drops more than "
    "`max_genus_drop_points` (evaluation_report config) below the previous materialisation's.",
)
def no_regression(context: AssetCheckExecutionContext) -> AssetCheckResult:
    records = context.instance.fetch_materializations(REPORT_KEY, limit=50).records
    values = []
    for record in records:
        materialization = record.asset_materialization
        if materialization is None or GENUS_METRIC not in materialization.metadata:
            continue
        values.append((record.run_id, materialization.metadata))
    # per tenant: compare with the same tenant's previous evaluation (or one that names none)
    if values and _tenant_of(values[0][1]):
        values = [v for v in values if _tenant_of(v[1]) in ("", _tenant_of(values[0][1]))]
    if not values:
        return AssetCheckResult(passed=False, metadata={"reason": "no evaluation_report yet"})
    run_id, current = values[0]
    now = float(current[GENUS_METRIC].value)
    limit = (
        float(current["max_genus_drop_points"].value) if "max_genus_drop_points" in current else 5.0
    )
    if len(values) < 2:
        return AssetCheckResult(
            passed=True,
            metadata={"genus_accuracy": now, "previous": "none (first evaluation)"},
        )
    previous_run, previous = values[1]
    before = float(previous[GENUS_METRIC].value)
    drop = 100.0 * (before - now) if np.isfinite(before) and np.isfinite(now) else 0.0
    passed = drop <= limit
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "genus_accuracy": now,
            "previous_genus_accuracy": before,
            "previous_run_id": previous_run,
            "drop_points": round(drop, 2),
            "max_drop_points": limit,
            "evaluated_run_id": run_id,
        },
        description=None
        if passed
        else f"genus accuracy fell {drop:.1f} points ({100 * before:.1f}% -> {100 * now:.1f}%), "
        f"more than the allowed {limit:.1f}",
    )
