"""Per-rank label vocabularies: the classifier's output classes, fixed by the training lineages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bioscan_assets.core.taxonomy import RANKS

Lineage = tuple[str | None, ...]


@dataclass
class LabelVocab:
    """Sorted labels per rank, from the training lineages only."""

    labels: dict[str, list[str]]

    @classmethod
    def from_lineages(cls, lineages: Sequence[Sequence[str | None]]) -> LabelVocab:
        return cls(
            {
                rank: sorted({lin[r] for lin in lineages if lin[r] is not None})
                for r, rank in enumerate(RANKS)
            }
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(self.labels[rank]) for rank in RANKS)

    def encode(self, lineages: Sequence[Sequence[str | None]]) -> np.ndarray:
        """int32 [N, 7]; -1 where the rank is unknown or its label is not in the vocabulary."""
        index = {rank: {label: i for i, label in enumerate(self.labels[rank])} for rank in RANKS}
        out = np.full((len(lineages), len(RANKS)), -1, np.int32)
        for n, lineage in enumerate(lineages):
            for r, rank in enumerate(RANKS):
                if lineage[r] is not None:
                    out[n, r] = index[rank].get(lineage[r], -1)
        return out

    def label_sets(self) -> list[set[str]]:
        return [set(self.labels[rank]) for rank in RANKS]
