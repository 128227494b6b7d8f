"""Taxonomy calls from nearest neighbours: a similarity-weighted vote per rank, with abstention.

Works on plain neighbour lists (labels + cosine distance), so the search command, the
evaluation report and anything else holding neighbours can share it. The vote at a rank is
over the whole lineage down to that rank (kingdom..rank), not the bare name: a genus call is
then always consistent with the family call above it, and a name that occurs under two
families is not pooled. Confidence at a rank is the winning lineage's share of the total
weight of all neighbours, unlabelled ones included, so sparse labels lower the confidence
rather than letting one labelled neighbour decide. Once a rank abstains (confidence below
the threshold), every rank below it abstains too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bioscan_assets.core.taxonomy import RANKS, format_taxon, split_taxon

Labels = str | Sequence[str | None] | dict[str, str | None] | None


@dataclass(frozen=True)
class AssignConfig:
    """`threshold`: minimum confidence to call a rank (QIIME's consensus default is 0.51).

    `weighting`: "similarity" weighs a neighbour by max(0, 1 - distance)**power (cosine
    similarity for cosine distances); "uniform" gives every neighbour weight 1.
    """

    threshold: float = 0.51
    k: int | None = None  # use only the k nearest neighbours (None: all given)
    weighting: str = "similarity"
    power: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError("threshold must be within [0, 1]")
        if self.weighting not in ("similarity", "uniform"):
            raise ValueError("weighting must be 'similarity' or 'uniform'")
        if self.k is not None and self.k < 1:
            raise ValueError("k must be >= 1")
        if self.power <= 0:
            raise ValueError("power must be > 0")


@dataclass(frozen=True)
class RankCall:
    rank: str
    label: str | None  # None: abstained
    confidence: float  # share of neighbour weight behind the best lineage at this rank
    support: int  # neighbours voting for it


@dataclass(frozen=True)
class Assignment:
    calls: tuple[RankCall, ...]
    neighbours: int
    total_weight: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ranks(self) -> dict[str, str | None]:
        return {call.rank: call.label for call in self.calls}

    @property
    def confidence(self) -> dict[str, float]:
        return {call.rank: call.confidence for call in self.calls}

    @property
    def deepest(self) -> RankCall | None:
        """The lowest rank called, or None when even the kingdom abstained."""
        called = [call for call in self.calls if call.label is not None]
        return called[-1] if called else None

    @property
    def taxon(self) -> str:
        """Greengenes-style string, abstained ranks left empty."""
        return format_taxon(call.label for call in self.calls)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ranks": self.ranks,
            "confidence": {k: round(v, 4) for k, v in self.confidence.items()},
            "taxon": self.taxon,
            "neighbours": self.neighbours,
        }


def ranks_of(labels: Labels) -> tuple[str | None, ...]:
    """Seven ranks from a QIIME taxon string, a rank sequence or a {rank: label} dict."""
    if labels is None or isinstance(labels, str):
        return split_taxon(labels)
    if isinstance(labels, dict):
        return tuple(labels.get(rank) or None for rank in RANKS)
    values = [v or None for v in labels][: len(RANKS)]
    return tuple(values + [None] * (len(RANKS) - len(values)))


def _neighbour(item: Any) -> tuple[tuple[str | None, ...], float]:
    """(ranks, distance) from a (labels, distance) pair or an object with .ranks/.taxonomy and .distance."""
    if isinstance(item, tuple) and len(item) == 2:
        labels, distance = item
    else:
        labels = getattr(item, "ranks", None) or getattr(item, "taxonomy", None)
        distance = item.distance
    return ranks_of(labels), float(distance)


def _weight(distance: float, config: AssignConfig) -> float:
    if config.weighting == "uniform":
        return 1.0
    return max(0.0, 1.0 - distance) ** config.power


def assign(neighbours: Iterable[Any], config: AssignConfig | None = None) -> Assignment:
    """Call each rank from neighbours, nearest first: (labels, cosine distance) pairs or hits."""
    config = config or AssignConfig()
    items = [_neighbour(n) for n in neighbours]
    items.sort(key=lambda item: item[1])
    if config.k is not None:
        items = items[: config.k]
    weights = [_weight(distance, config) for _, distance in items]
    total = sum(weights)
    calls: list[RankCall] = []
    abstained = False
    for position, rank in enumerate(RANKS):
        if abstained or total <= 0:
            calls.append(RankCall(rank, None, 0.0, 0))
            abstained = True
            continue
        votes: dict[tuple[str | None, ...], float] = {}
        counts: dict[tuple[str | None, ...], int] = {}
        for (ranks, _), weight in zip(items, weights, strict=True):
            if ranks[position] is None:
                continue
            lineage = ranks[: position + 1]
            votes[lineage] = votes.get(lineage, 0.0) + weight
            counts[lineage] = counts.get(lineage, 0) + 1
        if not votes:
            calls.append(RankCall(rank, None, 0.0, 0))
            abstained = True
            continue
        # ties: more neighbours, then the name, so the result never depends on input order
        best = max(votes, key=lambda lin: (votes[lin], counts[lin], tuple(x or "" for x in lin)))
        confidence = votes[best] / total
        consistent = best[:position] == tuple(call.label for call in calls)
        if confidence < config.threshold or not consistent:
            calls.append(RankCall(rank, None, round(confidence, 6), counts[best]))
            abstained = True
            continue
        calls.append(RankCall(rank, best[position], round(confidence, 6), counts[best]))
    return Assignment(tuple(calls), len(items), total)


def assign_many(
    neighbour_lists: Iterable[Iterable[Any]], config: AssignConfig | None = None
) -> list[Assignment]:
    return [assign(neighbours, config) for neighbours in neighbour_lists]
