"""Orbax checkpoints of a training run, kept locally and mirrored to the output store.

Resume looks locally first, then in the store; a step in the store is usable only once its
`_COMMITTED` marker exists (retention keys on that marker too).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bioscan_assets.core.storage import Store

log = logging.getLogger(__name__)

# storage prefix of training checkpoints (retention.yaml sweeps it)
CHECKPOINT_PREFIX = "tune/checkpoints"
COMMITTED = "_COMMITTED"


class CheckpointSync:
    """Orbax checkpoints in a local directory, mirrored to `store/prefix` in the background.

    Saving is synchronous and local (the state is the adapter, head and optimiser: megabytes);
    the copy to the store runs on a daemon thread from a hard-linked snapshot, so training never
    waits on the network. A step is usable in the store once its `_COMMITTED` marker exists.
    """

    def __init__(
        self,
        local_dir: Path,
        keep: int,
        store: Store | None = None,
        prefix: str = "",
        say: Callable[[str], None] = log.info,
    ):
        # orbax (and tensorstore) load only when a run starts, not with the code location
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.local_dir = Path(local_dir).absolute()
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.store = store
        self.prefix = prefix.strip("/")
        self.say = say
        self.uploaded: list[int] = []
        self.upload_errors: list[str] = []
        self.save_seconds: list[float] = []
        self._manager = self._new_manager()
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def _new_manager(self):
        ocp = self._ocp
        return ocp.CheckpointManager(
            self.local_dir,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, enable_async_checkpointing=False, create=True
            ),
        )

    # resume
    def store_steps(self) -> list[int]:
        if self.store is None:
            return []
        steps = []
        for rel in self.store.list_files(self.prefix):
            parts = rel[len(self.prefix) :].strip("/").split("/")
            if len(parts) == 2 and parts[1] == COMMITTED and parts[0].isdigit():
                steps.append(int(parts[0]))
        return sorted(steps)

    def latest(self) -> tuple[int | None, str | None]:
        """(step, where) of the newest checkpoint: local first, else fetched from the store."""
        step = self._manager.latest_step()
        if step is not None:
            return step, "local"
        remote = self.store_steps()
        if not remote:
            return None, None
        step = remote[-1]
        self._download(step)
        self._manager = self._new_manager()
        return step, "storage"

    def _download(self, step: int) -> None:
        assert self.store is not None
        base = f"{self.prefix}/{step}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{step}.download-", dir=self.local_dir))
        for rel in self.store.list_files(base):
            inner = rel[len(base) :].strip("/")
            if inner == COMMITTED:
                continue
            target = tmp / inner
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.store.read_bytes(rel))
        os.replace(tmp, self.local_dir / str(step))
        self.say(f"checkpoint step {step} fetched from {self.store.url(base)}")

    def restore(self, step: int, target: Any) -> Any:
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), target
        )
        return self._manager.restore(step, args=self._ocp.args.StandardRestore(abstract))

    # save
    def save(self, step: int, state: Any) -> None:
        started = time.perf_counter()
        host_state = jax.tree.map(np.asarray, state)
        self._manager.save(step, args=self._ocp.args.StandardSave(host_state), force=True)
        self._manager.wait_until_finished()
        if self.store is not None:
            snapshot = self.local_dir.parent / f".upload-{self.local_dir.name}-{step}"
            shutil.rmtree(snapshot, ignore_errors=True)
            shutil.copytree(self.local_dir / str(step), snapshot, copy_function=os.link)
            self._ensure_thread()
            self._queue.put((step, snapshot))
        self.save_seconds.append(time.perf_counter() - started)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._upload_loop, daemon=True)
            self._thread.start()

    def _upload_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                step, snapshot = item
                self._upload(step, snapshot)
            except Exception as error:  # a failed upload must not kill training
                self.upload_errors.append(f"{type(error).__name__}: {error}")
                log.warning("checkpoint upload failed: %s", error)
            finally:
                self._queue.task_done()

    def _upload(self, step: int, snapshot: Path) -> None:
        assert self.store is not None
        base = f"{self.prefix}/{step}"
        try:
            for path in sorted(p for p in snapshot.rglob("*") if p.is_file()):
                self.store.put_file(path, f"{base}/{path.relative_to(snapshot).as_posix()}")
            self.store.write_bytes(f"{base}/{COMMITTED}", json.dumps({"step": step}).encode())
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
        self.uploaded.append(step)
        steps = self.store_steps()
        for old in steps[: max(0, len(steps) - self.keep)]:
            # marker first: a half-deleted step is never taken for a complete one
            self.store.delete(f"{self.prefix}/{old}/{COMMITTED}")
            for rel in self.store.list_files(f"{self.prefix}/{old}"):
                self.store.delete(rel)

    def close(self, timeout: float = 600.0) -> None:
        """Wait for queued uploads (the last checkpoint must reach the store)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._manager.close()
