"""Alert records and webhook payloads (core.governance.alerts): no sequence ever gets out."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bioscan_assets.core.governance.alerts import (
    DEFAULT_WEBSERVER_URL,
    MASK,
    FailedRun,
    StepFailure,
    post_webhook,
    redact,
    run_url,
    slack_payload,
    write_alert,
)
from bioscan_assets.core.storage import Store

READ = "acgtnnrykmACGTTTGACCA"


def _failed(message: str = f"bad read {READ}", **kwargs) -> FailedRun:
    return FailedRun(
        run_id="r1",
        job="sample_pipeline",
        run_url=run_url(None, "r1"),
        failed_at=datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-2))),
        partition="acme-lab/S1",
        steps=(StepFailure("raw_sequences", "ValueError", message),),
        error_class="ValueError",
        message=message,
        **kwargs,
    )


def test_redact_masks_reads_in_any_case_and_keeps_words_ids_and_hashes():
    run_id, sha = str(uuid.uuid4()), hashlib.sha256(b"x").hexdigest()
    text = f"read {READ} and {READ.lower()} in run {run_id}, sha256 {sha}; Unacceptably"
    out = redact(text, limit=1000)
    assert READ not in out and READ.lower() not in out and out.count(MASK) == 2
    assert run_id in out and sha in out and "Unacceptably" in out
    assert redact("ACGTACGTACG") == "ACGTACGTACG"  # 11 letters: shorter than any read we keep


def test_redact_flattens_and_cuts_long_messages():
    out = redact("line one\n  line two " + "x" * 1000, limit=50)
    assert "\n" not in out and len(out) == 50 and out.endswith("…")


def test_document_and_payload_carry_no_sequence():
    failed = _failed(tags={"bioscan/note": READ})
    doc, payload = failed.document(), slack_payload(failed, "gs://b/alerts/x.json")
    for text in (json.dumps(doc), json.dumps(payload)):
        assert READ not in text and MASK in text
    assert doc["failed_at"] == "2026-12-01T01:30:00+00:00"  # always UTC
    assert payload["text"].startswith("bioscan run failed: sample_pipeline [acme-lab/S1]")
    assert f"{DEFAULT_WEBSERVER_URL}/runs/r1" in payload["text"]


def test_payload_escapes_slack_control_characters():
    payload = slack_payload(_failed("<!channel> & <https://evil|click>"))
    text = payload["blocks"][0]["text"]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp;" in text
    assert "<http://localhost:3000/runs/r1|sample_pipeline [acme-lab/S1]>" in text


def test_run_url_joins_the_webserver_url():
    assert run_url("https://dagster.example.org/", "abc") == "https://dagster.example.org/runs/abc"
    assert run_url(None, "abc") == f"{DEFAULT_WEBSERVER_URL}/runs/abc"


def test_write_alert_files_the_record_by_utc_day(tmp_path):
    store = Store(str(tmp_path))
    path = write_alert(store, _failed())
    assert path == "alerts/2026-12-01/r1.json"
    assert write_alert(store, _failed("again")) == path  # the same run replaces its record
    assert json.loads(store.read_bytes(path))["message"] == "again"
    assert store.list_files("alerts") == [path]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y", "hooks.slack.com/x"])
def test_post_webhook_accepts_only_http_urls(url):
    with pytest.raises(ValueError, match="http"):
        post_webhook(url, {"text": "x"})


def test_failed_at_is_timezone_aware():
    assert _failed().failed_at.astimezone(UTC).tzinfo is UTC
