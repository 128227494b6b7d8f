"""lab_drop_sensor against a real Dagster instance, on a local and a `gs://` landing area.

Each tick is evaluated with `evaluate_tick` (run requests resolved against the job and the
instance's partitions, as the daemon does); the harness then applies what the daemon would
apply: the dynamic-partition additions and the new cursor.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from bioscan_resources.storage import StorageResource
from bioscan_sensors.lab_drop import build_lab_drop_sensor, lab_drop_sensor
from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    asset,
    build_sensor_context,
    define_asset_job,
)

from bioscan_assets.core.ingest import scan as drop_scan
from bioscan_assets.core.layout import quarantine_record
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions
from tests.helpers import fasta_bytes, sha256_hex, write_drop, write_manifest_json

pytestmark = pytest.mark.integration


@asset(key="raw_sequences", partitions_def=samples_partitions)
def raw_sequences_stub(context) -> str:
    """Stands in for the real graph: the sensor only needs a job named sample_pipeline."""
    return context.partition_key


sample_pipeline = define_asset_job("sample_pipeline", selection=[raw_sequences_stub])


class Harness:
    """Ticks a sensor like the daemon: evaluate, add partitions, keep the cursor."""

    def __init__(self, instance: DagsterInstance, landing: str, storage: str, **budget):
        self.instance = instance
        self.resource = StorageResource(landing=landing, storage=storage)
        self.sensor = build_lab_drop_sensor(**budget) if budget else lab_drop_sensor
        self.defs = Definitions(
            assets=[raw_sequences_stub],
            jobs=[sample_pipeline],
            sensors=[self.sensor],
            resources={"storage": self.resource},
        )
        self.cursor: str | None = None
        self.launched: list[str] = []

    @property
    def landing(self) -> Store:
        return self.resource.landing_store()

    @property
    def output(self) -> Store:
        return self.resource.output_store()

    def tick(self):
        context = build_sensor_context(
            instance=self.instance,
            instance_ref=self.instance.get_ref(),
            cursor=self.cursor,
            definitions=self.defs,
            resources={"storage": self.resource},
        )
        data = self.sensor.evaluate_tick(context)
        for request in data.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, request.partition_keys
            )
        self.launched += [r.run_key for r in data.run_requests]
        self.cursor = data.cursor
        return data

    def partitions(self) -> list[str]:
        return sorted(self.instance.get_dynamic_partitions("samples"))


@pytest.fixture
def instance():
    with DagsterInstance.local_temp() as inst:
        yield inst


@pytest.fixture
def harness(instance, tmp_path) -> Harness:
    return Harness(instance, str(tmp_path / "landing"), str(tmp_path / "storage"))


def manifest_sha(store: Store, folder: str) -> str:
    return sha256_hex(store.read_bytes(f"{folder}/sample.json"))


def test_sensor_definition():
    assert lab_drop_sensor.name == "lab_drop_sensor"
    assert lab_drop_sensor.job_name == "sample_pipeline"
    assert lab_drop_sensor.minimum_interval_seconds == 30
    assert lab_drop_sensor.default_status == DefaultSensorStatus.RUNNING
    assert "storage" in lab_drop_sensor.required_resource_keys


def test_valid_drop_adds_partition_and_requests_one_run(harness, instance):
    write_drop(harness.landing, "acme-lab", "S001")
    sha = manifest_sha(harness.landing, "acme-lab/S001")

    data = harness.tick()
    assert [r.run_key for r in data.run_requests] == [f"acme-lab/S001:{sha[:16]}"]
    request = data.run_requests[0]
    assert request.partition_key == "acme-lab/S001"
    assert request.tags["bioscan/tenant"] == "acme-lab"
    assert request.tags["bioscan/trigger"] == "sensor"
    assert request.tags["bioscan/manifest_sha256"] == sha
    assert request.tags["dagster/partition"] == "acme-lab/S001"
    assert harness.partitions() == ["acme-lab/S001"]
    assert len(data.cursor) < 200

    # The request is runnable as it stands: the stub job materialises that partition.
    result = harness.defs.resolve_job_def("sample_pipeline").execute_in_process(
        partition_key=request.partition_key, instance=instance, tags=request.tags
    )
    assert result.success

    # Same drop next tick: nothing; rewriting the same bytes (new mtime): still nothing.
    assert harness.tick().run_requests == []
    write_manifest_json(
        harness.landing, "acme-lab", "S001", harness.landing.read_bytes("acme-lab/S001/sample.json")
    )
    assert harness.tick().run_requests == []
    assert harness.tick().dynamic_partitions_requests == []


def test_changed_manifest_runs_again_with_a_new_run_key(harness):
    write_drop(harness.landing, "acme-lab", "S001")
    first = harness.tick().run_requests[0].run_key
    write_drop(harness.landing, "acme-lab", "S001", extra={"depth_m": 750.0})
    data = harness.tick()
    sha = manifest_sha(harness.landing, "acme-lab/S001")
    assert [r.run_key for r in data.run_requests] == [f"acme-lab/S001:{sha[:16]}"]
    assert data.run_requests[0].run_key != first
    assert data.dynamic_partitions_requests == [], "the partition exists already"
    assert harness.tick().run_requests == []


def test_incomplete_drop_is_ignored_until_sample_json_lands(harness):
    write_drop(harness.landing, "acme-lab", "S001", write_manifest=False)
    assert harness.tick().run_requests == []
    assert not harness.output.list_files("quarantine")
    write_drop(harness.landing, "acme-lab", "S001")
    assert len(harness.tick().run_requests) == 1


def test_invalid_drop_is_quarantined_once_and_does_not_block_others(harness, capfd):
    write_drop(harness.landing, "acme-lab", "S001")
    doc = write_drop(harness.landing, "acme-lab", "S002", n_files=2)
    harness.landing.write_bytes("acme-lab/S002/reads_1.fasta", fasta_bytes(seed=77))  # sha mismatch
    write_drop(harness.landing, "beta-lab", "B1", manifest={"tenant": "beta-lab"})  # no sample_id
    harness.landing.write_bytes("beta-lab/B2/sample.json", b'{"tenant": "beta-lab",\n  oops}')

    data = harness.tick()
    assert [r.partition_key for r in data.run_requests] == ["acme-lab/S001"]
    assert harness.partitions() == ["acme-lab/S001"], "invalid drops add no partition"
    logged = capfd.readouterr().err  # the sensor's log goes to the console in a test context
    assert "quarantined acme-lab/S002: acme-lab/S002/sample.json field files[1].sha256" in logged

    record_rel = quarantine_record("acme-lab", "S002")
    record = json.loads(harness.output.read_bytes(record_rel))
    assert record["status"] == "quarantined"
    assert record["reason"].startswith("acme-lab/S002/sample.json field files[1].sha256: ")
    assert "reads_1.fasta" in record["reason"]
    assert record["manifest_sha256"] == manifest_sha(harness.landing, "acme-lab/S002")
    assert record["quarantined_at"].endswith("Z")
    for seq in fasta_bytes(seed=77).decode().split("\n")[1::2]:
        assert seq not in record["reason"], "no raw sequences in records"
    b1 = json.loads(harness.output.read_bytes(quarantine_record("beta-lab", "B1")))
    assert b1["reason"] == "beta-lab/B1/sample.json field sample_id: required field is missing"
    b2 = json.loads(harness.output.read_bytes(quarantine_record("beta-lab", "B2")))
    assert b2["reason"].startswith("beta-lab/B2/sample.json line 2 column 3: malformed JSON")

    # Recorded once: later ticks (even a touched sample.json) neither rewrite nor re-log it.
    stamp = os.stat(harness.output.local_path(record_rel)).st_mtime_ns
    raw = harness.landing.read_bytes("acme-lab/S002/sample.json")
    write_manifest_json(harness.landing, "acme-lab", "S002", raw)
    for _ in range(2):
        assert harness.tick().run_requests == []
    assert os.stat(harness.output.local_path(record_rel)).st_mtime_ns == stamp
    assert "quarantined acme-lab/S002" not in capfd.readouterr().err

    # The lab fixes the file and rewrites sample.json last: released, partition added, run.
    harness.landing.write_bytes("acme-lab/S002/reads_1.fasta", fasta_bytes(seed=1))
    write_manifest_json(harness.landing, "acme-lab", "S002", doc)
    data = harness.tick()
    assert [r.run_key for r in data.run_requests] == [
        f"acme-lab/S002:{manifest_sha(harness.landing, 'acme-lab/S002')[:16]}"
    ]
    assert not harness.output.exists(record_rel)
    assert harness.partitions() == ["acme-lab/S001", "acme-lab/S002"]


def test_invalid_manifest_change_rewrites_the_record(harness):
    write_drop(harness.landing, "acme-lab", "S001", manifest={"tenant": "acme-lab"})
    harness.tick()
    record_rel = quarantine_record("acme-lab", "S001")
    first = json.loads(harness.output.read_bytes(record_rel))
    write_drop(harness.landing, "acme-lab", "S001", extra={"latitude": "north"})
    harness.tick()
    second = json.loads(harness.output.read_bytes(record_rel))
    assert first["reason"].endswith("field sample_id: required field is missing")
    assert (
        second["reason"] == "acme-lab/S001/sample.json field latitude: must be a number, got string"
    )
    assert second["manifest_sha256"] != first["manifest_sha256"]


def test_bad_folder_names_are_recorded_once_under_a_safe_name(harness):
    write_drop(harness.landing, "Acme_Lab", "S001")
    write_drop(harness.landing, "acme-lab", "S..1", extra={"sample_id": "S..1"})
    write_drop(harness.landing, ".staging", "S001")  # upload tools' hidden folders are skipped
    write_drop(harness.landing, "acme-lab", "S002")
    data = harness.tick()
    assert [r.partition_key for r in data.run_requests] == ["acme-lab/S002"]
    records = harness.output.list_files("quarantine/_invalid")
    assert len(records) == 2
    reasons = sorted(json.loads(harness.output.read_bytes(r))["reason"] for r in records)
    assert reasons[0].startswith("Acme_Lab/S001/sample.json: tenant folder name")
    assert reasons[1].startswith("acme-lab/S..1/sample.json: sample folder name")
    stamps = [os.stat(harness.output.local_path(r)).st_mtime_ns for r in records]
    harness.cursor = None  # even with the state forgotten, the records are not rewritten
    harness.tick()
    assert [os.stat(harness.output.local_path(r)).st_mtime_ns for r in records] == stamps


def test_symlink_out_of_the_folder_is_quarantined(harness, tmp_path):
    doc = write_drop(harness.landing, "acme-lab", "S001", write_manifest=False)
    secret = tmp_path / "secret.fa"
    secret.write_bytes(fasta_bytes(seed=3))
    os.symlink(secret, Path(harness.landing.local_path("acme-lab/S001")) / "link.fa")
    doc["files"].append({"path": "link.fa", "sha256": sha256_hex(fasta_bytes(seed=3))})
    write_manifest_json(harness.landing, "acme-lab", "S001", doc)
    assert harness.tick().run_requests == []
    record = json.loads(harness.output.read_bytes(quarantine_record("acme-lab", "S001")))
    assert "field files[1].path" in record["reason"] and "symlink" in record["reason"]


def test_thousands_of_drops_across_ticks_and_a_restart(instance, tmp_path):
    landing_root, storage_root = str(tmp_path / "landing"), str(tmp_path / "storage")
    landing = Store(landing_root)
    n = 3000
    for i in range(n):
        tenant = ("acme-lab", "beta-lab", "gamma")[i % 3]
        write_drop(landing, tenant, f"S{i:05d}", seed=i)
    harness = Harness(instance, landing_root, storage_root, max_drops_per_tick=400)

    ticks = 0
    started = time.perf_counter()
    while True:
        data = harness.tick()
        ticks += 1
        pending = json.loads(data.cursor)["pending"]
        if ticks == 3:
            # Late arrivals sorting before what is done, and a "restart": a fresh sensor
            # process (new harness, new Store objects) that only has the saved cursor.
            write_drop(landing, "aaa-late", "S00000")
            write_drop(landing, "acme-lab", "S00000-late")
            cursor = harness.cursor
            launched = harness.launched
            harness = Harness(instance, landing_root, storage_root, max_drops_per_tick=400)
            harness.cursor, harness.launched = cursor, launched
        if not data.run_requests and pending == 0 and ticks > 3:
            break
        assert ticks < 20
    elapsed = time.perf_counter() - started

    counts = Counter(key.rsplit(":", 1)[0] for key in harness.launched)
    assert len(counts) == n + 2, "none skipped"
    assert max(counts.values()) == 1, "none twice"
    assert len(harness.partitions()) == n + 2
    assert ticks >= (n + 2) // 400
    cursor = json.loads(harness.cursor)
    assert cursor["drops"] == n + 2 and cursor["pending"] == 0
    assert len(harness.cursor) < 200, "the cursor names the state; it does not carry it"
    states = harness.output.list_files(drop_scan.STATE_DIR)
    assert 1 <= len(states) <= 2, "old state files are cleaned up"
    print(f"{n + 2} drops in {ticks} ticks, {elapsed:.1f} s; cursor {len(harness.cursor)} B")


def test_lost_state_file_rechecks_without_new_run_keys(harness):
    for i in range(3):
        write_drop(harness.landing, "acme-lab", f"S{i}", seed=i)
    first = sorted(r.run_key for r in harness.tick().run_requests)
    for rel in harness.output.list_files(drop_scan.STATE_DIR):
        harness.output.delete(rel)
    data = harness.tick()
    # Everything is checked again; the daemon drops these requests, their run keys exist.
    assert sorted(r.run_key for r in data.run_requests) == first
    assert harness.tick().run_requests == []


def test_sensor_on_a_gcs_landing_area(instance, gcs_bucket):
    harness = Harness(instance, f"gs://{gcs_bucket}/landing", f"gs://{gcs_bucket}/storage")
    landing = harness.landing
    write_drop(landing, "acme-lab", "S001")
    write_drop(landing, "acme-lab", "S002", n_files=2)
    landing.delete("acme-lab/S002/reads_1.fasta")  # listed but missing
    write_drop(landing, "acme-lab", "S003", write_manifest=False)  # incomplete

    data = harness.tick()
    sha = manifest_sha(landing, "acme-lab/S001")
    assert [r.run_key for r in data.run_requests] == [f"acme-lab/S001:{sha[:16]}"]
    record = json.loads(harness.output.read_bytes(quarantine_record("acme-lab", "S002")))
    assert record["reason"].startswith("acme-lab/S002/sample.json field files[1].path: ")
    assert harness.output.list_files("quarantine") == [quarantine_record("acme-lab", "S002")]
    assert harness.tick().run_requests == []

    write_drop(landing, "acme-lab", "S001", extra={"depth_m": 1.0})
    write_drop(landing, "acme-lab", "S003")
    keys = sorted(r.partition_key for r in harness.tick().run_requests)
    assert keys == ["acme-lab/S001", "acme-lab/S003"]
    assert harness.partitions() == ["acme-lab/S001", "acme-lab/S003"]
    assert harness.output.list_files(drop_scan.STATE_DIR)
