"""Experiment tracking with Weights & Biases, offline unless asked otherwise.

Offline is the default (WANDB_MODE unset or "offline"): runs go to `$BIOSCAN_HOME/wandb` and
can be pushed later with `wandb sync`. Online needs WANDB_MODE=online AND an API key
(WANDB_API_KEY); online without a key falls back to offline with a warning rather than
prompting or failing a training run. WANDB_MODE=disabled turns tracking off.

A pod's $BIOSCAN_HOME dies with the pod, so an asset passes its output store as `archive`: an
offline run folder is then copied to `<storage>/wandb/<run folder>/` when the run ends (failed
runs too), and `TrackingRun.metadata()` says where it is, or gives the online run's URL.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, MetadataValue
from pydantic import Field

from bioscan_assets.core.layout import wandb_run_archive
from bioscan_assets.core.storage import Store
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
        # the run's folder, `.../offline-run-<time>-<id>` when offline
        self._dir = str(Path(run.dir).absolute().parent) if run is not None else None
        self.archived: str | None = None  # the folder's copy in storage (a URL), once made

    @property
    def dir(self) -> str | None:
        """The run's folder (`.../offline-run-<time>-<id>` when offline)."""
        return self._dir

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

    def archive(self, store: Store) -> str | None:
        """Copy a finished offline run's folder to storage; its URL, or None when online."""
        if self._dir is None or self.mode != "offline":
            return None
        import wandb

        # run.finish() returns before W&B's service has closed the run's transaction log, so
        # a copy made then can miss its last records; teardown waits for every stream to close
        # (the next run starts a fresh service).
        wandb.teardown()
        folder = Path(self._dir)
        rel = wandb_run_archive(folder.name)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                store.put_file(path, f"{rel}/{path.relative_to(folder).as_posix()}")
        self.archived = store.url(rel)
        return self.archived

    def metadata(self) -> dict[str, Any]:
        """Materialisation metadata: the online run's page, or the offline run's stored copy
        and the command that uploads it."""
        if self._run is None:
            return {}
        if self.mode == "online":
            return {"wandb_url": MetadataValue.url(self.url)} if self.url else {}
        if self.archived is None:
            return {}
        name = Path(self._dir or "").name
        fetch = "" if "://" not in self.archived else f"gcloud storage cp -r {self.archived} . && "
        return {
            "wandb_offline_run": MetadataValue.path(self.archived),
            "wandb_sync": MetadataValue.text(
                f"{fetch}wandb sync {name if fetch else self.archived}"
            ),
        }


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
        archive: Store | None = None,
    ) -> Iterator[TrackingRun]:
        """A run for the `with` block; offline runs are copied to `archive` when it ends."""
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
            if archive is not None:
                try:
                    tracking.archive(archive)
                except Exception as error:  # keep the run's own error, not the copy's
                    log.warning(f"could not copy W&B run {tracking.dir} to storage: {error}")
            raise
        run.finish()
        if archive is not None:
            tracking.archive(archive)
