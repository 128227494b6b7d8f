"""Following a submitted run or backfill to its end, printing each status and step change.

The exit code a follower returns says how the work ended (see `bioscan submit --help`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from bioscan_assets.commands.graphql_client import DagsterApi, first_line

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_CANCELED = 3
EXIT_TIMEOUT = 5

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
                self.say(f"  backfill error: {first_line(progress['error']['message'])}")
            for run_id in failed_runs:
                for line in self.api.run_failures(run_id):
                    self.say(f"  run {run_id[:8]}: {line}")
            self.say(f"backfill {backfill_id}: failed ({summary})")
            return EXIT_FAILED
        self.say(f"backfill {backfill_id}: succeeded ({summary})")
        return EXIT_SUCCEEDED
