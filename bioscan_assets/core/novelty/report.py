"""A tenant's committed novelty result as rows, a Markdown table and an HTML report section.

`novelty_section` returns `(title, html)`: the cohort report takes it as an extra section
(the report lives below novelty in the layers, so the asset layer hands it over). The HTML is
self-contained (the map is inlined) and every value from the data is escaped.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from bioscan_assets.core.novelty.store import read_clusters, read_map, read_novelty_manifest
from bioscan_assets.core.storage import Store

SECTION_TITLE = "Novelty: clusters no reference explains"
COLUMNS = (
    "cluster_id",
    "reads",
    "distinct_sequences",
    "samples",
    "first_seen",
    "last_seen",
    "agreed_rank",
    "agreed_taxon",
    "nearest_taxon",
    "nearest_distance",
    "medoid_sequence_id",
)


def cluster_rows(
    store: Store, tenant: str, min_reads: int = 1
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, clusters with at least `min_reads` reads, largest first)."""
    manifest = read_novelty_manifest(store, tenant)
    rows = [
        r for r in read_clusters(store, tenant, manifest).to_pylist() if r["reads"] >= min_reads
    ]
    rows.sort(key=lambda r: (-r["reads"], r["cluster_id"]))
    return manifest, rows


def summary_line(manifest: dict[str, Any]) -> str:
    """One sentence: representation, threshold, and how many reads made it to a cluster."""
    rep = manifest.get("representation") or {}
    counts = manifest.get("counts") or {}
    threshold = manifest.get("threshold") or {}
    how = rep.get("representation", "?")
    if how == "embedding":
        how = f"embeddings of model {rep.get('model_id')}"
    elif how == "kmer":
        how = f"canonical {rep.get('k', '?')}-mer profiles"
    rank = (manifest.get("settings") or {}).get("rank", "genus")
    parts = [
        f"{manifest.get('rows', 0)} clusters from {counts.get('clustered_rows', 0)} of "
        f"{counts.get('candidate_rows', 0)} reads abstaining at {rank}"
    ]
    if threshold:
        quantile = threshold.get("quantile")
        cut = f"novel beyond distance {float(threshold.get('value', 0.0)):.3f} to every reference"
        if quantile is not None:
            cut += f" (quantile {quantile} of reference-to-reference distances)"
        parts.append(cut)
    parts.append(f"measured with {how}")
    reason = rep.get("reason") or manifest.get("reason")
    return "; ".join(parts) + (f" ({reason})" if reason else "") + "."


def last_label(taxon: str) -> str:
    """`k__A; p__B` -> `B` (the deepest label, prefix removed)."""
    last = taxon.split(";")[-1].strip()
    return last.split("__", 1)[1] if "__" in last[:3] else last


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if isinstance(value, list):
        return ", ".join(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]], limit: int = 20) -> str:
    head = ["cluster", "reads", "sequences", "samples", "agreed", "nearest reference", "distance"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows[:limit]:
        agreed = f"{row['agreed_rank']}: {row['agreed_taxon']}" if row["agreed_rank"] else "none"
        cells = [
            row["cluster_id"],
            str(row["reads"]),
            str(row["distinct_sequences"]),
            ", ".join(row["samples"]),
            agreed,
            row["nearest_taxon"],
            f"{row['nearest_distance']:.3f}",
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    if len(rows) > limit:
        lines.append(f"\n{len(rows) - limit} more clusters: `bioscan novelty --tenant <t>`")
    return "\n".join(lines) if rows else "No novelty clusters."


def novelty_section(
    store: Store, tenant: str, *, min_reads: int = 1, limit: int = 50
) -> tuple[str, str]:
    """(title, html) of the tenant's novelty map and clusters-by-size table."""
    try:
        manifest, rows = cluster_rows(store, tenant, min_reads)
    except FileNotFoundError:
        return SECTION_TITLE, (
            f"<p>No novelty result for tenant {html.escape(tenant)} yet: materialise "
            "<code>novelty_clusters</code> after its taxonomy calls.</p>"
        )
    out = [f"<p>{html.escape(summary_line(manifest))}</p>"]
    png = read_map(store, tenant, manifest)
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        out.append(
            f'<img alt="novelty map of {html.escape(tenant)}" style="max-width:100%" '
            f'src="data:image/png;base64,{data}">'
        )
    if not rows:
        out.append("<p>No clusters.</p>")
        return SECTION_TITLE, "\n".join(out)
    header = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = [
        "<tr>" + "".join(f"<td>{html.escape(_cell(r, c))}</td>" for c in COLUMNS) + "</tr>"
        for r in rows[:limit]
    ]
    out.append(f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    if len(rows) > limit:
        out.append(f"<p>{len(rows) - limit} smaller clusters not shown.</p>")
    return SECTION_TITLE, "\n".join(out)
