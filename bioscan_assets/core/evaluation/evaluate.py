"""The held-out evaluation behind `evaluation_report`: the LoRA classifier, kNN over the vector
index and 8-mer naive Bayes on the split recorded beside the adapter, written as a report.

Every method trains (or votes) on the split's training ids only, so no test sequence and no
unseen genus can leak into a prediction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bioscan_assets.core.classify import knn_baseline
from bioscan_assets.core.classify.calibrated import CalibratedNB
from bioscan_assets.core.classify.reference_gate import DEFAULT_UNSEEN_RATE
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.evaluation.metrics import method_report
from bioscan_assets.core.evaluation.report import markdown_summary, write_report
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.adapter import Adapter, load_adapter
from bioscan_assets.core.tuning.labels import Lineage
from bioscan_assets.core.tuning.predictor import TaxonomyPredictor
from bioscan_assets.core.tuning.reference_data import load_reference_data
from bioscan_assets.core.tuning.split import Split, read_split


@dataclass(frozen=True)
class EvaluationSettings:
    """Abstention thresholds and baseline knobs (the asset's config defaults come from here)."""

    lora_threshold: float = 0.5
    knn_k: int = 5
    knn_threshold: float = 0.5
    nb_threshold: float = 0.8  # RDP's bootstrap cut-off
    nb_bootstrap: int = 100
    # the calls' reference gate, so the method evaluated is the method that calls
    nb_unseen_rate: float = DEFAULT_UNSEEN_RATE


class AdapterMismatch(ValueError):
    """The adapter was trained on other base weights than the model at hand."""


@dataclass
class EvaluationResult:
    adapter_version: str
    split: Split
    evaluation: dict[str, Any]  # the document written as metrics.json
    summary: str  # Markdown, as written to summary.md
    paths: dict[str, str]  # "metrics" | "summary" | "html" -> store-relative path
    headline: dict[str, float | None]  # "<method>/<rank>_accuracy_seen" and friends
    timings: dict[str, float]
    shard_versions: dict[str, str]  # reference partition -> shard version read


def headline_metrics(methods: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Flat per-method, per-rank numbers for tracking and asset metadata."""
    headline = {}
    for name, method in methods.items():
        for rank in RANKS:
            seen = method["metrics"][rank]["seen"]
            unseen = method["metrics"][rank]["unseen"]
            headline[f"{name}/{rank}_accuracy_seen"] = seen["accuracy"]
            headline[f"{name}/{rank}_coverage_unseen"] = unseen["coverage"]
            headline[f"{name}/{rank}_macro_f1_seen"] = seen["macro_f1"]
    return headline


def _methods(
    store: Store,
    model: LoadedModel,
    accelerator: Accelerator,
    adapter: Adapter,
    split: Split,
    train: tuple[list[str], list[Lineage]],
    test: tuple[list[str], list[Lineage]],
    settings: EvaluationSettings,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, float]]:
    """(method reports, kNN info, timings): each method predicts the test sequences."""
    train_seqs, train_lineages = train
    test_seqs, truth = test
    train_sets = [{lin[r] for lin in train_lineages if lin[r] is not None} for r in range(7)]
    timings: dict[str, float] = {}

    t = time.perf_counter()
    predictor = TaxonomyPredictor(model, adapter, accelerator, threshold=settings.lora_threshold)
    lora_pred = predictor.predict(test_seqs)
    timings["lora_s"] = time.perf_counter() - t

    t = time.perf_counter()
    knn_called, knn_raw, knn_conf, knn_info = knn_baseline.predict(
        store,
        model.model_id,
        split.test,
        split.train,
        k=settings.knn_k,
        threshold=settings.knn_threshold,
    )
    timings["knn_s"] = time.perf_counter() - t

    t = time.perf_counter()
    nb = CalibratedNB(
        threshold=settings.nb_threshold,
        bootstrap=settings.nb_bootstrap,
        unseen_rate=settings.nb_unseen_rate,
    )
    nb_pred = nb.fit(train_seqs, train_lineages).predict(test_seqs)
    timings["kmer_nb_s"] = time.perf_counter() - t

    methods = {
        "lora": method_report(
            "LoRA classifier",
            f"adapter {adapter.version}: rank {adapter.config.lora_rank} on "
            f"{'/'.join(adapter.config.lora_targets)}, {adapter.config.steps} steps, "
            f"windows of {adapter.config.crop_tokens} tokens; abstains below p="
            f"{settings.lora_threshold}",
            truth,
            lora_pred.labels,
            lora_pred.raw_labels,
            lora_pred.confidence,
            train_sets,
        ),
        "knn": method_report(
            "kNN (base embeddings)",
            f"{settings.knn_k} nearest training sequences in the vector index (cosine), "
            f"similarity-weighted vote per rank; abstains below a vote share of "
            f"{settings.knn_threshold}",
            truth,
            knn_called,
            knn_raw,
            knn_conf,
            train_sets,
        ),
        "kmer_nb": method_report(
            "8-mer naive Bayes",
            f"RDP-style (Wang et al. 2007): 8-mer word priors, {settings.nb_bootstrap} bootstrap "
            f"trials of 1/8 of the words; abstains below {settings.nb_threshold}, and at genus "
            f"and species where no reference of the called taxon is as close as the "
            f"reference gate asks (unseen_rate {settings.nb_unseen_rate})",
            truth,
            nb_pred.labels,
            nb_pred.raw_labels,
            nb_pred.confidence,
            train_sets,
        ),
    }
    return methods, knn_info, timings


def evaluate(
    store: Store,
    model: LoadedModel,
    accelerator: Accelerator,
    adapter_folder: str,
    report_dir: str,
    settings: EvaluationSettings | None = None,
) -> EvaluationResult:
    """Evaluate the adapter in `adapter_folder` and write the report into `report_dir`.

    Raises AdapterMismatch when `model` is not the adapter's base, and
    `knn_baseline.IndexNotReady` when a reference partition is not in the vector index.
    """
    settings = settings or EvaluationSettings()
    adapter, doc = load_adapter(store, adapter_folder)
    if adapter.base_weights_hash != model.weights_hash:
        raise AdapterMismatch(
            f"adapter {adapter.version} was trained on {adapter.base_model_id} weights "
            f"{adapter.base_weights_hash[:12]}, the accelerator resource loads {model.model_id} "
            f"weights {model.weights_hash[:12]}: materialise lora_adapter with this model"
        )
    split = read_split(store, adapter_folder)
    data = load_reference_data(store, _partitions(split.train + split.test))
    methods, knn_info, timings = _methods(
        store,
        model,
        accelerator,
        adapter,
        split,
        data.subset(split.train),
        data.subset(split.test),
        settings,
    )
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
            "path": adapter_folder,
            "steps": adapter.config.steps,
            "lora": doc.get("lora"),
        },
        "split": split.counts() | {"digest": split.digest(), "seed": split.seed},
        "train": {"n": len(split.train)},
        "test": {
            "n": len(split.test),
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
    paths = write_report(store, report_dir, evaluation)
    return EvaluationResult(
        adapter_version=adapter.version,
        split=split,
        evaluation=evaluation,
        summary=markdown_summary(evaluation),
        paths=paths,
        headline=headline_metrics(methods),
        timings=timings,
        shard_versions=data.shard_versions(),
    )


def _partitions(ids: Sequence[str]) -> list[str]:
    """The partition keys of `<tenant>/<sample>/<sequence_id>` ids."""
    return sorted({sid.rsplit("/", 1)[0] for sid in ids})
