"""`lora_adapter` [tune] and `evaluation_report` [evaluate], the `no_regression` check and the
`tune_and_evaluate` job.

Both assets are unpartitioned and read every reference sample partition (a drop with a
taxonomy.tsv). The heavy lifting is in `core.training`, `core.kmer_nb`, `core.metrics` and
`core.report`; these functions pick inputs, call them, and record what happened.
"""

import contextlib
import json
import time
from pathlib import Path
from typing import Any

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
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
    define_asset_job,
)
from pydantic import Field

from bioscan_assets.assets.keys import ADAPTER_KEY, INDEX_KEY, OWNERS, REPORT_KEY, SHARDS_KEY
from bioscan_assets.assets.provenance import record_provenance
from bioscan_assets.k8s import accelerator_step_tags
from bioscan_assets.partitions import samples_partitions
from bioscan_assets.settings import bioscan_home

GENUS_METRIC = "lora/genus_accuracy_seen"


class TuneConfig(Config):
    """Defaults fit the bundled demo on 2 CPU cores (demo model, ~60 training sequences)."""

    steps: int = Field(default=16, description="Optimiser steps.")
    batch_size: int = Field(default=8, description="Sequences per step (rounded to the mesh).")
    crop_tokens: int = Field(
        default=64, description="Tokens per training window (<cls> + 6-mers; 64 ~ 380 bp)."
    )
    window: str = Field(
        default="random",
        description="Training window: 'random' (anywhere; reads from any region) or 'start' "
        "(always the first, in training and prediction; references sharing a start primer).",
    )
    learning_rate: float = Field(default=2e-3, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(default=2, description="Linear warmup steps before cosine decay.")
    weight_decay: float = 0.01
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    lora_targets: list[str] = Field(default_factory=lambda: ["query", "value"])
    remat: bool = Field(default=False, description="Rematerialise layers (less memory).")
    rank_weights: list[float] = Field(
        default_factory=lambda: [2.0, 1.8, 1.5, 1.2, 1.0, 0.8, 0.6],
        description="Loss weight per rank, kingdom to species.",
    )
    seed: int = Field(default=0, description="Seeds the split, the adapter init and the batches.")
    unseen_genus_fraction: float = Field(
        default=0.15, description="Share of genera held out entirely (unseen-genus test set)."
    )
    test_fraction: float = Field(
        default=0.15, description="Share of the other sequences held out (seen-genus test set)."
    )
    checkpoint_every_steps: int = 10
    checkpoint_every_minutes: float = 10.0
    keep_checkpoints: int = 3

    def train_config(self):
        from bioscan_assets.core.tuning.training import TrainConfig

        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            crop_tokens=self.crop_tokens,
            window=self.window,
            learning_rate=self.learning_rate,
            warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            lora_targets=tuple(self.lora_targets),
            remat=self.remat,
            rank_weights=tuple(self.rank_weights),
            seed=self.seed,
            checkpoint_every_steps=self.checkpoint_every_steps,
            checkpoint_every_minutes=self.checkpoint_every_minutes,
            keep_checkpoints=self.keep_checkpoints,
        )


class EvaluationConfig(Config):
    lora_threshold: float = Field(
        default=0.5, description="LoRA: abstain below this softmax probability."
    )
    knn_k: int = Field(default=5, description="kNN: neighbours that vote.")
    knn_threshold: float = Field(default=0.5, description="kNN: abstain below this vote share.")
    nb_threshold: float = Field(
        default=0.8, description="Naive Bayes: abstain below this bootstrap confidence (RDP: 0.8)."
    )
    nb_bootstrap: int = Field(default=100, description="Naive Bayes bootstrap trials.")
    max_genus_drop_points: float = Field(
        default=5.0,
        description="no_regression fails when LoRA genus accuracy (seen genera) drops by more "
        "than this many percentage points below the previous materialisation.",
    )


def _reference_keys(context: AssetExecutionContext, store) -> tuple[list[str], dict[str, str]]:
    from bioscan_assets.core.tuning.training import find_reference_partitions

    keys = context.instance.get_dynamic_partitions(samples_partitions.name)
    references, skipped = find_reference_partitions(store, keys)
    for key, why in skipped.items():
        context.log.info(f"{key}: not used ({why})")
    if not references:
        missing = [k for k, why in skipped.items() if "materialise" in why]
        raise Failure(
            "no reference sample (a drop with taxonomy.tsv) has shards"
            + (f"; materialise sequence_shards for {', '.join(missing)}" if missing else "")
            + f" ({len(keys)} sample partitions known)"
        )
    return references, skipped


def _local_files(store, rels: list[str], stack: contextlib.ExitStack) -> list[Path]:
    return [stack.enter_context(store.local_copy(rel)) for rel in rels]


@asset(
    key=ADAPTER_KEY,
    group_name="tune",
    deps=[SHARDS_KEY],
    kinds={"jax", "wandb"},
    owners=OWNERS,
    code_version="lora-1",
    op_tags=accelerator_step_tags(),
    pool="tpu",
    description="LoRA adapter (query/value) on the frozen encoder plus a seven-rank taxonomy "
    "head, trained on the reference samples; a small versioned artefact under adapters/.",
)
def lora_adapter(
    context: AssetExecutionContext,
    config: TuneConfig,
    storage: StorageResource,
    accelerator: AcceleratorResource,
    tracking: WandbResource,
) -> MaterializeResult:
    from bioscan_assets.core.model import lora as lora_mod
    from bioscan_assets.core.model.presets import PRESETS
    from bioscan_assets.core.tuning.training import (
        Adapter,
        load_reference_data,
        make_split,
        save_adapter,
        train_classifier,
    )

    started_at = time.time()
    store = storage.output_store()
    executor = accelerator.executor()
    model, acc = executor.model, executor.accelerator
    train_config = config.train_config()
    references, skipped = _reference_keys(context, store)
    data = load_reference_data(store, references)
    split = make_split(
        data.ids,
        data.lineages,
        train_config.seed,
        unseen_genus_fraction=config.unseen_genus_fraction,
        test_fraction=config.test_fraction,
    )
    train_seqs, train_lineages = data.subset(split.train)
    context.log.info(
        f"{len(data.ids)} labelled sequences from {len(references)} reference samples; "
        f"split {split.counts()} (digest {split.digest()})"
    )
    if not model.pretrained:
        context.log.warning(
            f"base model {model.model_id} is NOT pretrained (random weights): the adapter "
            "learns on a random encoder"
        )
    run_name = f"lora-{model.model_id}-{context.run.run_id[:8]}"
    with tracking.start(
        run_name,
        "tune",
        {
            **train_config.to_json(),
            "base_model": model.model_id,
            "base_weights_hash": model.weights_hash,
            "pretrained": model.pretrained,
            "split": split.counts() | {"digest": split.digest()},
            "dagster_run_id": context.run.run_id,
        },
        tags=["lora", model.model_id],
    ) as run:
        result = train_classifier(
            train_seqs,
            train_lineages,
            model,
            train_config,
            workdir=Path(bioscan_home()) / "tune",
            ids=split.train,
            accelerator=acc,
            store=store,
            store_prefix="tune/checkpoints",
            say=context.log.info,
            on_metrics=lambda metrics, step: run.log(
                {f"train/{k}": v for k, v in metrics.items()}, step=step
            ),
        )
        adapter = Adapter.from_training(
            result,
            model,
            split,
            reference_partitions=references,
            final_loss=result.final_loss(),
            train_seconds=round(result.train_seconds, 3),
            sequences_per_s=round(result.sequences_per_s, 3),
            tokens_per_s=round(result.tokens_per_s, 1),
            trainable_fraction=result.parameters["trainable_fraction"],
            parameters=result.parameters,
            run_key=result.run_key,
        )
        doc = save_adapter(store, adapter, split)
        folder = doc["path"]
        run.summary(
            {
                "adapter/version": doc["version"],
                "adapter/trainable_fraction": result.parameters["trainable_fraction"],
                "train/seconds": result.train_seconds,
            }
        )
        with contextlib.ExitStack() as stack:
            files = _local_files(
                store,
                [f"{folder}/adapter.safetensors", f"{folder}/adapter.json", f"{folder}/split.json"],
                stack,
            )
            run.log_artifact(
                f"lora-adapter-{model.model_id}",
                "model",
                files,
                {"version": doc["version"], "base_weights_hash": model.weights_hash},
            )
        wandb_dir = run.dir

    big = lora_mod.trainable_fraction(PRESETS["nt-2.5b-multi-species"], train_config.lora)
    provenance = record_provenance(
        context,
        store,
        inputs={
            f"sequence_shards/{key}": info["shard_version"] for key, info in data.partitions.items()
        },
        config=train_config.to_json(),
        rows={
            "labelled": len(data.ids),
            "train": len(split.train),
            "test_seen_genus": len(split.test_seen),
            "test_unseen_genus": len(split.test_unseen),
        },
        model=model.provenance(),
        device=acc.describe(),
        started_at=started_at,
        outputs={"adapter": store.url(folder), "bytes": doc["weights"]["bytes"]},
    )
    last = result.history[-1] if result.history else {}
    per_rank = "\n".join(
        f"| {rank} | {len(adapter.vocab.labels[rank])} | {last.get(f'loss_{rank}', float('nan')):.4f} |"
        for rank in adapter.vocab.labels
    )
    return MaterializeResult(
        metadata={
            "adapter_version": doc["version"],
            "adapter_path": folder,
            "adapter_url": MetadataValue.path(store.url(folder)),
            "adapter_bytes": doc["weights"]["bytes"],
            "base_model_id": model.model_id,
            "base_weights_hash": model.weights_hash,
            "pretrained": model.pretrained,
            "reference_partitions": ", ".join(references),
            "skipped_partitions": MetadataValue.json(skipped),
            "split_digest": split.digest(),
            "train_sequences": len(split.train),
            "test_seen_genus": len(split.test_seen),
            "test_unseen_genus": len(split.test_unseen),
            "steps": result.steps,
            "resumed_from_step": result.resumed_from_step
            if result.resumed_from_step is not None
            else -1,
            "resumed_from": result.resumed_from or "none",
            "final_loss": _num(result.final_loss()),
            "loss_per_rank": MetadataValue.md(
                "| rank | classes | final loss |\n|---|---|---|\n" + per_rank
            ),
            "train_seconds": round(result.train_seconds, 2),
            "first_step_seconds": round(result.first_step_seconds, 2),
            "sequences_per_s": round(result.sequences_per_s, 3),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "trainable_parameters": result.parameters["actual_trainable"],
            "trainable_fraction": result.parameters["trainable_fraction"],
            "adapter_fraction": result.parameters["adapter_fraction"],
            "nt_2_5b_adapter_fraction": big["adapter_fraction"],
            "checkpoints": MetadataValue.json(result.checkpoints),
            "wandb_dir": wandb_dir or "disabled",
            **{k: v for k, v in acc.describe().items()},
            **provenance,
        },
        data_version=DataVersion(doc["version"]),
    )


def _adapter_folder(context: AssetExecutionContext, store, model_id: str) -> str:
    """The adapter lora_adapter last produced (its metadata), else the store's latest pointer."""
    from bioscan_assets.core.tuning.training import latest_pointer

    event = context.instance.get_latest_materialization_event(ADAPTER_KEY)
    materialization = event.asset_materialization if event else None
    if materialization is not None and "adapter_path" in materialization.metadata:
        return str(materialization.metadata["adapter_path"].value)
    try:
        return json.loads(store.read_bytes(latest_pointer(model_id)))["path"]
    except FileNotFoundError:
        raise Failure(f"no adapter for model {model_id}: materialise lora_adapter first") from None


def knn_predictions(
    store,
    model_id: str,
    test_ids: list[str],
    train_ids: list[str],
    k: int,
    threshold: float,
) -> tuple[list[tuple], list[tuple], np.ndarray, dict[str, Any]]:
    """(called, raw, confidence [N, 7], info) from the vector index with base embeddings.

    Query vectors are the test sequences' own stored embeddings; their neighbours are searched
    in each reference partition's index table and restricted to training ids, so no test
    sequence (and no unseen genus) can vote.
    """
    from bioscan_assets.core.classify import knn_baseline

    try:
        return knn_baseline.predict(store, model_id, test_ids, train_ids, k=k, threshold=threshold)
    except knn_baseline.IndexNotReady as error:
        raise Failure(str(error)) from None


@asset(
    key=REPORT_KEY,
    group_name="evaluate",
    deps=[ADAPTER_KEY, INDEX_KEY],
    kinds={"jax", "html"},
    owners=OWNERS,
    code_version="eval-1",
    description="Held-out evaluation of the LoRA classifier, kNN over the vector index (base "
    "embeddings) and an RDP-style 8-mer naive Bayes: per-rank accuracy, macro-F1 and coverage, "
    "seen vs unseen labels; HTML report, Markdown summary and JSON beside the run manifest.",
)
def evaluation_report(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    storage: StorageResource,
    accelerator: AcceleratorResource,
    tracking: WandbResource,
) -> MaterializeResult:
    from bioscan_assets.core.classify.kmer_nb import KmerNaiveBayes
    from bioscan_assets.core.evaluation.metrics import method_report
    from bioscan_assets.core.evaluation.report import markdown_summary, write_report
    from bioscan_assets.core.governance import provenance as prov
    from bioscan_assets.core.taxonomy import RANKS
    from bioscan_assets.core.tuning.training import (
        TaxonomyPredictor,
        load_adapter,
        load_reference_data,
        read_split,
    )

    started_at = time.time()
    store = storage.output_store()
    executor = accelerator.executor()
    model, acc = executor.model, executor.accelerator
    folder = _adapter_folder(context, store, model.model_id)
    adapter, doc = load_adapter(store, folder)
    if adapter.base_weights_hash != model.weights_hash:
        raise Failure(
            f"adapter {adapter.version} was trained on {adapter.base_model_id} weights "
            f"{adapter.base_weights_hash[:12]}, the accelerator resource loads {model.model_id} "
            f"weights {model.weights_hash[:12]}: materialise lora_adapter with this model"
        )
    split = read_split(store, folder)
    partitions = sorted({sid.rsplit("/", 1)[0] for sid in split.train + split.test})
    data = load_reference_data(store, partitions)
    train_seqs, train_lineages = data.subset(split.train)
    test_ids = split.test
    test_seqs, truth = data.subset(test_ids)
    train_sets = [{lin[r] for lin in train_lineages if lin[r] is not None} for r in range(7)]
    timings: dict[str, float] = {}

    t = time.perf_counter()
    predictor = TaxonomyPredictor(model, adapter, acc, threshold=config.lora_threshold)
    lora_pred = predictor.predict(test_seqs)
    timings["lora_s"] = time.perf_counter() - t

    t = time.perf_counter()
    knn_called, knn_raw, knn_conf, knn_info = knn_predictions(
        store, model.model_id, test_ids, split.train, config.knn_k, config.knn_threshold
    )
    timings["knn_s"] = time.perf_counter() - t

    t = time.perf_counter()
    nb = KmerNaiveBayes(bootstrap=config.nb_bootstrap, threshold=config.nb_threshold, seed=0)
    nb_pred = nb.fit(train_seqs, train_lineages).predict(test_seqs)
    timings["kmer_nb_s"] = time.perf_counter() - t

    methods = {
        "lora": method_report(
            "LoRA classifier",
            f"adapter {adapter.version}: rank {adapter.config.lora_rank} on "
            f"{'/'.join(adapter.config.lora_targets)}, {adapter.config.steps} steps, "
            f"windows of {adapter.config.crop_tokens} tokens; abstains below p="
            f"{config.lora_threshold}",
            truth,
            lora_pred.labels,
            lora_pred.raw_labels,
            lora_pred.confidence,
            train_sets,
        ),
        "knn": method_report(
            "kNN (base embeddings)",
            f"{config.knn_k} nearest training sequences in the vector index (cosine), "
            f"similarity-weighted vote per rank; abstains below a vote share of "
            f"{config.knn_threshold}",
            truth,
            knn_called,
            knn_raw,
            knn_conf,
            train_sets,
        ),
        "kmer_nb": method_report(
            "8-mer naive Bayes",
            f"RDP-style (Wang et al. 2007): 8-mer word priors, {config.nb_bootstrap} bootstrap "
            f"trials of 1/8 of the words; abstains below {config.nb_threshold}",
            truth,
            nb_pred.labels,
            nb_pred.raw_labels,
            nb_pred.confidence,
            train_sets,
        ),
    }
    adapter_extra = doc.get("extra") or {}
    notes = [
        "LoRA sees the sequence in windows of "
        f"{adapter.config.crop_tokens} tokens (probabilities averaged over windows); kNN uses "
        "the stored whole-sequence base embeddings; naive Bayes every 8-mer.",
        "Timing (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()),
    ]
    evaluation = {
        "title": f"{model.model_id} / adapter {adapter.version}",
        "model": model.provenance(),
        "adapter": {
            "version": adapter.version,
            "path": folder,
            "steps": adapter.config.steps,
            "lora": doc.get("lora"),
        },
        "split": split.counts() | {"digest": split.digest(), "seed": split.seed},
        "train": {"n": len(split.train)},
        "test": {
            "n": len(test_ids),
            "seen_genus": len(split.test_seen),
            "unseen_genus": len(split.test_unseen),
            "unseen_genera": len(split.unseen_genera),
        },
        "training": {
            "steps": adapter.config.steps,
            "train_seconds": adapter_extra.get("train_seconds"),
            "sequences_per_s": adapter_extra.get("sequences_per_s"),
            "trainable_fraction": adapter_extra.get("trainable_fraction", 0.0),
        },
        "knn": knn_info,
        "methods": methods,
        "timings": timings,
        "notes": notes,
    }
    report_dir = f"{prov.manifest_dir('evaluation_report')}/{context.run.run_id}"
    paths = write_report(store, report_dir, evaluation)
    summary = markdown_summary(evaluation)

    headline = {}
    for name, method in methods.items():
        for rank in RANKS:
            seen = method["metrics"][rank]["seen"]
            unseen = method["metrics"][rank]["unseen"]
            headline[f"{name}/{rank}_accuracy_seen"] = seen["accuracy"]
            headline[f"{name}/{rank}_coverage_unseen"] = unseen["coverage"]
            headline[f"{name}/{rank}_macro_f1_seen"] = seen["macro_f1"]
    with tracking.start(
        f"eval-{model.model_id}-{context.run.run_id[:8]}",
        "evaluate",
        {"adapter_version": adapter.version, "dagster_run_id": context.run.run_id},
        tags=["evaluation", model.model_id],
    ) as run:
        run.log({f"eval/{k}": v for k, v in headline.items() if v is not None})
        run.summary({f"eval/{k}": v for k, v in headline.items() if v is not None})
        wandb_dir = run.dir

    provenance = record_provenance(
        context,
        store,
        inputs={"lora_adapter": adapter.version}
        | {f"sequence_shards/{k}": v["shard_version"] for k, v in data.partitions.items()},
        config=config.model_dump(),
        rows={"train": len(split.train), "test": len(test_ids)},
        model=model.provenance(),
        device=acc.describe(),
        started_at=started_at,
        outputs={k: store.url(v) for k, v in paths.items()},
    )
    genus = headline["lora/genus_accuracy_seen"]
    return MaterializeResult(
        metadata={
            "summary": MetadataValue.md(summary),
            "report": MetadataValue.path(store.url(paths["html"])),
            "metrics_json": MetadataValue.path(store.url(paths["metrics"])),
            "adapter_version": adapter.version,
            "pretrained": model.pretrained,
            "test_sequences": len(test_ids),
            "test_seen_genus": len(split.test_seen),
            "test_unseen_genus": len(split.test_unseen),
            GENUS_METRIC: float(genus) if genus is not None else float("nan"),
            "knn/genus_accuracy_seen": _num(headline["knn/genus_accuracy_seen"]),
            "kmer_nb/genus_accuracy_seen": _num(headline["kmer_nb/genus_accuracy_seen"]),
            "max_genus_drop_points": config.max_genus_drop_points,
            "wandb_dir": wandb_dir or "disabled",
            **{k: round(v, 2) for k, v in timings.items()},
            **provenance,
        }
    )


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


@asset_check(
    asset=REPORT_KEY,
    blocking=True,
    description="Fails when the LoRA classifier's genus accuracy (seen genera) drops more than "
    "`max_genus_drop_points` (evaluation_report config) below the previous materialisation's.",
)
def no_regression(context: AssetCheckExecutionContext) -> AssetCheckResult:
    records = context.instance.fetch_materializations(REPORT_KEY, limit=20).records
    values = []
    for record in records:
        materialization = record.asset_materialization
        if materialization is None or GENUS_METRIC not in materialization.metadata:
            continue
        values.append((record.run_id, materialization.metadata))
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


tune_assets = [lora_adapter, evaluation_report]
tune_checks = [no_regression]
tune_and_evaluate = define_asset_job(
    "tune_and_evaluate",
    selection=[lora_adapter, evaluation_report],
    description="Tune the LoRA adapter on the reference samples, then evaluate it against the "
    "kNN and naive Bayes baselines.",
)
