"""The two spaces novelty is measured in: the model's embeddings, or canonical k-mer sets.

Both hold the references first and the candidate sequences after them (one index over both),
answer distances between any two groups of points, and calibrate the novelty threshold on the
references alone: how far each reference (or, for k-mers, each read-length window of one)
lies from its nearest *other* reference. A candidate farther than that from every reference
is one the references do not explain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from bioscan_assets.core.novelty.kmers import (
    WORD,
    canonical_words,
    containment,
    windows,
    word_matrix,
)

EMBEDDING = "embedding"
KMER = "kmer"


MIN_WORDS = 16  # a read with fewer canonical k-mers (under ~23 clean bases) is not judged


class Space(Protocol):
    kind: str
    n_refs: int
    n_queries: int
    measurable: np.ndarray  # [n_queries] bool: enough signal to be judged at all

    def dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """[len(a), len(b)] distances in [0, 1] between points (references first, then queries)."""
        ...

    def calibration(self, sample: int, seed: int) -> np.ndarray:
        """Distances from references (or parts of them) to their nearest other reference."""
        ...

    def describe(self) -> dict[str, Any]: ...


def nearest_reference(space: Space, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest reference, its distance) for every query."""
    refs = np.arange(space.n_refs)
    index = np.zeros(space.n_queries, dtype=np.int64)
    distance = np.ones(space.n_queries, dtype=np.float32)
    for start in range(0, space.n_queries, chunk):
        rows = np.arange(start, min(start + chunk, space.n_queries)) + space.n_refs
        d = space.dist(rows, refs)
        index[rows - space.n_refs] = d.argmin(axis=1)
        distance[rows - space.n_refs] = d.min(axis=1)
    return index, distance


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, n])
    return np.sort(rng.choice(n, size=min(n, size), replace=False))


class KmerSpace:
    """Canonical k-mer sets; distance = 1 - containment of the smaller set in the larger.

    References are full-length and candidates are reads, so the threshold is calibrated on
    read-length windows of each reference against every other reference: what a read of a
    reference's own taxon looks like when that very sequence is missing.
    """

    kind = KMER

    def __init__(
        self,
        references: Sequence[str],
        queries: Sequence[str],
        *,
        k: int = WORD,
        window: int | None = None,
    ):
        self.k = k
        self._refs = list(references)
        words = [canonical_words(s, k) for s in [*self._refs, *queries]]
        self._matrix = word_matrix(words, k)
        self.n_refs, self.n_queries = len(self._refs), len(queries)
        self.measurable = np.array([w.size >= MIN_WORDS for w in words[self.n_refs :]], dtype=bool)
        lengths = [len(q) for q in queries]
        self.window = int(window or (np.median(lengths) if lengths else 150))

    def dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        shared = containment(self._matrix[a], self._matrix[b], symmetric=True)
        return 1.0 - shared

    def calibration(self, sample: int, seed: int) -> np.ndarray:
        pieces, owner = [], []
        for i, sequence in enumerate(self._refs):
            for piece in windows(sequence, self.window):
                pieces.append(canonical_words(piece, self.k))
                owner.append(i)
        if self.n_refs < 2 or not pieces:
            return np.zeros(0, dtype=np.float32)
        picked = _sample(len(pieces), sample, seed)
        queries = word_matrix([pieces[i] for i in picked], self.k)
        shared = containment(queries, self._matrix[: self.n_refs], symmetric=True)
        shared[np.arange(picked.size), np.asarray(owner)[picked]] = -1.0  # never its own source
        return (1.0 - shared.max(axis=1)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "representation": KMER,
            "k": self.k,
            "distance": "1 - shared canonical k-mers / k-mers of the smaller sequence",
            "calibration_window_bp": self.window,
        }


class EmbeddingSpace:
    """Unit-normalised embedding vectors; distance = cosine distance (clipped to [0, 1])."""

    kind = EMBEDDING

    def __init__(self, references: np.ndarray, queries: np.ndarray, *, model_id: str):
        vectors = np.concatenate([references, queries]).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self._unit = vectors / np.maximum(norms, 1e-12)
        self.n_refs, self.n_queries = len(references), len(queries)
        self.measurable = np.ones(len(queries), dtype=bool)
        self.model_id = model_id

    def dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - self._unit[a] @ self._unit[b].T, 0.0, 1.0)

    def calibration(self, sample: int, seed: int) -> np.ndarray:
        if self.n_refs < 2:
            return np.zeros(0, dtype=np.float32)
        picked = _sample(self.n_refs, sample, seed)
        d = self.dist(picked, np.arange(self.n_refs))
        d[np.arange(picked.size), picked] = np.inf  # never its own nearest
        return d.min(axis=1).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "representation": EMBEDDING,
            "model_id": self.model_id,
            "distance": "cosine distance between mean-pooled embeddings",
        }
