"""`bioscan costs`: what a tenant's runs cost (per month) and what its stored data costs."""

from __future__ import annotations

import argparse
import json

from bioscan_assets.core.governance.costs import tenant_summary
from bioscan_assets.core.governance.policy import load_policies
from bioscan_assets.core.governance.prices import Prices
from bioscan_assets.core.storage import Store
from bioscan_assets.settings import default_storage

EPILOG = """\
examples:
  bioscan costs --tenant acme-lab
  bioscan costs --tenant acme-lab --month 2026-11
  bioscan costs --tenant reef-survey --storage gs://acme-bioscan/storage --json | jq .total_usd
  bioscan costs --tenant acme-lab --policy-file site-prices.yaml

environment: BIOSCAN_STORAGE (default $BIOSCAN_HOME/storage) gives the default of --storage.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "costs",
        help="estimated compute and storage cost of one tenant",
        description="Sum the run manifests under <storage>/manifests/*/tenant=<T>/ (device "
        "kind, device-seconds, wall time) and the bytes under the tenant's prefixes, priced "
        "with config/retention.yaml (or --policy-file). Estimates, not a bill.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tenant", required=True, help="tenant name, e.g. acme-lab")
    parser.add_argument(
        "--storage",
        default=None,
        help="output root (default $BIOSCAN_STORAGE or $BIOSCAN_HOME/storage)",
    )
    parser.add_argument("--month", default=None, help="only runs finished in this month (YYYY-MM)")
    parser.add_argument("--policy-file", default=None, help="prices from this YAML file")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def _money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}" if value >= 1 else f"{value:.6f} {currency}"


def run(args: argparse.Namespace) -> int:
    store = Store(args.storage or default_storage())
    prices = Prices.from_dict(load_policies(args.policy_file).prices)
    summary = tenant_summary(store, args.tenant, month=args.month, prices=prices)
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 0
    cur = summary["currency"]
    compute = summary["compute"]
    period = f"runs finished in {args.month}" if args.month else "all recorded runs"
    print(f"tenant {args.tenant} ({store.root}) - {period}")
    print(f"{'asset':<24}{'runs':>6}{'device-s':>12}{'wall-s':>12}{'compute':>20}")
    for asset, entry in compute["by_asset"].items():
        print(
            f"{asset:<24}{entry['runs']:>6}{entry['device_seconds']:>12.1f}"
            f"{entry['wall_seconds']:>12.1f}{_money(entry['compute_usd'], cur):>20}"
        )
    print(
        f"{'total':<24}{compute['runs']:>6}{compute['device_seconds']:>12.1f}"
        f"{compute['wall_seconds']:>12.1f}{_money(compute['compute_usd'], cur):>20}"
    )
    print("stored now:")
    for area, size in summary["storage_bytes"].items():
        print(f"  {area:<22}{size / 1e6:>12.2f} MB")
    print(
        f"  {'total':<22}{summary['storage_total_bytes'] / 1e6:>12.2f} MB"
        f" -> {_money(summary['storage_usd_per_month'], cur)} per month"
    )
    print(f"estimated total: {_money(summary['total_usd'], cur)}")
    return 0
