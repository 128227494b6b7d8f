"""Stacked taxon barplots as PNG bytes (matplotlib, Agg), as QIIME 2's `taxa barplot` draws them.

matplotlib is imported lazily: calls and profiles do not need it, only the pictures do; without
it the functions return None and callers say the picture is missing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

OTHER = "Other"
_PALETTE = "tab20"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def stacked_barplot(
    bars: Mapping[str, Mapping[str, float]],
    *,
    title: str,
    top: int = 12,
    width: float | None = None,
) -> bytes | None:
    """One bar per key of `bars` ({bar: {taxon: fraction}}); the `top` taxa overall, rest "Other"."""
    plt = _pyplot()
    if plt is None:
        return None
    totals: dict[str, float] = {}
    for shares in bars.values():
        for taxon, share in shares.items():
            totals[taxon] = totals.get(taxon, 0.0) + share
    named = [t for t, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))][:top]
    labels: Sequence[str] = list(bars)
    fig, ax = plt.subplots(figsize=(width or max(4.0, 1.1 * len(labels) + 3.5), 4.5))
    cmap = plt.get_cmap(_PALETTE)
    bottom = [0.0] * len(labels)
    for i, taxon in enumerate([*named, OTHER]):
        values = [
            bars[b].get(taxon, 0.0)
            if taxon != OTHER
            else sum(v for t, v in bars[b].items() if t not in named)
            for b in labels
        ]
        color = (
            "#cccccc" if taxon == OTHER else ("#888888" if taxon == "Unassigned" else cmap(i % 20))
        )
        ax.bar(labels, values, bottom=bottom, label=taxon[:40], color=color, edgecolor="white")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("fraction of reads")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1.0), loc="upper left", frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def sample_map(
    points: Sequence[tuple[str, float, float, float | None, int]], *, title: str
) -> bytes | None:
    """Where samples were taken: (sample, latitude, longitude, depth_m or None, reads) each.

    Left, longitude x latitude on the whole globe (point area grows with reads, colour is
    depth); right, each sample's depth below the surface. None without matplotlib or points.
    """
    plt = _pyplot()
    if plt is None or not points:
        return None
    fig, (world, column) = plt.subplots(
        1, 2, figsize=(10.5, 4.2), gridspec_kw={"width_ratios": [2.4, 1.0]}
    )
    depths = [d for *_, d, _ in points if d is not None]
    top = max(depths) if depths else 1.0
    cmap = plt.get_cmap("viridis_r")
    for name, lat, lon, depth, reads in points:
        colour = cmap(depth / top if depth is not None and top else 0.0)
        size = 30 + 12 * (max(reads, 0) ** 0.5)
        world.scatter([lon], [lat], s=size, color=colour, edgecolor="black", linewidth=0.6)
        world.annotate(name, (lon, lat), textcoords="offset points", xytext=(6, 5), fontsize=8)
    world.set_xlim(-180, 180)
    world.set_ylim(-90, 90)
    world.set_xticks(range(-180, 181, 60))
    world.set_yticks(range(-90, 91, 30))
    world.grid(True, color="#dddddd", linewidth=0.6)
    world.axhline(0, color="#aaaaaa", linewidth=0.8)
    world.set_xlabel("longitude")
    world.set_ylabel("latitude")
    world.set_title(f"{title}: sampling sites", fontsize=10)
    placed = [(name, depth) for name, _lat, _lon, depth, _r in points if depth is not None]
    if placed:
        names = [n for n, _ in placed]
        bars = column.bar(
            names, [d for _, d in placed], color=[cmap(d / top if top else 0.0) for _, d in placed]
        )
        column.bar_label(bars, fmt="%.0f m", fontsize=7)
        column.invert_yaxis()
        column.tick_params(axis="x", rotation=30, labelsize=8)
    else:
        column.text(0.5, 0.5, "no depth in sample.json", ha="center", va="center", fontsize=9)
        column.set_xticks([])
    column.set_ylabel("depth (m)")
    column.set_title("depth", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
