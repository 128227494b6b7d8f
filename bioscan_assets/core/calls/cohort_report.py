"""A tenant's cohort report: one self-contained HTML page, pictures first.

1. the composition of every sample at one rank, stacked bars as QIIME 2's `taxa barplot`;
2. where the samples were taken (latitude x longitude, depth) from their sample.json;
3. sections other parts add (`ReportSection`, e.g. novelty clusters), in the order given;
4. the tables behind the pictures: top taxa per sample, then each sample's metadata.

Written under `reports/cohort/tenant=<t>/<run>/` and copied to `.../latest/` (a stable path):
`index.html` (images inline, so the one file can be mailed), the PNGs and `cohort.tsv` (the
fractions behind the barplot, one row per sample and taxon).
"""

from __future__ import annotations

import base64
import html
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bioscan_assets.core.calls.cohort_data import CohortSample, load_cohort
from bioscan_assets.core.calls.plots import sample_map, stacked_barplot
from bioscan_assets.core.layout import check_tenant, cohort_report_dir
from bioscan_assets.core.storage import Store

LATEST = "latest"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
BARPLOT, MAP, TABLE, PAGE = "barplot.png", "map.png", "cohort.tsv", "index.html"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
img { max-width: 100%; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
td.n { text-align: right; } .note { color: #666; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class ReportSection:
    """A section added by another part of the platform. `html` is trusted markup built by the
    caller (escape your own values with `html.escape`); it is placed after the pictures."""

    title: str
    html: str


@dataclass
class CohortReport:
    tenant: str
    rank: str
    html: str
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    table_tsv: str = ""
    samples: list[CohortSample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "samples": len(self.samples),
            "profiled": sum(s.has_profile for s in self.samples),
            "placed": sum(s.placed for s in self.samples),
            "reads": sum(s.reads for s in self.samples),
            "taxa": len({t for s in self.samples for t in s.shares}),
        }


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _image(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<p class="note">{_esc(missing)}</p>'
    data = base64.b64encode(png).decode()
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _top_table(samples: Sequence[CohortSample], rank: str, top: int = 5) -> str:
    rows = []
    for s in samples:
        if not s.has_profile:
            rows.append(f"<tr><td>{_esc(s.sample_id)}</td><td colspan=2>no profile yet</td></tr>")
            continue
        ordered = sorted(s.shares.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        taxa = "; ".join(f"{_esc(t)} {100 * f:.1f}%" for t, f in ordered)
        rows.append(
            f'<tr><td>{_esc(s.sample_id)}</td><td class="n">{s.reads}</td><td>{taxa}</td></tr>'
        )
    head = f"<tr><th>sample</th><th>reads</th><th>top {top} at {_esc(rank)}</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _sample_table(samples: Sequence[CohortSample]) -> str:
    keys = ("kind", "collected_at", "latitude", "longitude", "depth_m", "site")
    head = "<tr><th>sample</th>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>"
    rows = [
        f"<tr><td>{_esc(s.sample_id)}</td>"
        + "".join(f"<td>{_esc(s.metadata.get(k))}</td>" for k in keys)
        + "</tr>"
        for s in samples
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _tsv(samples: Sequence[CohortSample]) -> str:
    lines = ["sample_id\ttaxon\tlineage\tfraction"]
    for s in samples:
        for taxon, share in sorted(s.shares.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{s.sample_id}\t{taxon}\t{s.lineages.get(taxon, '')}\t{share:.6f}")
    return "\n".join(lines) + "\n"


def build_cohort_report(
    tenant: str,
    samples: Sequence[CohortSample],
    *,
    rank: str = "genus",
    top: int = 12,
    sections: Sequence[ReportSection] = (),
    generated_at: float | None = None,
) -> CohortReport:
    """The page and its pictures; `sections` come right after the built-in pictures."""
    check_tenant(tenant)
    profiled = [s for s in samples if s.has_profile]
    bars = {s.sample_id: s.shares for s in profiled}
    barplot = stacked_barplot(bars, title=f"{tenant}: {rank}", top=top) if bars else None
    points = [
        (s.sample_id, s.number("latitude"), s.number("longitude"), s.number("depth_m"), s.reads)
        for s in samples
        if s.placed
    ]
    where = sample_map(points, title=tenant)
    unplaced = [s.sample_id for s in samples if not s.placed]
    waiting = [s.sample_id for s in samples if not s.has_profile]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(generated_at or time.time()))
    parts = [
        f"<h1>Cohort report: {_esc(tenant)}</h1>",
        f'<p class="note">{len(samples)} samples, {len(profiled)} with a taxonomic profile; '
        f"composition at rank <b>{_esc(rank)}</b>; generated {stamp}.</p>",
        f"<h2>Composition at {_esc(rank)}</h2>",
        _image(barplot, "stacked barplot", "no profile yet (or matplotlib is missing)"),
        "<h2>Where the samples were taken</h2>",
        _image(where, "sampling sites", "no sample.json gives a latitude and longitude"),
    ]
    if unplaced:
        parts.append(
            f'<p class="note">without coordinates (e.g. reference samples): '
            f"{_esc(', '.join(unplaced))}</p>"
        )
    for section in sections:
        parts += [f"<h2>{_esc(section.title)}</h2>", section.html]
    parts += ["<h2>Top taxa per sample</h2>", _top_table(samples, rank)]
    if waiting:
        parts.append(
            f'<p class="note">waiting for taxonomic_profile: {_esc(", ".join(waiting))}</p>'
        )
    parts += ["<h2>Samples</h2>", _sample_table(samples)]
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>Cohort {_esc(tenant)}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    images = {name: png for name, png in ((BARPLOT, barplot), (MAP, where)) if png is not None}
    return CohortReport(tenant, rank, page, images, _tsv(samples), list(samples))


def write_cohort_report(store: Store, report: CohortReport, run_id: str) -> dict[str, str]:
    """Write the run's folder, then the same files under `latest/`; returns store paths."""
    if not _RUN_ID.fullmatch(run_id) or run_id == LATEST:
        raise ValueError(f"run id {run_id!r} cannot name a report folder")
    root = cohort_report_dir(check_tenant(report.tenant))
    files = {PAGE: report.html.encode(), TABLE: report.table_tsv.encode(), **report.images}
    for folder in (f"{root}/{run_id}", f"{root}/{LATEST}"):
        for name, data in files.items():
            store.write_bytes(f"{folder}/{name}", data)
        for rel in store.list_files(folder):  # a picture the new report no longer has
            if rel.rsplit("/", 1)[-1] not in files:
                store.delete(rel)
    return {
        "html": f"{root}/{LATEST}/{PAGE}",
        "run_html": f"{root}/{run_id}/{PAGE}",
        **{name: f"{root}/{LATEST}/{name}" for name in report.images},
        "tsv": f"{root}/{LATEST}/{TABLE}",
    }


def cohort_report(
    store: Store,
    tenant: str,
    sample_ids: Sequence[str],
    *,
    run_id: str,
    rank: str = "genus",
    top: int = 12,
    sections: Sequence[ReportSection] = (),
) -> tuple[CohortReport, dict[str, str]]:
    """Read the tenant's samples, build the page, write it; (report, paths)."""
    samples = load_cohort(store, tenant, sample_ids, rank)
    report = build_cohort_report(tenant, samples, rank=rank, top=top, sections=sections)
    return report, write_cohort_report(store, report, run_id)
