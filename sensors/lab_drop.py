"""`lab_drop_sensor`: every complete, valid lab drop becomes a `samples` partition and a run.

The scanning logic is plain Python in `core.drop_scan`; this module turns its decisions into
partitions, run requests, logs and the cursor. Runs by default so `dagster dev` and the daemon
pick drops up without a click; switch it off in the UI when the landing area is not ready.
"""

from __future__ import annotations

from bioscan_resources.storage import StorageResource
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from bioscan_assets.core.ingest import scan as drop_scan
from bioscan_assets.partitions import samples_partitions, tenants_partitions

SENSOR_NAME = "lab_drop_sensor"
JOB_NAME = "sample_pipeline"
_LOGGED_KEYS = 20


def run_key(partition: str, manifest_sha256: str) -> str:
    """Same drop, same key (Dagster never launches it twice); a changed sample.json, a new key."""
    return f"{partition}:{manifest_sha256[:16]}"


def build_lab_drop_sensor(
    *,
    name: str = SENSOR_NAME,
    job_name: str = JOB_NAME,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    max_drops_per_tick: int = drop_scan.DEFAULT_MAX_DROPS,
    time_budget_s: float = drop_scan.DEFAULT_TIME_BUDGET_S,
    checksum_max_bytes: int | None = drop_scan.DEFAULT_CHECKSUM_MAX_BYTES,
) -> SensorDefinition:
    """The lab-drop sensor with its per-tick budget; tests build one with a small budget."""

    @sensor(
        name=name,
        job_name=job_name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Scans the landing area for <tenant>/<sample_id>/sample.json; each complete, valid "
            "drop adds a `samples` partition and requests one sample_pipeline run per manifest "
            "version. Invalid drops are recorded once under <storage>/quarantine/."
        ),
    )
    def _lab_drop_sensor(
        context: SensorEvaluationContext, storage: StorageResource
    ) -> SensorResult:
        output = storage.output_store()
        state, warning = drop_scan.load_state(output, context.cursor)
        if warning:
            context.log.warning(warning)
        result = drop_scan.scan_landing(
            storage.landing_store(),
            output,
            state,
            max_drops=max_drops_per_tick,
            time_budget_s=time_budget_s,
            checksum_max_bytes=checksum_max_bytes,
            sensor_name=name,
        )

        for item in result.quarantined:
            context.log.warning(f"quarantined {item.folder}: {item.reason} (record {item.record})")
        for error in result.errors:
            context.log.warning(f"storage error, retried next tick: {error}")
        known: set[str] = set()
        if result.accepted:
            known = set(context.instance.get_dynamic_partitions(samples_partitions.name))
        new_partitions: list[str] = []
        run_requests: list[RunRequest] = []
        for accepted in result.accepted:
            drop = accepted.drop
            partition = drop.partition_key
            if partition not in known:
                new_partitions.append(partition)
                known.add(partition)
            if accepted.released:
                context.log.info(f"released {partition} from quarantine: sample.json is now valid")
            tags = {
                "bioscan/tenant": drop.tenant,
                "bioscan/sample_id": drop.sample_id,
                "bioscan/trigger": "sensor",
                "bioscan/manifest_sha256": drop.manifest_sha256,
                "bioscan/checksums": "verified" if accepted.checksums_verified else "deferred",
            }
            run_requests.append(
                RunRequest(
                    run_key=run_key(partition, drop.manifest_sha256),
                    partition_key=partition,
                    tags=tags,
                )
            )

        if run_requests:
            shown = ", ".join(r.run_key or "" for r in run_requests[:_LOGGED_KEYS])
            more = len(run_requests) - _LOGGED_KEYS
            context.log.info(
                f"requesting {len(run_requests)} run(s): {shown}"
                + (f" and {more} more" if more > 0 else "")
            )
        if result.pending or result.processed:
            context.log.info(
                f"{result.listed} drop(s) listed, {result.processed} checked this tick, "
                f"{len(result.quarantined)} quarantined, {len(result.errors)} storage error(s), "
                f"{result.pending} left for later ticks"
            )
        digest = drop_scan.save_state(output, result.state, context.cursor)
        return SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=(
                [
                    samples_partitions.build_add_request(new_partitions),
                    # a tenant's per-tenant views (cohort_report) get their partition with its
                    # first sample; adding a known tenant again changes nothing
                    tenants_partitions.build_add_request(
                        sorted({key.split("/", 1)[0] for key in new_partitions})
                    ),
                ]
                if new_partitions
                else []
            ),
            cursor=drop_scan.make_cursor(digest, result),
        )

    return _lab_drop_sensor


lab_drop_sensor = build_lab_drop_sensor()
