"""The `retention` job: plan, print, and (unless `dry_run`) delete expired intermediates.

An op job rather than an asset: retention materialises nothing, it reports what it removed as
an `AssetObservation` (`expired: true`) on the partition it expired, so the UI shows it next to
the partition's materialisations; materialising the partition again supersedes it.
"""

import uuid
from datetime import UTC, datetime

from bioscan_resources.retention import RetentionResource
from bioscan_resources.storage import StorageResource
from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    MetadataValue,
    OpExecutionContext,
    Output,
    job,
    op,
)
from pydantic import Field

from bioscan_assets.assets.retry import STORAGE_RETRY
from bioscan_assets.core.governance.apply import apply_retention
from bioscan_assets.core.governance.audit import AuditLog
from bioscan_assets.core.governance.deletion import Deletion, format_plan
from bioscan_assets.core.governance.planners import plan_retention
from bioscan_assets.core.governance.policy import POLICY_NAMES

RETENTION_OP = "apply_retention"
_MAX_TABLE_ROWS = 100


class RetentionConfig(Config):
    dry_run: bool = Field(
        default=False, description="Print exactly what would be deleted and delete nothing."
    )
    only: list[str] = Field(
        default=[],
        description=f"Run only these policies (default all): {', '.join(POLICY_NAMES)}.",
    )


def _plan_table(plan: list[Deletion]) -> str:
    lines = ["| policy | target | files | versions | bytes | reason |", "|---|---|---|---|---|---|"]
    for item in plan[:_MAX_TABLE_ROWS]:
        lines.append(
            f"| {item.policy} | {item.root}:{item.target} | {len(item.files)} | "
            f"{len(item.versions)} | {item.bytes} | {item.reason.replace('|', '/')} |"
        )
    if len(plan) > _MAX_TABLE_ROWS:
        lines.append(f"| ... {len(plan) - _MAX_TABLE_ROWS} more | | | | | |")
    return "\n".join(lines)


def observation_for(item: Deletion, storage_url: str, run_id: str) -> AssetObservation | None:
    """What the UI shows for an applied deletion (None for caches outside the asset graph)."""
    if item.asset is None:
        return None
    metadata = {
        "expired": True,
        "retention/policy": item.policy,
        "retention/files": len(item.files),
        "retention/bytes": item.bytes,
        "retention/reason": MetadataValue.text(item.reason),
        "retention/run_id": run_id,
        "retention/target": MetadataValue.path(f"{storage_url}/{item.target}"),
    }
    if item.model_id:
        metadata["model_id"] = item.model_id
    if item.versions:
        metadata["retention/versions_removed"] = MetadataValue.json(list(item.versions))
        metadata["expired"] = False  # old table versions went; the index itself is current
    if item.tombstone:
        metadata["retention/tombstone"] = MetadataValue.path(f"{storage_url}/{item.tombstone}")
    return AssetObservation(
        asset_key=AssetKey(item.asset), partition=item.partition_key, metadata=metadata
    )


@op(
    name=RETENTION_OP,
    # LanceDB cleanup compacts tables: one writer per table, like vector_index
    pool="lancedb",
    retry_policy=STORAGE_RETRY,
    description="Plan retention per config/retention.yaml; delete (or in a dry run only print) "
    "every file and table version the plan lists, auditing each under <storage>/audit/.",
)
def apply_retention_op(
    context: OpExecutionContext,
    config: RetentionConfig,
    storage: StorageResource,
    retention: RetentionResource,
) -> Output[dict]:
    store = storage.output_store()
    policies = retention.policies()
    if config.only:
        policies = policies.only(config.only)
    home = retention.home_store()
    now = datetime.now(UTC)
    plan = plan_retention(store, policies, now, home=home)
    lines = format_plan(plan)
    mode = "DRY RUN: would delete" if config.dry_run else "deleting"
    # stdout (the compute log) gets every file; the event log one line per unit.
    for line in lines:
        print(f"retention {mode} {line}")
    for item in plan:
        context.log.info(
            f"{mode} {item.policy} {item.root}:{item.target}: {len(item.files)} file(s), "
            f"{len(item.versions)} version(s), {item.bytes} bytes ({item.reason})"
        )
    summary = {
        "dry_run": config.dry_run,
        "units": len(plan),
        "files": sum(len(i.files) for i in plan),
        "versions": sum(len(i.versions) for i in plan),
        "bytes": sum(i.bytes for i in plan),
    }
    metadata = {
        "dry_run": config.dry_run,
        "units": summary["units"],
        "files": summary["files"],
        "table_versions": summary["versions"],
        "bytes": summary["bytes"],
        "plan": MetadataValue.md(_plan_table(plan) if plan else "nothing to delete"),
    }
    if config.dry_run or not plan:
        return Output(summary, metadata=metadata)

    run_id = context.run.run_id or uuid.uuid4().hex
    audit = AuditLog(store, run_id, now)

    def report(item: Deletion, _record: dict) -> None:
        observation = observation_for(item, store.url(""), run_id)
        if observation is not None:
            context.log_event(observation)

    result = apply_retention(
        store, plan, audit, policies=policies, home=home, now=now, on_applied=report
    )
    summary |= {
        "applied": len(result.applied),
        "skipped": len(result.skipped),
        "lance_bytes_removed": result.lance_bytes,
    }
    for item, why in result.skipped:
        context.log.warning(f"skipped {item.root}:{item.target}: {why}")
    metadata |= {
        "applied": len(result.applied),
        "skipped": len(result.skipped),
        "bytes_deleted": result.bytes,
        "lance_bytes_removed": result.lance_bytes,
        "audit_log": MetadataValue.path(audit.location),
    }
    return Output(summary, metadata=metadata)


@job(
    name="retention",
    description="Expire intermediates whose downstream is materialised (config/retention.yaml); "
    "`dry_run: true` prints what would go. Daily via retention_schedule.",
)
def retention_job() -> None:
    apply_retention_op()
