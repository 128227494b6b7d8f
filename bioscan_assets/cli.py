"""`bioscan`: command-line entry point. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules exposing `register(subparsers)`; each adds one subcommand with its own --help.
SUBCOMMAND_MODULES = [
    "bioscan_assets.commands.search",
    "bioscan_assets.commands.submit",
    "bioscan_assets.commands.costs",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bioscan",
        description="bioscan: DNA sequencing drops to embeddings, a vector index and taxonomy calls.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
