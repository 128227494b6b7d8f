"""`bioscan profile`: a sample's taxonomic profile at one rank, as written by taxonomic_profile."""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import Any

import pyarrow.parquet as pq

from bioscan_assets.core.calls.cohort_data import profiled_samples
from bioscan_assets.core.layout import check_sample_id, check_tenant, profile_dir
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.settings import default_storage

DESCRIPTION = """\
Print what lives in one sample: for each taxon at a rank, its reads and fraction of all the
sample's reads (every read counts, duplicates included; reads not called at the rank are
"Unassigned"). Reads the profile the taxonomic_profile asset wrote under
<storage>/profiles/tenant=<T>/sample=<S>/profile.parquet; nothing is recomputed here.
"""

EPILOG = """\
examples:
  bioscan profile --tenant acme-lab --sample FIELD-2026-001
  bioscan profile --tenant acme-lab --sample FIELD-2026-001 --rank phylum --top 5
  bioscan profile --tenant reef-survey --sample REEF-07 --format tsv > REEF-07.genus.tsv
  bioscan profile --tenant reef-survey --sample REEF-07 --rank family --format json

environment: BIOSCAN_STORAGE (default $BIOSCAN_HOME/storage) gives the default of --storage.
exit status: 0 profile printed; 1 no profile for that sample (materialise taxonomic_profile,
e.g. dagster job execute -m bioscan_assets.definitions -j sample_taxonomy --tags
'{"dagster/partition": "<T>/<S>"}'); 2 bad usage.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="a sample's taxonomic profile: reads and fraction per taxon at a rank",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tenant", required=True, help="the sample's tenant (required)")
    parser.add_argument("--sample", required=True, help="sample id (required)")
    parser.add_argument(
        "--rank", default="genus", choices=RANKS, help="rank to show (default genus)"
    )
    parser.add_argument(
        "--format",
        default="table",
        choices=("table", "tsv", "json"),
        help="table (default, for people), tsv (profile.tsv columns) or json",
    )
    parser.add_argument(
        "--top", type=int, default=None, help="table only: show the N largest taxa, sum the rest"
    )
    parser.add_argument(
        "--storage", default=None, help="storage root, a path or gs://bucket/prefix"
    )
    parser.set_defaults(handler=run)


def _fail(message: str) -> int:
    print(f"bioscan profile: error: {message}", file=sys.stderr)
    return 1


def _rows(store: Any, tenant: str, sample_id: str, rank: str) -> list[dict[str, Any]]:
    rel = f"{profile_dir(tenant, sample_id)}/profile.parquet"
    try:
        data = store.read_bytes(rel)
    except FileNotFoundError:
        others = profiled_samples(store, tenant)
        known = (
            f"profiled samples of {tenant}: {', '.join(others)}"
            if others
            else (f"tenant {tenant} has no profile yet")
        )
        raise FileNotFoundError(
            f"no profile at {store.url(rel)}: materialise taxonomic_profile for partition "
            f"{tenant}/{sample_id} ({known})"
        ) from None
    rows = pq.read_table(io.BytesIO(data)).to_pylist()
    return [row for row in rows if row["rank"] == rank]


def _table(tenant: str, sample_id: str, rank: str, rows: list[dict], top: int | None) -> str:
    reads = sum(row["reads"] for row in rows)
    shown, rest = (rows[:top], rows[top:]) if top else (rows, [])
    lines = [f"{tenant}/{sample_id}: {reads} reads at rank {rank}, {len(rows)} taxa"]
    width = max([len(rank), *(len(row["taxon"]) for row in shown)])
    lines.append(f"  {rank:<{width}}  {'reads':>9}  {'%':>6}  lineage")
    for row in shown:
        lines.append(
            f"  {row['taxon']:<{width}}  {row['reads']:>9}  {100 * row['fraction']:>6.2f}  "
            f"{row['lineage']}"
        )
    if rest:
        n, share = sum(r["reads"] for r in rest), sum(r["fraction"] for r in rest)
        label = f"({len(rest)} more)"
        lines.append(f"  {label:<{width}}  {n:>9}  {100 * share:>6.2f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.top is not None and args.top < 1:
        return _fail("--top must be >= 1")
    try:
        check_tenant(args.tenant)
        check_sample_id(args.sample)
        store = Store(args.storage or default_storage())
        rows = _rows(store, args.tenant, args.sample, args.rank)
    except (ValueError, OSError) as error:
        return _fail(str(error))
    if args.format == "json":
        doc = {
            "tenant": args.tenant,
            "sample_id": args.sample,
            "rank": args.rank,
            "reads": sum(row["reads"] for row in rows),
            "taxa": [
                {k: row[k] for k in ("taxon", "lineage", "reads", "fraction")} for row in rows
            ],
        }
        print(json.dumps(doc, indent=2))
    elif args.format == "tsv":
        print("rank\ttaxon\tlineage\treads\tfraction")
        for row in rows:
            cells = (row["rank"], row["taxon"], row["lineage"], row["reads"])
            print("\t".join(map(str, cells)) + f"\t{row['fraction']:.6f}")
    else:
        print(_table(args.tenant, args.sample, args.rank, rows, args.top))
    return 0
