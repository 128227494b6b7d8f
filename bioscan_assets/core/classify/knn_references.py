"""kNN calls against labelled reference vectors held in memory: exact cosine, both strands.

Only labelled references are ever searched (the caller loads them), so a read can never be
called by its unlabelled neighbours. Two properties the calls rely on:
- batch independence: similarities are computed in chunks padded to a fixed number of rows,
  so the BLAS kernel sums each query's dot products the same way whatever its batch-mates;
- orientation: both strands are voted and the strand whose k nearest references are closer
  (summed similarity: the vote's total weight) is kept, ties going to the lexicographically
  smaller strand text, so a read and its reverse complement always pick the same strand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bioscan_assets.core.classify.knn_vote import AssignConfig, assign

METHOD = "knn"
Lineage = tuple[str | None, ...]


@dataclass
class KnnPrediction:
    labels: list[Lineage]  # after abstention
    confidence: np.ndarray  # [Q, R] vote share of the best lineage at each rank
    reversed: np.ndarray  # [Q] bool: the reverse strand was kept
    nearest: np.ndarray  # [Q] cosine similarity of the nearest reference (kept strand)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


class ReferenceKNN:
    """Fitted on [N, D] reference vectors and their lineages; predicts from query vectors."""

    method = METHOD

    def __init__(self, k: int = 5, threshold: float = 0.5, chunk: int = 64):
        if k < 1 or chunk < 1:
            raise ValueError("k and chunk must be >= 1")
        self.k, self.chunk = k, chunk
        self.strict = AssignConfig(threshold=threshold, k=k)
        self.loose = AssignConfig(threshold=0.0, k=k)

    def fit(self, vectors: np.ndarray, lineages: Sequence[Lineage]) -> ReferenceKNN:
        if len(vectors) != len(lineages) or not len(lineages):
            raise ValueError(
                f"need one lineage per reference vector, and at least one "
                f"({len(vectors)} vectors, {len(lineages)} lineages)"
            )
        self._refs = _unit(vectors)
        self.lineages = [tuple(lin) for lin in lineages]
        return self

    @property
    def dim(self) -> int:
        return int(self._refs.shape[1])

    def neighbours(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """([Q, k] reference rows, [Q, k] cosine similarity), nearest first, ties by row."""
        queries = _unit(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query vectors must be [Q, {self.dim}], got {queries.shape}")
        k = min(self.k, self._refs.shape[0])
        rows = np.zeros((len(queries), k), np.int64)
        sims = np.zeros((len(queries), k), np.float32)
        block = np.zeros((self.chunk, self.dim), np.float32)
        for start in range(0, len(queries), self.chunk):
            part = queries[start : start + self.chunk]
            block[:] = 0.0
            block[: len(part)] = part
            scores = (block @ self._refs.T)[: len(part)]
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            for q in range(len(part)):
                found = top[q]
                order = np.lexsort((found, -scores[q, found]))
                rows[start + q] = found[order]
                sims[start + q] = scores[q, found[order]]
        return rows, sims

    def _vote(self, rows: np.ndarray, sims: np.ndarray) -> tuple[Lineage, np.ndarray]:
        pairs = [(self.lineages[r], 1.0 - float(s)) for r, s in zip(rows, sims, strict=True)]
        called = assign(pairs, self.strict)
        best = assign(pairs, self.loose)
        return tuple(c.label for c in called.calls), np.array([c.confidence for c in best.calls])

    def predict(
        self,
        forward: np.ndarray,
        reverse: np.ndarray,
        forward_text: Sequence[str],
        reverse_text: Sequence[str],
    ) -> KnnPrediction:
        """Vote both strands of each query; keep the strand with the nearer references."""
        f_rows, f_sims = self.neighbours(forward)
        r_rows, r_sims = self.neighbours(reverse)
        labels: list[Lineage] = []
        confidence = np.zeros((len(f_rows), len(self.lineages[0])))
        flipped = np.zeros(len(f_rows), bool)
        nearest = np.zeros(len(f_rows), np.float32)
        for q in range(len(f_rows)):
            f_weight = float(np.maximum(f_sims[q], 0.0).sum())
            r_weight = float(np.maximum(r_sims[q], 0.0).sum())
            use_reverse = (r_weight, forward_text[q]) > (f_weight, reverse_text[q])
            rows, sims = (r_rows[q], r_sims[q]) if use_reverse else (f_rows[q], f_sims[q])
            call, conf = self._vote(rows, sims)
            labels.append(call)
            confidence[q] = conf
            flipped[q] = use_reverse
            nearest[q] = sims[0] if len(sims) else 0.0
        return KnnPrediction(labels, confidence, flipped, nearest)
