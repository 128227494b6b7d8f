"""A backfill batch of `sample_pipeline`: several partitions in one run, a bad one failing alone."""

from __future__ import annotations

import warnings

import pytest
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.vector_store import VectorStoreResource
from dagster import AssetKey, DagsterInstance, Definitions

from bioscan_assets.assets.batch import SAMPLE_BACKFILL
from bioscan_assets.assets.embed import embed_checks, sequence_embeddings
from bioscan_assets.assets.index import index_checks, vector_index
from bioscan_assets.assets.ingest import ingest_assets, ingest_checks
from bioscan_assets.core.storage import Store
from bioscan_assets.demo import DEMO_LANDING, stage_drops
from bioscan_assets.jobs import SAMPLE_ASSETS, sample_pipeline
from bioscan_assets.partitions import samples_partitions
from tests.helpers import write_drop

pytestmark = pytest.mark.integration

BAD = "acme-lab/BROKEN-01"


def _defs(tmp_path) -> Definitions:
    return Definitions(
        assets=[*ingest_assets, sequence_embeddings, vector_index],
        asset_checks=[*ingest_checks, *embed_checks, *index_checks],
        jobs=[sample_pipeline],
        resources={
            "storage": StorageResource(
                landing=str(tmp_path / "landing"), storage=str(tmp_path / "storage")
            ),
            "accelerator": AcceleratorResource(
                model="tiny", compilation_cache=str(tmp_path / "jit")
            ),
            "vector_store": VectorStoreResource(),
        },
    )


def _run_range(defs: Definitions, instance: DagsterInstance, first: str, last: str):
    return defs.resolve_job_def("sample_pipeline").execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )


def test_every_sample_asset_shares_the_batch_policy(tmp_path) -> None:
    defs = _defs(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Dagster warns when the policies differ
        job = defs.resolve_job_def("sample_pipeline")
    graph = defs.resolve_asset_graph()
    assert {str(graph.get(AssetKey(a)).backfill_policy) for a in SAMPLE_ASSETS} == {
        str(SAMPLE_BACKFILL)
    }
    assert job.backfill_policy is not None
    assert job.backfill_policy.max_partitions_per_run == SAMPLE_BACKFILL.max_partitions_per_run


def test_a_batch_run_materialises_each_partition_and_a_bad_one_fails_alone(tmp_path) -> None:
    landing = Store(str(tmp_path / "landing"))
    good = [f"{t}/{s}" for t, s in stage_drops(DEMO_LANDING, landing)]
    # the file changed after sample.json recorded its sha256
    write_drop(landing, *BAD.split("/"), files={"reads.fasta": b">r1\nACGTACGTAC\n"})
    (tmp_path / "landing" / BAD / "reads.fasta").write_bytes(b">r1\nACGTACGTAA\n")
    keys = sorted([*good, BAD])
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(samples_partitions.name, keys)
    defs = _defs(tmp_path)

    mixed = _run_range(defs, instance, keys[0], keys[-1])
    assert not mixed.success
    failure = next(e for e in mixed.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert BAD in message and "reads.fasta" in message and f"{len(good)} materialised" in message
    failed_step = failure.step_key
    status = instance.get_status_by_partition(AssetKey(failed_step), keys, samples_partitions)
    assert {k for k, s in status.items() if s.value == "MATERIALIZED"} == set(good)
    assert status[BAD].value == "FAILED"

    # the good partitions, one run: every asset and every check, each partition reported
    batch = _run_range(defs, instance, good[0], good[-1])
    assert batch.success
    for asset in SAMPLE_ASSETS:
        partitions = {m.partition for m in batch.asset_materializations_for_node(asset)}
        assert partitions == set(good), asset
    checks = batch.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    assert {c.metadata["partitions_checked"].value for c in checks} == {len(good)}
    index = batch.asset_materializations_for_node("vector_index")[0].metadata
    assert index["batch_partitions"].value == len(good)
    assert index["rows"].value > 0 and index["model_id"].value
    assert all(key in index["partitions"].value for key in good)
    runs = instance.get_runs()
    assert len(runs) == 2
