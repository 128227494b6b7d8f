"""Experiment tracking with Weights & Biases, offline unless asked otherwise.

Offline is the default (WANDB_MODE unset or "offline"): runs go to `$BIOSCAN_HOME/wandb` and
can be pushed later with `wandb sync`. Online needs WANDB_MODE=online AND an API key
(WANDB_API_KEY); online without a key falls back to offline with a warning rather than
prompting or failing a training run. WANDB_MODE=disabled turns tracking off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from bioscan_assets.settings import bioscan_home

log = logging.getLogger(__name__)


def resolve_mode(requested: str | None, api_key: str | None) -> tuple[str, str | None]:
    """(mode, warning): offline unless online is requested and a key is present."""
    mode = (requested or "offline").strip().lower()
    if mode in ("dryrun", ""):
        mode = "offline"
    if mode not in ("online", "offline", "disabled"):
        return "offline", f"WANDB_MODE={requested!r} is not online/offline/disabled; using offline"
    if mode == "online" and not api_key:
        return "offline", "WANDB_MODE=online but no WANDB_API_KEY is set; logging offline"
    return mode, None


class TrackingRun:
    """A live W&B run (or a no-op when tracking is disabled)."""

    def __init__(self, run: Any | None, mode: str):
        self._run = run
        self.mode = mode

    @property
    def dir(self) -> str | None:
        """The run's folder (`.../offline-run-<time>-<id>` when offline)."""
        return str(Path(self._run.dir).parent) if self._run is not None else None

    @property
    def id(self) -> str | None:
        return self._run.id if self._run is not None else None

    @property
    def url(self) -> str | None:
        return getattr(self._run, "url", None) if self._run is not None else None

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._run is not None:
            self._run.log(dict(metrics), step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self._run is not None:
            for key, value in values.items():
                self._run.summary[key] = value

    def log_artifact(
        self, name: str, kind: str, files: list[str | Path], metadata: dict[str, Any]
    ) -> None:
        """Files as a versioned artifact (the adapter: weights + adapter.json)."""
        if self._run is None:
            return
        import wandb

        artifact = wandb.Artifact(name, type=kind, metadata=metadata)
        for path in files:
            artifact.add_file(str(path))
        self._run.log_artifact(artifact)


class WandbResource(ConfigurableResource):
    """W&B runs for tuning and evaluation; offline under $BIOSCAN_HOME/wandb by default."""

    project: str = Field(default="bioscan", description="W&B project.")
    entity: str | None = Field(default=None, description="W&B entity (team); None = default.")
    mode: str | None = Field(
        default=None,
        description="online/offline/disabled; None reads WANDB_MODE (default offline).",
    )
    directory: str = Field(default="", description="Run folders; default $BIOSCAN_HOME/wandb.")

    def run_root(self) -> Path:
        return Path(self.directory or os.path.join(bioscan_home(), "wandb"))

    @contextlib.contextmanager
    def start(
        self,
        name: str,
        job_type: str,
        config: dict[str, Any],
        tags: list[str] | None = None,
    ) -> Iterator[TrackingRun]:
        mode, warning = resolve_mode(
            self.mode or os.environ.get("WANDB_MODE"), os.environ.get("WANDB_API_KEY")
        )
        if warning:
            log.warning(warning)
        if mode == "disabled":
            yield TrackingRun(None, mode)
            return
        import wandb

        root = self.run_root()
        root.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=name,
            job_type=job_type,
            config=config,
            tags=tags,
            dir=str(root),
            mode=mode,
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", save_code=False),
        )
        tracking = TrackingRun(run, mode)
        try:
            yield tracking
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()


# --- reading an offline run back (tests, tooling) ----------------------------------------------

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
    from wandb.proto import wandb_internal_pb2 as pb

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
