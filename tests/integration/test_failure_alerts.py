"""failure_alerts_sensor against real failed runs on a real Dagster instance.

Ticks are evaluated as the daemon evaluates them (`evaluate_tick`, cursor carried over); the
webhook is a local HTTP server that keeps what it receives.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bioscan_resources.storage import StorageResource
from bioscan_sensors.failure_alerts import SENSOR_NAME, failure_alerts_sensor
from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    asset,
    build_sensor_context,
    define_asset_job,
)

from bioscan_assets.assets.ingest import raw_sequences, sequence_shards
from bioscan_assets.core.governance.alerts import MASK
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions

pytestmark = pytest.mark.integration

KEY = "acme-lab/S404"
WEBSERVER = "https://dagster.example.org"
READ = "ACGTTGCAAGGCTTACCGATNNACGTAGGCTAGCTAGGATCCA"  # a read that must never leave


@dataclass
class Webhook:
    url: str = ""
    status: int = 200
    received: list[dict] = field(default_factory=list)


@contextlib.contextmanager
def running_webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hook.received.append(json.loads(body))
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/secret-token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@asset(partitions_def=samples_partitions)
def parse_reads(context) -> None:
    """Fails the way a careless parser would: with the offending read in the message."""
    raise ValueError(f"cannot parse read {READ} in {context.partition_key}")


@asset(partitions_def=samples_partitions)
def fine(context) -> None:
    return None


class Alerts:
    """Real runs on a temp instance, and sensor ticks over them with the cursor kept."""

    def __init__(self, instance: DagsterInstance, tmp_path):
        self.instance = instance
        self.storage = StorageResource(
            landing=str(tmp_path / "landing"), storage=str(tmp_path / "storage")
        )
        self.defs = Definitions(
            assets=[raw_sequences, sequence_shards, parse_reads, fine],
            jobs=[
                define_asset_job("sample_pipeline", selection=[raw_sequences, sequence_shards]),
                define_asset_job("parse_job", selection=[parse_reads]),
                define_asset_job("fine_job", selection=[fine]),
            ],
            resources={"storage": self.storage},
        )
        self.cursor: str | None = None
        instance.add_dynamic_partitions(samples_partitions.name, [KEY])

    @property
    def store(self) -> Store:
        return self.storage.output_store()

    def run(self, job: str):
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance,
            partition_key=KEY,
            tags={"bioscan/trigger": "sensor"},
            raise_on_error=False,
        )

    def tick(self):
        context = build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"storage": self.storage}
        )
        data = failure_alerts_sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return data

    def record(self, run_id: str) -> dict:
        (path,) = [p for p in self.store.list_files("alerts") if p.endswith(f"/{run_id}.json")]
        return json.loads(self.store.read_bytes(path))


@pytest.fixture
def alerts(tmp_path, monkeypatch) -> Iterator[Alerts]:
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", WEBSERVER)
    monkeypatch.delenv("BIOSCAN_ALERT_WEBHOOK", raising=False)
    with DagsterInstance.local_temp() as instance:
        yield Alerts(instance, tmp_path)


def test_sensor_definition():
    assert failure_alerts_sensor.name == SENSOR_NAME
    assert failure_alerts_sensor.default_status == DefaultSensorStatus.RUNNING
    assert "storage" in failure_alerts_sensor.required_resource_keys


def test_a_failed_run_is_recorded_and_posted_once(alerts, monkeypatch):
    assert "Initiating" in (alerts.tick().skip_message or "")  # the cursor starts now
    with running_webhook() as hook:
        monkeypatch.setenv("BIOSCAN_ALERT_WEBHOOK", hook.url)
        failed = alerts.run("sample_pipeline")  # no drop in the landing area: bad input
        assert not failed.success
        assert alerts.run("fine_job").success

        data = alerts.tick()
        assert [r.error for r in data.dagster_run_reactions] == [None]
        record = alerts.record(failed.run_id)
        assert record["job"] == "sample_pipeline"
        assert record["partition"] == KEY
        assert [s["step"] for s in record["steps"]] == ["raw_sequences"]
        assert record["error_class"] == "DropError"
        assert "sample.json is missing" in record["message"]
        assert record["run_url"] == f"{WEBSERVER}/runs/{failed.run_id}"
        assert record["tags"] == {"bioscan/trigger": "sensor"}
        assert len(alerts.store.list_files("alerts")) == 1  # the successful run left nothing

        (payload,) = hook.received
        assert "sample_pipeline [acme-lab/S404]" in payload["text"]
        assert f"{WEBSERVER}/runs/{failed.run_id}" in payload["text"]
        assert "DropError" in payload["text"] and "raw_sequences" in payload["text"]
        section = payload["blocks"][0]["text"]
        assert section["type"] == "mrkdwn" and "sample.json is missing" in section["text"]

        # later ticks: nothing new, nothing posted again
        assert alerts.tick().dagster_run_reactions == []
        assert len(hook.received) == 1


def test_no_sequence_leaves_in_the_record_or_the_payload(alerts, monkeypatch):
    alerts.tick()
    with running_webhook() as hook:
        monkeypatch.setenv("BIOSCAN_ALERT_WEBHOOK", hook.url)
        failed = alerts.run("parse_job")
        alerts.tick()
    record = alerts.record(failed.run_id)
    assert record["error_class"] == "ValueError"
    (payload,) = hook.received
    for text in (json.dumps(record), json.dumps(payload)):
        assert READ not in text and READ[:12] not in text
        assert MASK in text and "cannot parse read" in text


def test_without_a_webhook_the_record_is_still_written(alerts):
    alerts.tick()
    failed = alerts.run("parse_job")
    data = alerts.tick()
    assert [r.error for r in data.dagster_run_reactions] == [None]
    assert alerts.record(failed.run_id)["steps"][0]["step"] == "parse_reads"


def test_a_failing_webhook_fails_the_tick_without_leaking_its_url(alerts, monkeypatch):
    alerts.tick()
    with running_webhook() as hook:
        hook.status = 500
        monkeypatch.setenv("BIOSCAN_ALERT_WEBHOOK", hook.url)
        failed = alerts.run("parse_job")
        data = alerts.tick()
    (reaction,) = data.dagster_run_reactions
    message = str(reaction.error)
    assert "BIOSCAN_ALERT_WEBHOOK" in message and "500" in message
    assert "secret-token" not in message
    assert alerts.record(failed.run_id)["job"] == "parse_job"  # recorded before posting
