"""Abstention by distance to the nearest reference of the called taxon, calibrated on the references.

The naive Bayes' bootstrap confidence says how stable a call is, not whether the query belongs
to the called taxon: a read of a genus missing from the references still lands, stably, on its
nearest genus (the RDP classifier gives such reads a genus about 40% of the time). The gate
asks a second question per rank: is some reference *of the called taxon* as close to the query
as members of one taxon are to each other? Closeness is k-mer containment: the share of the
query's words found in a reference (robust to a short read against a full-length reference).

The per-rank cut-offs are calibrated leave-one-out on the references themselves, no refit
needed: for a sample of references, at each rank, the nearest reference of any *other* taxon
is what that reference would look like had its own taxon been missing ("unseen"), and the
nearest *other* member of its own taxon is the "seen" case. A rank's cut-off is the containment
that only `unseen_rate` of the unseen cases reach. With few references (a small tenant), a
rank without enough cases keeps `floor` as its cut-off.

Only genus and species are gated by default (`first_rank`): leave-one-out keeps the query's
genus in the references, so at higher ranks the "seen" cases look closer than a read of a new
genus in a known family really is, and a cut-off there would cost accuracy on known families.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bioscan_assets.core.classify.kmer_nb import WORD, kmer_words

Lineage = Sequence[str | None]

# Measured in tests/benchmarks/bench_abstention.py and test_calls_quality.py (numbers in the
# README): 0.4 keeps the unseen-genus call rate under 20% on the gold 16S set and on the
# 72 bundled references alike; 0.5 does on the gold set only.
DEFAULT_UNSEEN_RATE = 0.4


@dataclass(frozen=True)
class GateCalibration:
    """Per-rank cut-offs and what the calibration saw (for metadata and reports)."""

    cutoffs: tuple[float, ...]
    unseen_rate: float
    cases: tuple[int, ...]  # unseen cases per rank
    seen_pass: tuple[float | None, ...]  # share of seen cases at or above the cut-off

    def as_dict(self) -> dict:
        return {
            "cutoffs": [round(c, 4) for c in self.cutoffs],
            "unseen_rate": self.unseen_rate,
            "cases": list(self.cases),
            "seen_pass": [None if s is None else round(s, 4) for s in self.seen_pass],
        }


class ReferenceGate:
    """Containment of queries in the references, and the calibrated per-rank cut-offs."""

    def __init__(
        self,
        k: int = WORD,
        unseen_rate: float = DEFAULT_UNSEEN_RATE,
        sample: int = 1500,
        min_cases: int = 20,
        floor: float = 0.0,
        first_rank: int = 5,
        seed: int = 0,
    ):
        if not 0.0 < unseen_rate <= 1.0:
            raise ValueError("unseen_rate must be within (0, 1]")
        self.k, self.unseen_rate, self.sample = k, unseen_rate, sample
        self.min_cases, self.floor, self.seed = min_cases, floor, seed
        self.first_rank = first_rank

    def fit(self, sequences: Sequence[str], lineages: Sequence[Lineage]) -> ReferenceGate:
        words = [kmer_words(s, self.k) for s in sequences]
        rows = np.repeat(np.arange(len(words)), [w.size for w in words])
        matrix = sp.csr_matrix(
            (np.ones(rows.size, np.float32), (rows, np.concatenate(words))),
            shape=(len(words), 4**self.k),
        )
        self._rows = matrix
        self._cols = matrix.tocsc()
        self._sizes = np.array([w.size for w in words], dtype=np.float64)
        self.ranks = len(lineages[0])
        self._group_ids: list[dict[tuple, int]] = []
        groups = np.full((self.ranks, len(lineages)), -1, dtype=np.int64)
        for r in range(self.ranks):
            ids: dict[tuple, int] = {}
            for i, lineage in enumerate(lineages):
                if lineage[r] is not None:
                    groups[r, i] = ids.setdefault(tuple(lineage[: r + 1]), len(ids))
            self._group_ids.append(ids)
        self._groups = groups
        self.calibration = self._calibrate()
        return self

    def containment(self, words: np.ndarray) -> np.ndarray:
        """[references] share of the query's words found in each reference."""
        if words.size == 0:
            return np.zeros(self._cols.shape[0])
        hits = np.asarray(self._cols[:, words].sum(axis=1)).ravel()
        return hits / words.size

    def nearest_in_call(self, words: np.ndarray, call: Lineage) -> np.ndarray:
        """[ranks] containment of the nearest reference of the called taxon at each rank."""
        contained = self.containment(words)
        out = np.zeros(self.ranks)
        for r in range(self.ranks):
            group = self._group_ids[r].get(tuple(call[: r + 1])) if call[r] is not None else None
            if group is not None:
                out[r] = contained[self._groups[r] == group].max()
        return out

    def passes(self, words: np.ndarray, call: Lineage) -> np.ndarray:
        """[ranks] bool: the nearest reference of the called taxon clears the cut-off."""
        return self.nearest_in_call(words, call) >= np.asarray(self.calibration.cutoffs)

    def _calibrate(self) -> GateCalibration:
        n = self._rows.shape[0]
        rng = np.random.default_rng([self.seed, n])
        picked = np.sort(rng.choice(n, size=min(n, self.sample), replace=False))
        shared = (self._rows[picked] @ self._rows.T).toarray()
        contained = shared / np.maximum(self._sizes[picked], 1.0)[:, None]
        contained[np.arange(picked.size), picked] = -1.0  # never its own nearest
        cutoffs, cases, seen_pass = [], [], []
        for r in range(self.ranks):
            own = self._groups[r, picked]
            labelled = self._groups[r] >= 0
            same = self._groups[r][None, :] == own[:, None]
            other = np.where(labelled[None, :] & ~same, contained, -1.0).max(axis=1)
            mine = np.where(same, contained, -1.0).max(axis=1)
            unseen = other[(own >= 0) & (other >= 0)]
            seen = mine[(own >= 0) & (mine >= 0)]
            cases.append(int(unseen.size))
            if r < self.first_rank or unseen.size < self.min_cases:
                cutoffs.append(self.floor)
            else:
                cut = float(np.quantile(unseen, 1.0 - self.unseen_rate, method="higher"))
                cutoffs.append(max(self.floor, np.nextafter(cut, np.inf)))
            seen_pass.append(float(np.mean(seen >= cutoffs[-1])) if seen.size else None)
        # a deeper rank never needs less similarity than the rank above it
        cutoffs = list(np.maximum.accumulate(cutoffs))
        return GateCalibration(tuple(cutoffs), self.unseen_rate, tuple(cases), tuple(seen_pass))
