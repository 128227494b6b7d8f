"""Storage steps retry transient failures and write nothing twice; bad input fails at once.

raw_sequences and sequence_shards run on a real Dagster instance against the GCS emulator,
reached through `tests.fault_proxy`, which fails chosen requests with 503 or a connection
reset. gcsfs retries each request itself (6 attempts); a burst of 6 failures on one request
exhausts that and fails the step, so what brings the step back is `STORAGE_RETRY`. gcsfs's
backoff sleeps (about 30 s per exhausted call) are shortened here; its attempt count is not.
"""

from __future__ import annotations

import asyncio
import time
import types
from urllib.parse import unquote

import gcsfs.retry
import pytest
from bioscan_resources.storage import StorageResource
from dagster import DagsterInstance, materialize

from bioscan_assets.assets.embed import sequence_embeddings
from bioscan_assets.assets.index import index_assets
from bioscan_assets.assets.ingest import ingest_assets, ingest_checks
from bioscan_assets.assets.retention import apply_retention_op
from bioscan_assets.assets.retry import STORAGE_RETRY
from bioscan_assets.assets.tune import tune_assets
from bioscan_assets.core.ingest.shard_reader import read_shard_manifest
from bioscan_assets.core.layout import raw_manifest, shard_dir
from bioscan_assets.core.manifests import MANIFEST_NAME
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions
from tests.fault_proxy import FaultProxy, running_proxy
from tests.helpers import write_drop

pytestmark = pytest.mark.integration

TENANT, SAMPLE = "acme-lab", "S001"
KEY = f"{TENANT}/{SAMPLE}"
GCSFS_ATTEMPTS = 6  # gcsfs.retry.retry_request's default, used by every request it makes


@pytest.fixture
def quick_gcsfs_backoff(monkeypatch) -> None:
    real_sleep = asyncio.sleep
    monkeypatch.setattr(
        gcsfs.retry, "asyncio", types.SimpleNamespace(sleep=lambda s: real_sleep(min(s, 0.02)))
    )


@pytest.fixture
def proxy(gcs_bucket, gcs_emulator, monkeypatch, quick_gcsfs_backoff):
    """The fault proxy in front of the emulator; gcsfs (via STORAGE_EMULATOR_HOST) goes to it."""
    with running_proxy(gcs_emulator.url) as running:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", running.url)
        yield running


def _run(instance: DagsterInstance, bucket: str, prefix: str):
    instance.add_dynamic_partitions(samples_partitions.name, [KEY])
    return materialize(
        [*ingest_assets, *ingest_checks],
        partition_key=KEY,
        instance=instance,
        resources={
            "storage": StorageResource(
                landing=f"gs://{bucket}/landing", storage=f"gs://{bucket}/{prefix}"
            )
        },
        raise_on_error=False,
    )


def _events(result, kind: str) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == kind]


def _data_files(store: Store) -> dict[str, str]:
    """Every raw and shard file with its sha256 (run manifests name the run, so differ)."""
    return {
        rel: store.sha256(rel)[0]
        for prefix in ("raw", "shards")
        for rel in store.list_files(prefix)
    }


def test_storage_steps_carry_the_retry_policy():
    steps = [*ingest_assets, sequence_embeddings, *index_assets, *tune_assets]
    for asset in steps:
        assert asset.op.retry_policy == STORAGE_RETRY, asset.key
    assert apply_retention_op.retry_policy == STORAGE_RETRY
    assert STORAGE_RETRY.max_retries >= 2 and STORAGE_RETRY.jitter is not None


def test_steps_survive_storage_faults_and_write_nothing_twice(gcs_bucket, proxy: FaultProxy):
    landing = Store(f"gs://{gcs_bucket}/landing")
    write_drop(landing, TENANT, SAMPLE, n_files=2)
    assert proxy.injected() == 0

    # raw_sequences: its first read of sample.json answers 503 six times in a row
    proxy.inject(
        GCSFS_ATTEMPTS,
        "503",
        lambda method, path, body: (
            method == "GET" and "landing/acme-lab/S001/sample.json" in unquote(path)
        ),
    )
    # sequence_shards: the connection drops on every try to commit the shard manifest, after
    # every part was uploaded; the retried step must reuse them, not add a second set
    shard_manifest = f"storage/{shard_dir(TENANT, SAMPLE)}/{MANIFEST_NAME}"
    proxy.inject(
        GCSFS_ATTEMPTS,
        "reset",
        lambda method, path, body: method == "POST" and shard_manifest.encode() in body,
    )
    with DagsterInstance.local_temp() as instance:
        result = _run(instance, gcs_bucket, "storage")
        assert result.success, [
            str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure
        ]
        assert proxy.injected() == 2 * GCSFS_ATTEMPTS
        retried = sorted(_events(result, "STEP_UP_FOR_RETRY"))
        assert retried == ["raw_sequences", "sequence_shards"]
        assert sorted(_events(result, "STEP_RESTARTED")) == retried
        assert _events(result, "STEP_FAILURE") == []
        # the same story in the instance's event log, as the UI shows it
        logged = [
            entry.dagster_event.event_type_value
            for entry in instance.all_logs(result.run_id)
            if entry.dagster_event is not None
        ]
        assert logged.count("STEP_RESTARTED") == 2

    out = Store(f"gs://{gcs_bucket}/storage")
    manifest = read_shard_manifest(out, TENANT, SAMPLE)
    shards = out.list_files(shard_dir(TENANT, SAMPLE))
    parts = sorted(f"{shard_dir(TENANT, SAMPLE)}/{f['path']}" for f in manifest["files"])
    # one manifest, and exactly the parts it lists: no part of a failed attempt left over
    assert shards == sorted([*parts, f"{shard_dir(TENANT, SAMPLE)}/{MANIFEST_NAME}"])
    assert out.list_files(raw_manifest(TENANT, SAMPLE)) == [raw_manifest(TENANT, SAMPLE)]
    # one run manifest per asset for the run (the retried attempt wrote the same file)
    for asset in ("raw_sequences", "sequence_shards"):
        run_files = out.list_files(f"manifests/{asset}")
        assert sorted(run_files) == sorted(
            [
                f"manifests/{asset}/tenant={TENANT}/sample={SAMPLE}/latest.json",
                f"manifests/{asset}/tenant={TENANT}/sample={SAMPLE}/{result.run_id}.json",
            ]
        ), run_files

    # and byte for byte what a run without faults writes
    with DagsterInstance.local_temp() as instance:
        clean = _run(instance, gcs_bucket, "clean")
        assert clean.success and _events(clean, "STEP_UP_FOR_RETRY") == []
    assert proxy.injected() == 2 * GCSFS_ATTEMPTS  # the bursts were spent
    assert _data_files(out) == _data_files(Store(f"gs://{gcs_bucket}/clean"))


def test_bad_input_is_not_retried(gcs_bucket, proxy: FaultProxy):
    landing = Store(f"gs://{gcs_bucket}/landing")
    write_drop(
        landing, TENANT, SAMPLE, extra={"files": [{"path": "absent.fasta", "sha256": "0" * 64}]}
    )
    started = time.perf_counter()
    with DagsterInstance.local_temp() as instance:
        result = _run(instance, gcs_bucket, "storage")
    assert not result.success
    assert _events(result, "STEP_UP_FOR_RETRY") == []
    assert _events(result, "STEP_FAILURE") == ["raw_sequences"]
    assert time.perf_counter() - started < STORAGE_RETRY.delay  # no wait for a retry either
    assert proxy.injected() == 0
