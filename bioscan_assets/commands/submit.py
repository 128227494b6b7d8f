"""`bioscan submit` / `bioscan follow`: launch work on a deployed Dagster and follow it to the end.

For lab scripts and CI, which have no browser: the run (or backfill) is submitted through
Dagster's GraphQL API (`dagster_graphql.DagsterGraphQLClient`), then polled until it finishes,
printing each status and step change, and the exit code says how it ended.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELED = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130

URL_ENV = "DAGSTER_GRAPHQL_URL"
DEFAULT_URL = "http://127.0.0.1:3000"

# Dagster RunStatus -> the word a person reads
RUN_STATUS_WORDS = {
    "QUEUED": "queued",
    "NOT_STARTED": "queued",
    "STARTING": "starting",
    "STARTED": "running",
    "MANAGED": "running",
    "CANCELING": "canceling",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "CANCELED": "canceled",
}
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
STEP_STATUS_WORDS = {
    None: "waiting",
    "IN_PROGRESS": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "SKIPPED": "skipped",
}
BACKFILL_IN_PROGRESS = {"REQUESTED", "CANCELING", "FAILING"}

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

# ------------------------------------------------------------------------------------------------
# GraphQL documents the client library has no method for (checked against the schema in tests).
# ------------------------------------------------------------------------------------------------
REPOSITORIES_QUERY = """
query BioscanRepositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name isAssetJob } }
    }
    ... on PythonError { message }
  }
}
"""

JOB_ASSETS_QUERY = """
query BioscanJobAssets($selector: PipelineSelector!) {
  assetNodes(pipeline: $selector) { assetKey { path } isPartitioned }
}
"""

RUN_PROGRESS_QUERY = """
query BioscanRunProgress($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId
      jobName
      status
      startTime
      endTime
      tags { key value }
      stepStats { stepKey status startTime endTime }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

RUN_FAILURES_QUERY = """
query BioscanRunFailures($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey message error { message } }
        ... on RunFailureEvent { message error { message } }
        ... on EngineEvent { message error { message } }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

LAUNCH_BACKFILL_MUTATION = """
mutation BioscanLaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId launchedRunIds }
    ... on PartitionKeysNotFoundError { message partitionKeys }
    ... on Error { message }
  }
}
"""

BACKFILL_PROGRESS_QUERY = """
query BioscanBackfillProgress($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id
      status
      numPartitions
      isAssetBackfill
      error { message }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
      runs(limit: 1000) { runId status tags { key value } }
    }
    ... on BackfillNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


class ApiError(Exception):
    """The endpoint could not be reached, or answered with an error (exit 4)."""


class UsageError(Exception):
    """Arguments that cannot work, found before anything is submitted (exit 2)."""


@dataclass(frozen=True)
class Endpoint:
    hostname: str
    port: int | None
    use_https: bool
    path_prefix: str = ""

    @property
    def base_url(self) -> str:
        scheme = "https" if self.use_https else "http"
        netloc = f"{self.hostname}:{self.port}" if self.port else self.hostname
        return f"{scheme}://{netloc}{self.path_prefix}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"{url!r} is not an http(s)://host[:port][/prefix] URL")
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/graphql"):
            prefix = prefix[: -len("/graphql")]
        return cls(parts.hostname, parts.port, parts.scheme == "https", prefix)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Endpoint:
        if args.url:
            return cls.parse(args.url)
        if args.host is None and args.port is None and os.environ.get(URL_ENV):
            return cls.parse(os.environ[URL_ENV])
        default = cls.parse(DEFAULT_URL)
        return cls(
            args.host or default.hostname,
            args.port if args.port is not None else default.port,
            bool(args.https),
        )


class DagsterApi:
    """Submissions through `DagsterGraphQLClient`; the queries it lacks go to the same endpoint."""

    def __init__(self, endpoint: Endpoint, timeout: float = 60.0):
        import requests
        from dagster_graphql import DagsterGraphQLClient

        self.endpoint = endpoint
        self._timeout = timeout
        self._session = requests.Session()
        self.client = DagsterGraphQLClient(
            endpoint.hostname,
            port_number=endpoint.port,
            use_https=endpoint.use_https,
            path_prefix=endpoint.path_prefix,
            timeout=int(timeout),
        )

    def query(self, document: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        import requests

        try:
            response = self._session.post(
                self.endpoint.graphql_url,
                json={"query": document, "variables": dict(variables or {})},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise ApiError(f"cannot reach {self.endpoint.graphql_url}: {exc}") from exc
        if response.status_code != 200:
            raise ApiError(
                f"{self.endpoint.graphql_url} answered HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        payload = response.json()
        if payload.get("errors"):
            messages = "; ".join(e.get("message", str(e)) for e in payload["errors"])
            raise ApiError(f"GraphQL error from {self.endpoint.graphql_url}: {messages}")
        return payload["data"]

    def find_job(self, job: str, location: str | None, repository: str | None) -> tuple[str, str]:
        """(location, repository) holding `job`; refuses an ambiguous or unknown name."""
        result = self.query(REPOSITORIES_QUERY)["repositoriesOrError"]
        if result["__typename"] != "RepositoryConnection":
            raise ApiError(f"cannot list code locations: {result.get('message')}")
        matches = [
            (node["location"]["name"], node["name"])
            for node in result["nodes"]
            if any(j["name"] == job for j in node["jobs"])
            and location in (None, node["location"]["name"])
            and repository in (None, node["name"])
        ]
        if not matches:
            raise UsageError(f"no job named {job!r} in the deployment at {self.endpoint.base_url}")
        if len(matches) > 1:
            raise UsageError(f"job {job!r} is in several code locations {matches}: pass --location")
        return matches[0]

    def submit_run(
        self,
        job: str,
        *,
        location: str,
        repository: str,
        tags: Mapping[str, str],
        run_config: Mapping[str, Any] | None = None,
    ) -> str:
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return self.client.submit_job_execution(
                job,
                repository_location_name=location,
                repository_name=repository,
                run_config=dict(run_config or {}),
                tags=dict(tags),
            )
        except DagsterGraphQLClientError as exc:
            raise ApiError(f"submitting {job}: {_client_error(exc)}") from exc

    def job_asset_keys(self, job: str, location: str, repository: str) -> list[list[str]]:
        selector = {
            "pipelineName": job,
            "repositoryName": repository,
            "repositoryLocationName": location,
        }
        nodes = self.query(JOB_ASSETS_QUERY, {"selector": selector})["assetNodes"]
        return [node["assetKey"]["path"] for node in nodes if node["isPartitioned"]]

    def launch_backfill(
        self,
        asset_keys: Sequence[Sequence[str]],
        partitions: Sequence[str] | None,
        tags: Mapping[str, str],
        title: str,
    ) -> str:
        params: dict[str, Any] = {
            "assetSelection": [{"path": list(key)} for key in asset_keys],
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
            "title": title,
        }
        if partitions:
            params["partitionNames"] = list(partitions)
        else:
            params["allPartitions"] = True
        result = self.query(LAUNCH_BACKFILL_MUTATION, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            missing = result.get("partitionKeys")
            detail = f" (unknown partitions: {', '.join(missing)})" if missing else ""
            raise ApiError(
                f"backfill refused: {result['__typename']}: {result.get('message')}{detail}"
            )
        return result["backfillId"]

    def run_status(self, run_id: str) -> str:
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return self.client.get_run_status(run_id).value
        except DagsterGraphQLClientError as exc:
            raise ApiError(f"run {run_id}: {_client_error(exc)}") from exc

    def run_progress(self, run_id: str) -> dict[str, Any]:
        result = self.query(RUN_PROGRESS_QUERY, {"runId": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise ApiError(f"run {run_id}: {result['__typename']}: {result.get('message')}")
        return result

    def run_failures(self, run_id: str) -> list[str]:
        """One line per failed step or failed run, from the run's event log."""
        lines: list[str] = []
        cursor = None
        for _ in range(50):  # at most 50k events
            result = self.query(RUN_FAILURES_QUERY, {"runId": run_id, "cursor": cursor})
            conn = result["logsForRun"]
            if conn["__typename"] != "EventConnection":
                return [f"(cannot read the event log: {conn.get('message')})"]
            for event in conn["events"]:
                kind = event["__typename"]
                error = (event.get("error") or {}).get("message") or ""
                if kind == "ExecutionStepFailureEvent":
                    lines.append(f"step {event['stepKey']} failed: {_first_line(error)}")
                elif kind == "RunFailureEvent":
                    lines.append(f"run failed: {_first_line(error or event.get('message', ''))}")
                elif kind == "EngineEvent" and error:
                    lines.append(f"{_first_line(event.get('message', ''))}: {_first_line(error)}")
            cursor = conn["cursor"]
            if not conn["hasMore"]:
                break
        return lines

    def backfill_progress(self, backfill_id: str) -> dict[str, Any]:
        variables = {"backfillId": backfill_id}
        result = self.query(BACKFILL_PROGRESS_QUERY, variables)["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise ApiError(
                f"backfill {backfill_id}: {result['__typename']}: {result.get('message')}"
            )
        return result


def _client_error(exc: Exception) -> str:
    parts = [str(a) for a in getattr(exc, "args", ()) if a]
    body = getattr(exc, "body", None)
    if body:
        parts.append(str(body))
    return ": ".join(parts) or repr(exc)


def _first_line(text: str, limit: int = 400) -> str:
    line = next((s.strip() for s in text.strip().splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


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
    import yaml

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


# ------------------------------------------------------------------------------------------------
# Following
# ------------------------------------------------------------------------------------------------
@dataclass
class Follower:
    api: DagsterApi
    out: TextIO | None = None  # None: sys.stdout at the time of printing
    poll_interval: float = 2.0
    timeout: float | None = None
    sleep: Callable[[float], None] = time.sleep
    _started: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self._started
        print(f"[{elapsed:6.0f}s] {message}", file=self.out or sys.stdout, flush=True)

    def _timed_out(self) -> bool:
        return self.timeout is not None and time.monotonic() - self._started > self.timeout

    def follow_run(self, run_id: str) -> int:
        self.say(f"run {run_id}: {self.api.endpoint.base_url}/runs/{run_id}")
        last_status = None
        steps: dict[str, str | None] = {}
        while True:
            progress = self.api.run_progress(run_id)
            status = progress["status"]
            if status != last_status:
                tags = {t["key"]: t["value"] for t in progress["tags"]}
                partition = tags.get("dagster/partition")
                where = f"{progress['jobName']}" + (f" [{partition}]" if partition else "")
                self.say(f"run {run_id[:8]} ({where}): {RUN_STATUS_WORDS.get(status, status)}")
                last_status = status
            for step in sorted(progress["stepStats"], key=lambda s: s["startTime"] or 0):
                key, step_status = step["stepKey"], step["status"]
                if steps.get(key, "unseen") != step_status:
                    steps[key] = step_status
                    word = STEP_STATUS_WORDS.get(step_status, str(step_status).lower())
                    took = ""
                    if step["endTime"] and step["startTime"]:
                        took = f" in {step['endTime'] - step['startTime']:.1f} s"
                    self.say(f"  step {key}: {word}{took}")
            if status in TERMINAL_RUN_STATUSES:
                return self._finish_run(run_id, progress)
            if self._timed_out():
                word = RUN_STATUS_WORDS.get(status, status)
                self.say(
                    f"run {run_id}: still {word} after {self.timeout:.0f} s; it goes on "
                    f"(follow it with: bioscan follow {run_id})"
                )
                return EXIT_TIMEOUT
            self.sleep(self.poll_interval)

    def _finish_run(self, run_id: str, progress: dict[str, Any]) -> int:
        # the client's own status call decides the exit code
        status = self.api.run_status(run_id)
        took = ""
        if progress.get("startTime") and progress.get("endTime"):
            took = f" in {progress['endTime'] - progress['startTime']:.1f} s"
        if status == "SUCCESS":
            self.say(f"run {run_id}: succeeded{took}")
            return EXIT_SUCCEEDED
        if status == "CANCELED":
            self.say(f"run {run_id}: canceled{took}")
            return EXIT_CANCELED
        for line in self.api.run_failures(run_id):
            self.say(f"  {line}")
        self.say(f"run {run_id}: failed{took}")
        return EXIT_FAILED

    def follow_backfill(self, backfill_id: str) -> int:
        self.say(f"backfill {backfill_id}: {self.api.endpoint.base_url}/runs/b/{backfill_id}")
        last_status = None
        last_counts: dict[str, tuple[int, int, int, int]] = {}
        runs: dict[str, str] = {}
        while True:
            progress = self.api.backfill_progress(backfill_id)
            status = progress["status"]
            if status != last_status:
                size = progress.get("numPartitions")
                self.say(
                    f"backfill {backfill_id}: {status.lower().replace('_', ' ')}"
                    + (f" ({size} partitions)" if size is not None else "")
                )
                last_status = status
            data = progress.get("assetBackfillData") or {}
            for item in data.get("assetBackfillStatuses") or []:
                if item["__typename"] != "AssetPartitionsStatusCounts":
                    continue
                asset = "/".join(item["assetKey"]["path"])
                counts = (
                    item["numPartitionsMaterialized"],
                    item["numPartitionsTargeted"],
                    item["numPartitionsInProgress"],
                    item["numPartitionsFailed"],
                )
                if last_counts.get(asset) != counts:
                    last_counts[asset] = counts
                    done, total, running, failed = counts
                    self.say(
                        f"  {asset}: {done}/{total} materialized, {running} in progress, "
                        f"{failed} failed"
                    )
            for run in progress["runs"]:
                if runs.get(run["runId"]) != run["status"]:
                    runs[run["runId"]] = run["status"]
                    tags = {t["key"]: t["value"] for t in run["tags"]}
                    label = tags.get("dagster/partition") or tags.get(
                        "dagster/asset_partition_range_start", ""
                    )
                    self.say(
                        f"  run {run['runId'][:8]} {label}: "
                        f"{RUN_STATUS_WORDS.get(run['status'], run['status'])}"
                    )
            active = any(s not in TERMINAL_RUN_STATUSES for s in runs.values())
            if status not in BACKFILL_IN_PROGRESS and not active:
                return self._finish_backfill(backfill_id, progress, runs, last_counts)
            if self._timed_out():
                self.say(
                    f"backfill {backfill_id}: still {status.lower()} after {self.timeout:.0f} s; "
                    f"it goes on (follow it with: bioscan follow --backfill {backfill_id})"
                )
                return EXIT_TIMEOUT
            self.sleep(self.poll_interval)

    def _finish_backfill(
        self,
        backfill_id: str,
        progress: dict[str, Any],
        runs: dict[str, str],
        counts: dict[str, tuple[int, int, int, int]],
    ) -> int:
        status = progress["status"]
        failed_runs = [run_id for run_id, s in runs.items() if s == "FAILURE"]
        failed_partitions = sum(c[3] for c in counts.values())
        summary = f"{len(runs)} run(s), {len(failed_runs)} failed"
        if status == "CANCELED":
            self.say(f"backfill {backfill_id}: canceled ({summary})")
            return EXIT_CANCELED
        if status in ("FAILED", "COMPLETED_FAILED") or failed_runs or failed_partitions:
            if progress.get("error"):
                self.say(f"  backfill error: {_first_line(progress['error']['message'])}")
            for run_id in failed_runs:
                for line in self.api.run_failures(run_id):
                    self.say(f"  run {run_id[:8]}: {line}")
            self.say(f"backfill {backfill_id}: failed ({summary})")
            return EXIT_FAILED
        self.say(f"backfill {backfill_id}: succeeded ({summary})")
        return EXIT_SUCCEEDED


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------
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
    from bioscan_assets.core.layout import split_partition_key

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
