"""`retention_schedule`: the `retention` job once a day (03:30 UTC, after the nightly backfills)."""

from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition

from bioscan_assets.assets.provenance import bioscan_run_tags
from bioscan_assets.assets.retention import RETENTION_OP, retention_job

retention_schedule = ScheduleDefinition(
    name="retention_schedule",
    job=retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    run_config={"ops": {RETENTION_OP: {"config": {"dry_run": False}}}},
    tags=bioscan_run_tags("schedule"),
    default_status=DefaultScheduleStatus.RUNNING,
    description="Expire intermediates per config/retention.yaml (lineage-aware; see the "
    "`retention` job). Stop it in the UI to pause retention.",
)
