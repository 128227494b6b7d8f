"""Failed-run alerts: the record kept under `<storage>/alerts/` and a Slack-compatible webhook
message, both built from plain data (the sensor reads it off the Dagster run).

Neither may carry sequences: error messages are cut short and every run of nucleotide codes
long enough to be a read (or a k-mer of one) is masked before anything is built.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bioscan_assets.core.layout import alert_record
from bioscan_assets.core.storage import Store

ALERT_FORMAT = "bioscan-alert/1"
DEFAULT_WEBSERVER_URL = "http://localhost:3000"
MAX_MESSAGE_CHARS = 300
# IUPAC nucleotide codes; 12 in a row is no English word, run id or hash but is any read
_SEQUENCE_RE = re.compile(r"[ACGTURYSWKMBDHVN]{12,}", re.IGNORECASE)
MASK = "[sequence removed]"


def redact(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The text with sequences masked, on one line, at most `limit` characters."""
    flat = " ".join(_SEQUENCE_RE.sub(MASK, text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class StepFailure:
    step: str
    error_class: str  # the user's exception class, not Dagster's wrapper
    message: str

    def redacted(self) -> StepFailure:
        return StepFailure(self.step, self.error_class, redact(self.message))


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    job: str
    run_url: str
    failed_at: datetime
    partition: str | None = None
    steps: tuple[StepFailure, ...] = ()
    error_class: str = ""  # the first failed step's, else the run's own error
    message: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # bioscan/* tags: trigger, tenant, ...

    def document(self) -> dict[str, Any]:
        """The alert record, sequences masked."""
        return {
            "format": ALERT_FORMAT,
            "run_id": self.run_id,
            "job": self.job,
            "partition": self.partition,
            "failed_at": self.failed_at.astimezone(UTC).isoformat(),
            "run_url": self.run_url,
            "error_class": self.error_class,
            "message": redact(self.message),
            "steps": [asdict(step.redacted()) for step in self.steps],
            "tags": {k: redact(v, 120) for k, v in sorted(self.tags.items())},
        }


def run_url(webserver_url: str | None, run_id: str) -> str:
    return f"{(webserver_url or DEFAULT_WEBSERVER_URL).rstrip('/')}/runs/{run_id}"


def write_alert(store: Store, failed: FailedRun) -> str:
    """Write the record (atomically; a second write for the same run replaces it); its path."""
    day = failed.failed_at.astimezone(UTC).strftime("%Y-%m-%d")
    path = alert_record(day, failed.run_id)
    store.write_bytes(path, json.dumps(failed.document(), indent=1, sort_keys=True).encode())
    return path


def _mrkdwn(text: str) -> str:
    """Slack's three control characters escaped, so a message cannot forge a link or mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(failed: FailedRun, record_url: str | None = None) -> dict[str, Any]:
    """An incoming-webhook message: `text` for plain receivers, `blocks` for Slack."""
    doc = failed.document()
    where = f"{doc['job']}" + (f" [{doc['partition']}]" if doc["partition"] else "")
    steps = ", ".join(step["step"] for step in doc["steps"]) or "(no step failed)"
    error_class = doc["error_class"] or "error"
    summary = f"bioscan run failed: {where} — {error_class} in {steps}"
    detail = [
        f"*Run failed:* <{doc['run_url']}|{_mrkdwn(where)}>",
        f"*Steps:* {_mrkdwn(steps)}",
        f"*Error:* `{_mrkdwn(error_class)}` {_mrkdwn(doc['message'])}",
    ]
    if record_url:
        detail.append(f"*Record:* {_mrkdwn(record_url)}")
    return {
        "text": f"{summary} ({doc['run_url']})",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(detail)}}],
    }


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> int:
    """POST the payload as JSON; the HTTP status (urllib raises on 4xx/5xx and network errors)."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"alert webhook {url[:40]!r}: must be an http(s) URL")
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.status
