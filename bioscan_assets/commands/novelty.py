"""`bioscan novelty`: a tenant's clusters of reads that no reference explains."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bioscan_assets.core.layout import check_tenant
from bioscan_assets.core.novelty.report import COLUMNS, cluster_rows, last_label, summary_line
from bioscan_assets.core.storage import Store
from bioscan_assets.settings import default_storage

DESCRIPTION = """\
List the novelty clusters of one tenant: groups of reads whose taxonomy calls abstain at genus
and that lie farther from every reference than the tenant's references lie from each other,
largest first. Each has an id that survives rebuilds, its reads and distinct sequences, the
samples and dates it was seen in, the deepest rank its members' calls agree on, the nearest
reference taxon and distance, and a representative (medoid) sequence id.

The clusters are built by the novelty_clusters asset (one result per tenant); this command
only reads <storage>/novelty/tenant=<T>/, and only the given tenant's.
"""

EPILOG = """\
examples:
  bioscan novelty --tenant acme-lab
  bioscan novelty --tenant acme-lab --min-reads 5 --format tsv > novel.tsv
  bioscan novelty --tenant acme-lab --format json | jq '.clusters[0]'

environment: BIOSCAN_STORAGE (default $BIOSCAN_HOME/storage) gives the default of --storage.
exit status: 0 clusters printed (possibly none); 1 no novelty result for the tenant or an
invalid tenant name; 2 bad usage.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "novelty",
        help="clusters of a tenant's reads that no reference explains",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tenant", required=True, help="tenant whose clusters to list")
    parser.add_argument(
        "--min-reads", type=int, default=1, metavar="N", help="only clusters of at least N reads"
    )
    parser.add_argument(
        "--format",
        choices=("table", "tsv", "json"),
        default="table",
        help="table (default, for people), tsv (one line a cluster) or json",
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="output root (default $BIOSCAN_STORAGE or $BIOSCAN_HOME/storage)",
    )
    parser.set_defaults(handler=run)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    shown = ("cluster_id", "reads", "distinct_sequences", "samples", "first_seen", "agreed_rank")
    head = [
        "cluster",
        "reads",
        "seqs",
        "samples",
        "first seen",
        "agreed",
        "nearest reference",
        "dist",
    ]
    lines = []
    for row in rows:
        cells = [_text(row[c]) for c in shown]
        agreed = row["agreed_rank"]
        cells[5] = f"{agreed} {last_label(row['agreed_taxon'])}" if agreed else "-"
        cells += [last_label(row["nearest_taxon"]), f"{row['nearest_distance']:.3f}"]
        lines.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines]
    return "\n".join(line.rstrip() for line in out)


def run(args: argparse.Namespace) -> int:
    try:
        tenant = check_tenant(args.tenant)
        manifest, rows = cluster_rows(
            Store(args.storage or default_storage()), tenant, args.min_reads
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"bioscan novelty: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        doc = {
            "tenant": tenant,
            "version": manifest.get("version"),
            "summary": summary_line(manifest),
            "representation": manifest.get("representation"),
            "threshold": manifest.get("threshold"),
            "counts": manifest.get("counts"),
            "clusters": rows,
        }
        print(json.dumps(doc, indent=1, sort_keys=True, default=str))
    elif args.format == "tsv":
        print("\t".join(COLUMNS))
        for row in rows:
            print("\t".join(_text(row[c]) for c in COLUMNS))
    else:
        print(f"tenant {tenant}: {summary_line(manifest)}")
        print(
            _table(rows)
            if rows
            else "no clusters" + (f" of {args.min_reads}+ reads" if args.min_reads > 1 else "")
        )
    return 0
