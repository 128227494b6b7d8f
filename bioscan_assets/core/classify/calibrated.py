"""The naive Bayes call with calibrated abstention: bootstrap cut-off, then the reference gate.

A rank is called when the bootstrap confidence clears the RDP cut-off (0.8) *and* a reference
of the called taxon is as close to the query as the gate's calibration asks; the first rank
that fails blanks every rank below it. The confidence reported per rank stays the bootstrap
agreement (what QIIME 2 users read in `Confidence`); the gate's similarity is kept beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bioscan_assets.core.classify.kmer_nb import KmerNaiveBayes
from bioscan_assets.core.classify.reference_gate import (
    DEFAULT_UNSEEN_RATE,
    Lineage,
    ReferenceGate,
)

METHOD = "kmer_nb"


@dataclass
class CalibratedPrediction:
    labels: list[tuple[str | None, ...]]  # the calls (None = abstained)
    confidence: np.ndarray  # [Q, R] bootstrap agreement
    similarity: np.ndarray  # [Q, R] containment in the nearest reference of the called taxon
    bootstrap_labels: list[tuple[str | None, ...]]  # the plain 0.8 cut-off, for comparison
    raw_labels: list[tuple[str | None, ...]]
    reversed: np.ndarray  # [Q] bool: scored on the reverse strand


class CalibratedNB:
    """`KmerNaiveBayes` plus a `ReferenceGate` fitted on the same references."""

    method = METHOD

    def __init__(
        self,
        threshold: float = 0.8,
        bootstrap: int = 100,
        unseen_rate: float = DEFAULT_UNSEEN_RATE,
        seed: int = 0,
    ):
        self.nb = KmerNaiveBayes(bootstrap=bootstrap, threshold=threshold, seed=seed)
        self.gate = ReferenceGate(k=self.nb.k, unseen_rate=unseen_rate, seed=seed)

    def fit(self, sequences: Sequence[str], lineages: Sequence[Lineage]) -> CalibratedNB:
        self.nb.fit(sequences, lineages)
        self.gate.fit(sequences, lineages)
        self.references = len(sequences)
        return self

    def predict(self, sequences: Sequence[str]) -> CalibratedPrediction:
        base = self.nb.predict(sequences)
        labels = []
        similarity = np.zeros_like(base.confidence)
        cutoffs = np.asarray(self.gate.calibration.cutoffs)
        for q, (called, raw) in enumerate(zip(base.labels, base.raw_labels, strict=True)):
            similarity[q] = self.gate.nearest_in_call(base.words[q], raw)
            ok = np.logical_and.accumulate(
                [label is not None for label in called] & (similarity[q] >= cutoffs)
            )
            labels.append(
                tuple(label if keep else None for label, keep in zip(called, ok, strict=True))
            )
        return CalibratedPrediction(
            labels, base.confidence, similarity, base.labels, base.raw_labels, base.reversed
        )

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "references": self.references,
            "bootstrap": self.nb.bootstrap,
            "threshold": self.nb.threshold,
            "gate": self.gate.calibration.as_dict(),
        }
