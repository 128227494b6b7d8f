"""The whole code location as plain data, compared with a reviewed snapshot.

Any change to an asset's key, lineage, group, kinds, owners, partitions, tags, pool, code
version, backfill policy or automation condition, to a check, a job, a sensor or a schedule
shows up as a diff of `__snapshots__/test_graph_snapshot/*.json`. When the change is meant,
refresh it with `pytest tests/unit/test_graph_snapshot.py --snapshot-update` and review the diff.
"""

from __future__ import annotations

from typing import Any

import pytest
from dagster import AssetKey, Definitions
from syrupy.extensions.json import JSONSnapshotExtension

from bioscan_assets.definitions import defs


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def _key(key: AssetKey) -> str:
    return key.to_user_string()


def _partitions(partitions_def: Any) -> str | None:
    if partitions_def is None:
        return None
    return getattr(partitions_def, "name", None) or type(partitions_def).__name__


def _assets(definitions: Definitions) -> dict[str, Any]:
    graph = definitions.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        condition = node.automation_condition
        policy = node.backfill_policy
        out[_key(key)] = {
            "deps": sorted(_key(parent) for parent in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "partitions": _partitions(node.partitions_def),
            # kinds are listed above; the dagster/kind/* tags only repeat them
            "tags": {
                k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")
            },
            "pools": sorted(node.pools),
            # which ops ask for a pod spec (values are deployment knobs, see test_k8s_config)
            "op_tags": sorted(node.assets_def.op.tags) if node.is_executable else [],
            "code_version": node.code_version,
            "backfill_policy": None
            if policy is None
            else {
                "type": policy.policy_type.value,
                "max_partitions_per_run": policy.max_partitions_per_run,
            },
            "automation_condition": None
            if condition is None
            else (condition.get_label() or condition.name),
        }
    return out


def _checks(definitions: Definitions) -> list[dict[str, Any]]:
    graph = definitions.resolve_asset_graph()
    specs = [graph.get_check_spec(key) for key in graph.asset_check_keys]
    return sorted(
        (
            {"asset": _key(spec.asset_key), "name": spec.name, "blocking": spec.blocking}
            for spec in specs
        ),
        key=lambda check: (check["asset"], check["name"]),
    )


def _jobs(definitions: Definitions) -> dict[str, Any]:
    out = {}
    for job in sorted(definitions.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):  # Dagster's implicit all-assets job
            continue
        assets = sorted(_key(k) for k in job.asset_layer.executable_asset_keys)
        checks = sorted(
            f"{_key(k.asset_key)}:{k.name}" for k in job.asset_layer.asset_graph.asset_check_keys
        )
        selection = (
            {"assets": assets, "checks": checks}
            if assets
            else {"ops": sorted(node.name for node in job.nodes)}
        )
        out[job.name] = {
            "selection": selection,
            "partitions": _partitions(job.partitions_def),
            "tags": dict(sorted(job.tags.items())),
        }
    return out


def _sensors(definitions: Definitions) -> dict[str, Any]:
    return {
        sensor.name: {
            "type": sensor.sensor_type.value,
            "jobs": sorted(target.job_name for target in sensor.targets),
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value,
        }
        for sensor in sorted(definitions.sensors or [], key=lambda s: s.name)
    }


def _schedules(definitions: Definitions) -> dict[str, Any]:
    return {
        schedule.name: {
            "job": schedule.job_name,
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "default_status": schedule.default_status.value,
        }
        for schedule in sorted(definitions.schedules or [], key=lambda s: s.name)
    }


def graph_summary(definitions: Definitions) -> dict[str, Any]:
    """Everything a reviewer should see change, as sorted JSON-able data."""
    return {
        "assets": _assets(definitions),
        "asset_checks": _checks(definitions),
        "jobs": _jobs(definitions),
        "sensors": _sensors(definitions),
        "schedules": _schedules(definitions),
    }


def test_asset_graph_matches_the_snapshot(snapshot_json) -> None:
    assert graph_summary(defs) == snapshot_json
