"""sequence_embeddings through a real Dagster instance: one partition, then a multi-partition run."""

from __future__ import annotations

from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from dagster import AssetKey, DagsterInstance, Definitions, define_asset_job, materialize

from bioscan_assets.assets.embed import embed_checks, sequence_embeddings
from bioscan_assets.assets.ingest import ingest_assets
from bioscan_assets.core.storage import Store
from bioscan_assets.demo import DEMO_LANDING, stage_drops
from bioscan_assets.partitions import samples_partitions


def test_embeddings_single_and_multi_partition_runs(tmp_path) -> None:
    landing = tmp_path / "landing"
    keys = [f"{t}/{s}" for t, s in stage_drops(DEMO_LANDING, Store(str(landing)))]
    resources = {
        "storage": StorageResource(landing=str(landing), storage=str(tmp_path / "storage")),
        "accelerator": AcceleratorResource(model="tiny", compilation_cache=str(tmp_path / "jit")),
    }
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(samples_partitions.name, keys)
    for key in keys:
        result = materialize(
            ingest_assets, partition_key=key, instance=instance, resources=resources
        )
        assert result.success

    first = materialize(
        [sequence_embeddings, *embed_checks],
        partition_key=keys[0],
        instance=instance,
        resources=resources,
    )
    assert first.success
    checks = first.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    metadata = first.asset_materializations_for_node("sequence_embeddings")[0].metadata
    assert metadata["pretrained"].value is False
    assert metadata["dim"].value == 64
    assert 0 < metadata["padding_efficiency"].value <= 1

    # the backfill policy: the other partitions in ONE run, model loaded once
    job = define_asset_job("embed_range", selection=["sequence_embeddings"])
    defs = Definitions(
        assets=[*ingest_assets, sequence_embeddings],
        asset_checks=embed_checks,
        jobs=[job],
        resources=resources,
    )
    run = defs.resolve_job_def("embed_range").execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[1],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    assert run.success
    materialized = {m.partition for m in run.asset_materializations_for_node("sequence_embeddings")}
    assert materialized == set(keys[1:])
    events = instance.fetch_materializations(AssetKey("sequence_embeddings"), limit=100).records
    assert {e.asset_materialization.partition for e in events} == set(keys)
