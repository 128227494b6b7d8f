"""Read an offline W&B run back (history, summary, config, artifacts) to check what was logged.

Only tests use it: wandb has no reader for offline run files, so this parses the `.wandb`
transaction log (LevelDB-style 32 KiB blocks of chunked protobuf records) directly.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32768
_HEADER = 7  # ":W&B" + magic (2 bytes) + version (1 byte)


def _records(path: Path) -> Iterator[bytes]:
    """Records of a `.wandb` file: a LevelDB-style log of 32 KiB blocks with chunked records."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < 7:
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        body = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
            continue
        if kind == 1:
            yield body
        elif kind == 2:
            pending = body
        elif kind == 3:
            pending += body
        elif kind == 4:
            yield pending + body
            pending = b""


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """History rows, summary, config and artifacts recorded in an offline run folder."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
    out: dict[str, Any] = {"history": [], "summary": {}, "config": {}, "artifacts": [], "run": {}}
    for raw in _records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            out["history"].append(
                {
                    (item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "artifact":
            out["artifacts"].append(
                {
                    "name": record.artifact.name,
                    "type": record.artifact.type,
                    "files": [entry.path for entry in record.artifact.manifest.contents],
                    "metadata": json.loads(record.artifact.metadata or "{}"),
                }
            )
        elif kind == "run":
            for item in record.run.config.update:
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            out["run"] = {
                "id": record.run.run_id,
                "name": record.run.display_name,
                "job_type": record.run.job_type,
                "project": record.run.project,
            }
    return out
