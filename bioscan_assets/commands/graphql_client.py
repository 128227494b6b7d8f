"""The Dagster GraphQL endpoint as `bioscan submit`/`follow` use it: where it is, what it is asked.

Submissions go through `dagster_graphql.DagsterGraphQLClient`; the queries that client has no
method for are plain GraphQL documents posted to the same endpoint (validated in tests).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# requests and dagster_graphql (~1 s to import) load inside DagsterApi: `bioscan --help` stays light.

URL_ENV = "DAGSTER_GRAPHQL_URL"
DEFAULT_URL = "http://127.0.0.1:3000"

# GraphQL documents the client library has no method for (checked against the schema in tests).
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
                    lines.append(f"step {event['stepKey']} failed: {first_line(error)}")
                elif kind == "RunFailureEvent":
                    lines.append(f"run failed: {first_line(error or event.get('message', ''))}")
                elif kind == "EngineEvent" and error:
                    lines.append(f"{first_line(event.get('message', ''))}: {first_line(error)}")
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


def first_line(text: str, limit: int = 400) -> str:
    line = next((s.strip() for s in text.strip().splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"
