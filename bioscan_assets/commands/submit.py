"""`bioscan submit` / `bioscan follow`: launch work on a deployed Dagster and follow it to the end.

For lab scripts and CI, which have no browser: the run (or backfill) is submitted through
Dagster's GraphQL API (`graphql_client`), then polled until it finishes (`follow`), printing
each status and step change, and the exit code says how it ended.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from bioscan_assets.commands.follow import EXIT_SUCCEEDED, Follower
from bioscan_assets.commands.graphql_client import (
    URL_ENV,
    ApiError,
    DagsterApi,
    Endpoint,
    UsageError,
)
from bioscan_assets.core.layout import split_partition_key

EXIT_USAGE = 2
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit status:
  0  succeeded
  1  failed (the failing steps and their errors are printed)
  2  bad arguments
  3  canceled
  4  the Dagster GraphQL endpoint could not be reached or refused the request
  5  --timeout passed while the run was still queued or running (it goes on)
  130 interrupted (Ctrl-C); the run goes on: `bioscan follow RUN_ID`

The endpoint is --url, else $DAGSTER_GRAPHQL_URL, else --host/--port (default http://127.0.0.1:3000).
"""


def _tags(pairs: Sequence[str] | None) -> dict[str, str]:
    tags = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {pair!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


def _audit_tags(kind: str) -> dict[str, str]:
    """Who launched what, recorded on every run (trigger: cli, or ci inside CI)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return {
        "bioscan/trigger": "ci" if os.environ.get("CI") else "cli",
        "bioscan/user": user,
        "bioscan/submit": kind,
    }


def _load_run_config(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            value = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"--config {path}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"--config {path}: the run config must be a mapping")
    return value


def _follower(args: argparse.Namespace, api: DagsterApi) -> Follower:
    return Follower(api, poll_interval=args.poll_interval, timeout=args.timeout)


def _run_and_follow(args: argparse.Namespace, job: str, partition: str | None, kind: str) -> int:
    api = DagsterApi(Endpoint.from_args(args))
    location, repository = api.find_job(job, args.location, args.repository)
    tags = {**_audit_tags(kind), **_tags(args.tag)}
    if partition:
        tags["dagster/partition"] = partition
    run_config = _load_run_config(getattr(args, "config", None))
    run_id = api.submit_run(
        job, location=location, repository=repository, tags=tags, run_config=run_config
    )
    if args.no_follow:
        print(run_id)
        return EXIT_SUCCEEDED
    return _follower(args, api).follow_run(run_id)


def _check_sample_keys(keys: Sequence[str]) -> None:
    """`<tenant>/<sample_id>`, refused here with the reason rather than by the server."""
    for key in keys:
        try:
            split_partition_key(key)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc


def _cmd_sample(args: argparse.Namespace) -> int:
    _check_sample_keys([args.partition])
    return _run_and_follow(args, args.job, args.partition, "sample")


def _cmd_tune(args: argparse.Namespace) -> int:
    return _run_and_follow(args, args.job, None, "tune")


def _cmd_job(args: argparse.Namespace) -> int:
    return _run_and_follow(args, args.job_name, args.partition, "job")


def _cmd_backfill(args: argparse.Namespace) -> int:
    if not args.partitions and not args.all:
        raise UsageError("name the partitions to backfill (tenant/sample_id ...) or pass --all")
    if args.partitions and args.all:
        raise UsageError("pass partitions or --all, not both")
    if args.job == "sample_pipeline":
        _check_sample_keys(args.partitions)
    api = DagsterApi(Endpoint.from_args(args))
    location, repository = api.find_job(args.job, args.location, args.repository)
    assets = api.job_asset_keys(args.job, location, repository)
    if not assets:
        raise UsageError(f"job {args.job!r} has no partitioned assets to backfill")
    tags = {**_audit_tags("backfill"), **_tags(args.tag)}
    which = f"{len(args.partitions)} partition(s)" if args.partitions else "all partitions"
    backfill_id = api.launch_backfill(
        assets, args.partitions or None, tags, title=f"bioscan submit backfill: {which}"
    )
    if args.no_follow:
        print(backfill_id)
        return EXIT_SUCCEEDED
    return _follower(args, api).follow_backfill(backfill_id)


def _cmd_follow(args: argparse.Namespace) -> int:
    api = DagsterApi(Endpoint.from_args(args))
    follower = _follower(args, api)
    if args.backfill:
        return follower.follow_backfill(args.id)
    return follower.follow_run(args.id)


def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as exc:
            print(f"bioscan {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ApiError as exc:
            print(f"bioscan {args.command}: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        except KeyboardInterrupt:
            print(
                f"\nbioscan {args.command}: interrupted; what was submitted goes on "
                "(bioscan follow RUN_ID)",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED

    return run


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Dagster endpoint")
    group.add_argument(
        "--url", help=f"webserver URL, e.g. https://dagster.lab.example (${URL_ENV})"
    )
    group.add_argument("--host", help="webserver host (default 127.0.0.1)")
    group.add_argument("--port", type=int, help="webserver port (default 3000)")
    group.add_argument("--https", action="store_true", help="use https with --host/--port")
    group = parser.add_argument_group("following")
    group.add_argument(
        "--poll-interval", type=float, default=2.0, metavar="S", help="seconds between polls"
    )
    group.add_argument(
        "--timeout", type=float, metavar="S", help="give up following after S seconds (exit 5)"
    )


def _add_submit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tag", action="append", metavar="KEY=VALUE", help="extra run tag (repeatable)"
    )
    parser.add_argument("--location", help="code location holding the job (if several do)")
    parser.add_argument("--repository", help="repository holding the job (if several do)")
    parser.add_argument(
        "--no-follow", action="store_true", help="print the run/backfill id and return at once"
    )
    _add_endpoint_options(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    submit = subparsers.add_parser(
        "submit",
        help="submit a run or backfill to a deployed Dagster and follow it to the end",
        description=(
            "Submit work to a deployed bioscan Dagster instance through its GraphQL API and\n"
            "follow it: every status and step change is printed, and the exit status tells\n"
            "how it ended (0 only on success)."
        ),
        epilog=(
            "examples:\n"
            "  bioscan submit sample acme-lab/S001 --url https://dagster.lab.example\n"
            "  bioscan submit backfill acme-lab/S001 acme-lab/S002 reef-survey/REEF-07\n"
            "  bioscan submit backfill --all --timeout 7200\n"
            "  bioscan submit tune\n"
            "  RUN=$(bioscan submit sample acme-lab/S001 --no-follow) && bioscan follow $RUN\n\n"
            + EXIT_CODES_HELP
        ),
        formatter_class=fmt,
    )
    kinds = submit.add_subparsers(dest="what", metavar="WHAT", required=True)

    sample = kinds.add_parser(
        "sample",
        help="one sample partition through sample_pipeline",
        description="Run sample_pipeline (raw_sequences -> vector_index) for one sample.",
        epilog="example:\n  bioscan submit sample acme-lab/S001\n\n" + EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    sample.add_argument("partition", metavar="TENANT/SAMPLE_ID", help="the sample partition key")
    sample.add_argument("--job", default="sample_pipeline", help=argparse.SUPPRESS)
    _add_submit_options(sample)
    sample.set_defaults(handler=_guard(_cmd_sample))

    backfill = kinds.add_parser(
        "backfill",
        help="a backfill of several (or all) sample partitions",
        description=(
            "Launch a Dagster asset backfill of the job's partitioned assets for the given\n"
            "samples (or --all). It shows under Backfills in the UI, honours each asset's\n"
            "backfill policy (embeddings batch up to 20 samples per run) and the instance's\n"
            "concurrency limits; it succeeds only when every partition materialised."
        ),
        epilog=(
            "examples:\n"
            "  bioscan submit backfill acme-lab/S001 acme-lab/S002\n"
            "  bioscan submit backfill --all --no-follow\n\n" + EXIT_CODES_HELP
        ),
        formatter_class=fmt,
    )
    backfill.add_argument("partitions", nargs="*", metavar="TENANT/SAMPLE_ID")
    backfill.add_argument("--all", action="store_true", help="every known sample partition")
    backfill.add_argument("--job", default="sample_pipeline", help="job whose assets to backfill")
    _add_submit_options(backfill)
    backfill.set_defaults(handler=_guard(_cmd_backfill))

    tune = kinds.add_parser(
        "tune",
        help="a tune_and_evaluate run (LoRA adapter + evaluation report)",
        description="Run tune_and_evaluate: tune the LoRA adapter, then write the evaluation report.",
        epilog=(
            "examples:\n  bioscan submit tune\n  bioscan submit tune --config tune.yaml\n\n"
            + EXIT_CODES_HELP
        ),
        formatter_class=fmt,
    )
    tune.add_argument("--config", metavar="FILE", help="run config (YAML or JSON)")
    tune.add_argument("--job", default="tune_and_evaluate", help=argparse.SUPPRESS)
    _add_submit_options(tune)
    tune.set_defaults(handler=_guard(_cmd_tune))

    job = kinds.add_parser(
        "job",
        help="any job by name (optionally one partition)",
        description="Run any job of the deployment, optionally for one partition.",
        epilog=(
            "example:\n  bioscan submit job retention --config retention.yaml\n\n" + EXIT_CODES_HELP
        ),
        formatter_class=fmt,
    )
    job.add_argument("job_name", metavar="JOB")
    job.add_argument("--partition", help="partition key (sets the dagster/partition tag)")
    job.add_argument("--config", metavar="FILE", help="run config (YAML or JSON)")
    _add_submit_options(job)
    job.set_defaults(handler=_guard(_cmd_job))

    follow = subparsers.add_parser(
        "follow",
        help="follow a run (or --backfill) to the end",
        description="Follow a run or backfill already submitted, until it ends.",
        epilog=(
            "examples:\n"
            "  bioscan follow 3c5e8d1a-...\n"
            "  bioscan follow --backfill vkvgoqlz --timeout 3600\n\n" + EXIT_CODES_HELP
        ),
        formatter_class=fmt,
    )
    follow.add_argument("id", metavar="RUN_ID", help="run id (or backfill id with --backfill)")
    follow.add_argument("--backfill", action="store_true", help="ID is a backfill id")
    _add_endpoint_options(follow)
    follow.set_defaults(handler=_guard(_cmd_follow))


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (the `bioscan` CLI registers this module as well)."""
    parser = argparse.ArgumentParser(prog="bioscan")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
