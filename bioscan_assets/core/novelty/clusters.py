"""HDBSCAN over the novel candidates, and what each cluster is: medoid, size, agreed rank.

Points are distinct sequences, each repeated up to `min_cluster_size` times (its reads, capped):
amplicon data can hold one novel sequence read a thousand times, which must still make a
cluster, while the repeats stay few enough for a dense distance matrix. The most-read
sequences are clustered first when there are more than `max_points` points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import HDBSCAN

from bioscan_assets.core.novelty.spaces import Space
from bioscan_assets.core.taxonomy import RANKS

NOISE = -1


@dataclass
class ClusterSettings:
    min_cluster_size: int = 3
    min_samples: int | None = 2
    max_points: int = 6000


def cluster_candidates(
    space: Space, novel: np.ndarray, reads: np.ndarray, settings: ClusterSettings
) -> tuple[np.ndarray, int]:
    """(label per query, NOISE where none; queries left out over `max_points`).

    `novel` indexes queries (0-based among the queries); `reads` counts reads per query.
    """
    labels = np.full(space.n_queries, NOISE, dtype=np.int64)
    if novel.size == 0:
        return labels, 0
    repeats = np.minimum(reads[novel], settings.min_cluster_size).astype(np.int64)
    order = np.lexsort((novel, -reads[novel]))  # most reads first, then query order
    kept = np.cumsum(repeats[order]) <= settings.max_points
    chosen = novel[order[kept]]
    left_out = int(novel.size - chosen.size)
    points = np.repeat(chosen, repeats[order[kept]])
    if points.size < max(2, settings.min_cluster_size):
        return labels, left_out
    dist = space.dist(points + space.n_refs, points + space.n_refs).astype(np.float64)
    np.fill_diagonal(dist, 0.0)
    dist = np.maximum(dist, dist.T)  # exact symmetry for the precomputed metric
    min_samples = settings.min_samples
    if min_samples is not None:
        min_samples = min(min_samples, points.size - 1)
    fitted = HDBSCAN(
        min_cluster_size=settings.min_cluster_size,
        min_samples=min_samples,
        metric="precomputed",
        copy=False,
    ).fit(dist)
    for query in chosen:
        votes = fitted.labels_[points == query]
        clustered = votes[votes != NOISE]
        if clustered.size:
            labels[query] = int(np.bincount(clustered).argmax())
    return labels, left_out


def medoid(space: Space, members: np.ndarray, weights: np.ndarray) -> int:
    """The member query with the least read-weighted distance to the others."""
    if members.size == 1:
        return int(members[0])
    d = space.dist(members + space.n_refs, members + space.n_refs)
    cost = d @ weights.astype(np.float64)
    return int(members[int(np.argmin(cost))])


def agreed_rank(calls: Sequence[tuple[str | None, ...]]) -> tuple[str | None, tuple[str, ...]]:
    """(deepest rank where every member's call has the same label, the labels down to it)."""
    agreed: list[str] = []
    for position in range(len(RANKS)):
        labels = {call[position] for call in calls}
        if len(labels) != 1 or None in labels:
            break
        agreed.append(labels.pop())
    return (RANKS[len(agreed) - 1] if agreed else None), tuple(agreed)
