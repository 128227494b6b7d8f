"""`bioscan outputs`: where the newest reports and the sample profiles are."""

from __future__ import annotations

import argparse
import json
import sys

from bioscan_assets.core.governance.outputs import published_outputs
from bioscan_assets.core.storage import Store
from bioscan_assets.settings import default_storage

DESCRIPTION = """\
List what a person opens after a run: each tenant's newest evaluation report and cohort report
(stable paths under <storage>/reports/.../latest/, rewritten by every run; each run's own copy
sits beside it) and every sample's taxonomic profile (<storage>/profiles/tenant=<T>/sample=<S>/,
profile.tsv with profile.parquet and barplot.png beside it).
"""

EPILOG = """\
examples:
  bioscan outputs
  bioscan outputs --tenant acme-lab
  bioscan outputs --storage gs://acme-bioscan/storage --format json | jq -r '.[].url'

environment: BIOSCAN_STORAGE (default $BIOSCAN_HOME/storage) gives the default of --storage.
exit status: 0 listed (also when nothing is there yet: it says so); 2 bad usage.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "outputs",
        help="where the newest reports and the sample profiles are",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tenant", default=None, help="only this tenant (default: every one)")
    parser.add_argument(
        "--storage",
        default=None,
        help="output root (default $BIOSCAN_STORAGE or $BIOSCAN_HOME/storage)",
    )
    parser.add_argument(
        "--format", default="text", choices=("text", "json"), help="text (default) or json"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    store = Store(args.storage or default_storage())
    try:
        outputs = published_outputs(store, args.tenant)
    except ValueError as error:  # a tenant name that cannot exist
        print(f"bioscan outputs: {error}", file=sys.stderr)
        return 2
    if args.format == "json":
        rows = [
            {
                "kind": o.kind,
                "tenant": o.tenant,
                "sample_id": o.sample_id,
                "path": o.path,
                "url": store.url(o.path),
            }
            for o in outputs
        ]
        print(json.dumps(rows, indent=1))
        return 0
    if not outputs:
        print(f"no reports or profiles under {store.root} yet (run `make demo` or the jobs)")
        return 0
    print(f"reports and profiles under {store.root}:")
    width = max(len(o.label()) for o in outputs)
    for o in outputs:
        print(f"  {o.label():<{width}}  {store.url(o.path)}")
    return 0
