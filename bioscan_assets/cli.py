"""`bioscan`: command-line entry point. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

# Modules exposing `register(subparsers)`; each adds one subcommand with its own --help.
SUBCOMMAND_MODULES = [
    "bioscan_assets.commands.search",
    "bioscan_assets.commands.submit",
    "bioscan_assets.commands.costs",
    "bioscan_assets.commands.profile",
    "bioscan_assets.commands.model",
    "bioscan_assets.commands.novelty",
    "bioscan_assets.commands.outputs",
]


def _version() -> str:
    try:
        return version("bioscan")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bioscan",
        description="bioscan: DNA sequencing drops to embeddings, a vector index and taxonomy calls.",
        epilog="`bioscan COMMAND --help` shows a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"bioscan {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `bioscan`: say what it can do
        parser.print_help()
        return 0
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
