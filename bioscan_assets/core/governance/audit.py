"""The retention audit log: every deletion, skip and failure, appended and never rewritten.

JSON lines under `<storage>/audit/retention/<date>/`. Local: one file per run, opened for
append and fsynced per record. GCS objects cannot be appended to, so there each record is its
own object `<run_id>/<seq>.jsonl`, never rewritten.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bioscan_assets.core import layout
from bioscan_assets.core.storage import Store


class AuditLog:
    """Append-only JSON lines of one retention run."""

    def __init__(self, store: Store, run_id: str, now: datetime | None = None):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", run_id):
            raise ValueError(f"run id {run_id!r} is not usable in a file name")
        self.store, self.run_id = store, run_id
        day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
        self.folder = f"{layout.retention_audit_dir()}/{day}"
        self._seq = 0

    @property
    def location(self) -> str:
        if self.store.is_gcs:
            return self.store.url(f"{self.folder}/{self.run_id}")
        return self.store.url(f"{self.folder}/{self.run_id}.jsonl")

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        if self.store.is_gcs:
            self._seq += 1
            rel = f"{self.folder}/{self.run_id}/{self._seq:06d}.jsonl"
            while self.store.exists(rel):  # a re-run with the same id never overwrites
                self._seq += 1
                rel = f"{self.folder}/{self.run_id}/{self._seq:06d}.jsonl"
            self.store.write_bytes(rel, line)
            return
        path = Path(self.store.url(f"{self.folder}/{self.run_id}.jsonl"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def read_audit(store: Store) -> list[dict[str, Any]]:
    """Every audit record, in file order."""
    out = []
    for rel in store.list_files(layout.retention_audit_dir()):
        if rel.endswith(".jsonl"):
            out += [json.loads(line) for line in store.read_bytes(rel).splitlines() if line]
    return out
