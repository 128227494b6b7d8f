"""The model-based classifiers of the calls: kNN over the index's references, and the LoRA adapter.

Both meet the `calls.Classifier` protocol and, like the naive Bayes, classify both strands of
every read and keep the more confident one (ties to the lexicographically smaller strand), so
a read and its reverse complement get the same call; both compute in fixed-shape batches, so
a sequence gets the same call and confidence whatever batch it arrives in.

Tenant isolation: the kNN votes only with labelled rows of the partitions it is given (the
caller passes the tenant's usable references); a LoRA adapter is refused unless every
reference partition it learnt from is one the tenant may use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bioscan_assets.core.calls.reference_vectors import ReferenceVectors, load_reference_vectors
from bioscan_assets.core.calls.strand_embedding import StrandEmbedder
from bioscan_assets.core.classify.kmer_nb import reverse_complement
from bioscan_assets.core.classify.knn_references import ReferenceKNN
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.storage import Store
from bioscan_assets.core.tuning.adapter import load_adapter
from bioscan_assets.core.tuning.predictor import TaxonomyPredictor


@dataclass
class StrandPrediction:
    labels: list[tuple[str | None, ...]]
    confidence: np.ndarray  # [Q, R]
    reversed: np.ndarray  # [Q] bool


def _strands(sequences: Sequence[str]) -> tuple[list[str], list[str]]:
    forward = [s.upper() for s in sequences]
    return forward, [reverse_complement(s) for s in forward]


class KnnCalls:
    """Embed both strands, vote with the k nearest labelled references (`ReferenceKNN`)."""

    method = "knn"

    def __init__(self, knn: ReferenceKNN, embedder: StrandEmbedder, description: dict[str, Any]):
        self.knn, self.embedder, self.description = knn, embedder, description

    def predict(self, sequences: Sequence[str]) -> StrandPrediction:
        forward, reverse = _strands(sequences)
        vectors = self.embedder.embed(forward + reverse)
        n = len(forward)
        found = self.knn.predict(vectors[:n], vectors[n:], forward, reverse)
        return StrandPrediction(found.labels, found.confidence, found.reversed)

    def describe(self) -> dict[str, Any]:
        return self.description


class LoraCalls:
    """The adapter's per-rank probabilities on both strands; the strand with the higher summed
    probability of its calls is kept."""

    method = "lora"

    def __init__(self, predictor: TaxonomyPredictor, description: dict[str, Any]):
        self.predictor, self.description = predictor, description

    def predict(self, sequences: Sequence[str]) -> StrandPrediction:
        forward, reverse = _strands(sequences)
        both = self.predictor.predict(forward + reverse)
        n = len(forward)
        labels, flipped = [], np.zeros(n, bool)
        confidence = np.zeros((n, both.confidence.shape[1]), np.float32)
        for q in range(n):
            f_score = float(both.confidence[q].sum())
            r_score = float(both.confidence[n + q].sum())
            use_reverse = (r_score, forward[q]) > (f_score, reverse[q])
            pick = n + q if use_reverse else q
            labels.append(both.labels[pick])
            confidence[q] = both.confidence[pick]
            flipped[q] = use_reverse
        return StrandPrediction(labels, confidence, flipped)

    def describe(self) -> dict[str, Any]:
        return self.description


def fit_knn_calls(
    store: Store,
    keys: Sequence[str],
    model: LoadedModel,
    accelerator: Accelerator,
    *,
    k: int = 5,
    threshold: float = 0.5,
) -> tuple[KnnCalls | None, ReferenceVectors]:
    """kNN over the labelled index rows of `keys` (None when they hold no labelled row)."""
    refs = load_reference_vectors(store, model.model_id, keys, model.weights_hash)
    if not len(refs):
        return None, refs
    knn = ReferenceKNN(k=k, threshold=threshold).fit(refs.vectors, refs.lineages)
    description = {
        "method": KnnCalls.method,
        "model_id": model.model_id,
        "weights_hash": model.weights_hash,
        "k": k,
        "threshold": threshold,
        "search": "exact cosine over labelled reference rows of the vector index, both strands",
        "reference_vectors": len(refs),
        "reference_vectors_sha256": refs.digest(),
    }
    return KnnCalls(knn, StrandEmbedder(model, accelerator), description), refs


class AdapterNotUsable(ValueError):
    """The adapter learnt from references the tenant may not use, or from none recorded."""


def fit_lora_calls(
    store: Store,
    adapter_folder: str,
    usable_keys: Sequence[str],
    model: LoadedModel,
    accelerator: Accelerator,
    *,
    tenant: str,
    threshold: float = 0.5,
) -> tuple[LoraCalls, list[str]]:
    """The adapter in `adapter_folder`, refused unless it learnt only from `usable_keys`."""
    adapter, doc = load_adapter(store, adapter_folder)
    learnt = sorted((doc.get("extra") or {}).get("reference_partitions") or [])
    foreign = sorted(set(learnt) - set(usable_keys))
    if not learnt or foreign:
        why = f"it learnt from {', '.join(foreign)}" if foreign else "its references are unknown"
        raise AdapterNotUsable(
            f"adapter {adapter.version} cannot call tenant {tenant}'s samples: {why}; "
            f"materialise lora_adapter and evaluation_report with config tenant={tenant}"
        )
    predictor = TaxonomyPredictor(model, adapter, accelerator, threshold=threshold)
    description = {
        "method": LoraCalls.method,
        "adapter_version": adapter.version,
        "adapter_path": adapter_folder,
        "base_model_id": adapter.base_model_id,
        "base_weights_hash": adapter.base_weights_hash,
        "threshold": threshold,
        "strands": "both; the one with the higher summed probability is kept",
    }
    return LoraCalls(predictor, description), learnt
