"""The 2-D map: references coloured by phylum, candidates grey, novel clusters outlined.

Coordinates are a PCA of the points through their distance matrix (classical MDS: the top two
eigenvectors of the double-centred squared distances), so the map shows the very distances the
decisions used; for embeddings this is the PCA of the unit vectors. matplotlib is imported
lazily, as in `core.calls.plots`: without it the map is None and callers say so.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from scipy.spatial import ConvexHull, QhullError

UNKNOWN_PHYLUM = "(phylum unknown)"


def pca_from_distances(dist: np.ndarray) -> np.ndarray:
    """[n, 2] coordinates whose distances approximate `dist` (cosine-like, in [0, 1])."""
    n = dist.shape[0]
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    squared = 2.0 * np.asarray(dist, dtype=np.float64)  # |u - v|^2 = 2 (1 - cos) for unit vectors
    squared = (squared + squared.T) / 2.0
    centre = np.eye(n) - 1.0 / n
    gram = -0.5 * centre @ squared @ centre
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:2]
    coords = vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    for axis in range(2):  # a sign convention, so a rebuild on the same data draws the same map
        column = coords[:, axis]
        if column.size and column[np.argmax(np.abs(column))] < 0:
            coords[:, axis] = -column
    return coords.astype(np.float32)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _outline(ax, points: np.ndarray, color) -> None:
    """A convex hull around a cluster's points (a circle when they are too few or collinear)."""
    centre = points.mean(axis=0)
    if len(points) >= 3:
        try:
            hull = ConvexHull(points)
            ring = points[hull.vertices]
            ring = centre + (ring - centre) * 1.15
            ax.fill(ring[:, 0], ring[:, 1], facecolor="none", edgecolor=color, linewidth=1.4)
            return
        except QhullError:
            pass
    radius = max(float(np.abs(points - centre).max()) * 1.3, 0.02)
    ax.add_patch(_circle(centre, radius, color))


def _circle(centre, radius, color):
    from matplotlib.patches import Circle

    return Circle(tuple(centre), radius, facecolor="none", edgecolor=color, linewidth=1.4)


def novelty_map(
    ref_xy: np.ndarray,
    ref_phyla: Sequence[str | None],
    query_xy: np.ndarray,
    query_cluster: Sequence[str | None],
    *,
    title: str,
) -> bytes | None:
    """PNG bytes of the map; `query_cluster` is each candidate's cluster id (None: unclustered)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8.0, 6.0))
    phyla = sorted({p or UNKNOWN_PHYLUM for p in ref_phyla})
    cmap = plt.get_cmap("tab10")
    for i, phylum in enumerate(phyla):
        mask = np.array([(p or UNKNOWN_PHYLUM) == phylum for p in ref_phyla], dtype=bool)
        ax.scatter(*ref_xy[mask].T, s=22, color=cmap(i % 10), label=phylum[:32], alpha=0.85)
    clusters = np.array([c or "" for c in query_cluster], dtype=object)
    loose = clusters == ""
    if loose.any():
        ax.scatter(
            *query_xy[loose].T, s=8, marker="x", color="#999999", label="candidate, no cluster"
        )
    outline = plt.get_cmap("Dark2")
    for j, cluster_id in enumerate(sorted(set(clusters[~loose]))):
        points = query_xy[clusters == cluster_id]
        color = outline(j % 8)
        ax.scatter(*points.T, s=14, color=color, marker="^")
        _outline(ax, points, color)
        ax.annotate(cluster_id, points.mean(axis=0), fontsize=8, color=color, weight="bold")
    ax.set_xlabel("axis 1")
    ax.set_ylabel("axis 2")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1.0), loc="upper left", frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
