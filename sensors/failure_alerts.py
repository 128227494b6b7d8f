"""`failure_alerts_sensor`: every failed run leaves a record under `<storage>/alerts/` and, when
`BIOSCAN_ALERT_WEBHOOK` is set, a message on that Slack-compatible webhook.

It watches every run on the instance: runs started outside the webserver and daemon
(`dagster job execute`, the demo's in-process runs) carry no code location, so a sensor scoped
to this location would never see them fail. What goes out is built in `core.governance.alerts`,
which masks sequences; this module only reads the run, its failed steps and its error classes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from bioscan_resources.storage import StorageResource
from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from bioscan_assets.core.governance.alerts import (
    FailedRun,
    StepFailure,
    post_webhook,
    run_url,
    slack_payload,
    write_alert,
)

SENSOR_NAME = "failure_alerts_sensor"
WEBHOOK_ENV = "BIOSCAN_ALERT_WEBHOOK"
WEBSERVER_ENV = "DAGSTER_WEBSERVER_URL"


def _innermost(error: Any) -> tuple[str, str]:
    """(class, message) of the exception under Dagster's wrappers (retries, step errors, and a
    `Failure` raised from another error: a DropError says more than Failure); `error` is
    Dagster's SerializableErrorInfo (not public API, so read by attribute only)."""
    while error is not None and error.cause is not None:
        name = error.cls_name or ""
        if not (name == "Failure" or name.startswith(("Dagster", "RetryRequested"))):
            break
        error = error.cause
    if error is None:
        return "", ""
    cls_name, message = error.cls_name or "", (error.message or "").strip()
    head, sep, rest = message.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == cls_name:
        message = rest  # "ValueError: x" or "dagster...Failure: x" -> "x"
    return cls_name, message


def _partition(tags: dict[str, str]) -> str | None:
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    return f"{start}...{end}" if start and end else None


def failed_run(context: RunFailureSensorContext) -> FailedRun:
    """The failed run as plain data: job, partition, failed steps, error classes, run URL."""
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        data = event.event_specific_data
        cls_name, message = _innermost(getattr(data, "error", None))
        failure = getattr(data, "user_failure_data", None)
        if failure is not None and failure.description:
            message = failure.description
        steps.append(StepFailure(event.step_key or "", cls_name, message))
    run_class, run_message = _innermost(
        getattr(context.failure_event.event_specific_data, "error", None)
    )
    record = context.instance.get_run_record_by_id(run.run_id)
    ended = record.end_time if record is not None and record.end_time else None
    tags = dict(run.tags)
    return FailedRun(
        run_id=run.run_id,
        job=run.job_name,
        run_url=run_url(os.environ.get(WEBSERVER_ENV), run.run_id),
        failed_at=datetime.fromtimestamp(ended, UTC) if ended else datetime.now(UTC),
        partition=_partition(tags),
        steps=tuple(steps),
        error_class=steps[0].error_class if steps else run_class,
        message=steps[0].message if steps else (run_message or context.failure_event.message or ""),
        tags={k: v for k, v in tags.items() if k.startswith("bioscan/")},
    )


@run_failure_sensor(
    name=SENSOR_NAME,
    monitor_all_code_locations=True,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Records every failed run (job, partition, failed steps, error classes, run "
    f"URL) under <storage>/alerts/<day>/<run_id>.json and posts it to ${WEBHOOK_ENV} (a "
    "Slack-compatible incoming webhook) when set. Never includes sequences.",
)
def failure_alerts_sensor(context: RunFailureSensorContext, storage: StorageResource) -> None:
    failed = failed_run(context)
    store = storage.output_store()
    record = store.url(write_alert(store, failed))
    context.log.info(f"run {failed.run_id} of {failed.job} failed; alert recorded at {record}")
    webhook = os.environ.get(WEBHOOK_ENV, "").strip()
    if not webhook:
        return
    try:
        post_webhook(webhook, slack_payload(failed, record))
    except Exception as exc:  # the tick shows it; the URL (a secret) stays out of the message
        raise RuntimeError(
            f"alert for run {failed.run_id} recorded at {record}, but posting it to "
            f"${WEBHOOK_ENV} failed: {type(exc).__name__}: {exc}"
        ) from None
