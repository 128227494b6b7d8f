"""Cluster ids that survive rebuilds: match new clusters to the previous result by membership.

Members are rows, `<sample_id>/<sequence_id>`. Every (new, previous) pair is scored by the
Jaccard index of their member sets; pairs at or above `min_jaccard` are taken greedily, best
first (ties: the older id, then the new cluster's smallest member), one to one. A new cluster
left unmatched gets the next number, which is never handed out twice even after its cluster
disappears (the manifest keeps the counter).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

PREFIX = "N"


def format_id(number: int) -> str:
    return f"{PREFIX}{number:04d}"


@dataclass
class Matching:
    ids: dict[int, str] = field(default_factory=dict)  # new label -> cluster id
    next_number: int = 1
    kept: dict[str, float] = field(default_factory=dict)  # matched id -> Jaccard
    new: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "rule": "Jaccard of member rows with the previous result, greedy best-first",
            "kept": {k: round(v, 4) for k, v in sorted(self.kept.items())},
            "new": sorted(self.new),
            "retired": sorted(self.retired),
        }


def jaccard(a: Set[str], b: Set[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def match_clusters(
    current: Mapping[int, Set[str]],
    previous: Mapping[str, Set[str]],
    next_number: int = 1,
    min_jaccard: float = 0.5,
) -> Matching:
    """Ids for the `current` clusters (label -> members), reusing `previous` (id -> members)."""
    pairs = []
    for label, members in current.items():
        for old_id, old_members in previous.items():
            score = jaccard(members, old_members)
            if score >= min_jaccard and score > 0.0:
                pairs.append((-score, old_id, min(members), label))
    out = Matching(next_number=next_number)
    for negative, old_id, _first, label in sorted(pairs):
        if label in out.ids or old_id in out.kept:
            continue
        out.ids[label] = old_id
        out.kept[old_id] = -negative
    fresh = sorted(
        (label for label in current if label not in out.ids),
        key=lambda label: (-len(current[label]), min(current[label])),
    )
    for label in fresh:
        out.ids[label] = format_id(out.next_number)
        out.new.append(out.ids[label])
        out.next_number += 1
    out.retired = [old for old in previous if old not in out.kept]
    return out
