"""A real `dagster dev` (webserver + daemon + code server) on loopback, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from tests.helpers import REPO, command_env, python, start

WORKSPACE_QUERY = """
query { workspaceOrError { __typename ... on Workspace {
  locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } }
} } }
"""

# Fast dequeueing and no telemetry; everything else is Dagster's default local instance.
TEST_INSTANCE_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
telemetry:
  enabled: false
"""

# CI's two cores: two runs at a time through the production queue (QueuedRunCoordinator).
TWO_RUNS_INSTANCE_YAML = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
    max_concurrent_runs: 2
telemetry:
  enabled: false
"""


def tiny_model_env(base: Path, landing: Path) -> dict[str, str]:
    """A fresh BIOSCAN_HOME under `base` over `landing`, the tiny model on CPU, W&B offline."""
    return {
        "BIOSCAN_HOME": str(base / "home"),
        "BIOSCAN_LANDING": str(landing),
        "BIOSCAN_MODEL": "tiny",
        "WANDB_MODE": "offline",
        "JAX_PLATFORMS": "cpu",
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterDev:
    """`dagster dev` in its own process group on 127.0.0.1; stopped (group and all) on exit."""

    def __init__(
        self,
        target: Sequence[str],
        dagster_home: Path,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        instance_yaml: str = TEST_INSTANCE_YAML,
        unset: Sequence[str] = (),
        cwd: Path = REPO,
    ):
        self.target = list(target)
        self.dagster_home = dagster_home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or dagster_home / "dagster-dev.log"
        self.env = command_env(**{**(env or {}), "DAGSTER_HOME": str(dagster_home)})
        for name in unset:
            self.env.pop(name, None)
        self.instance_yaml = instance_yaml
        self.cwd = cwd  # `python -m` puts it first on sys.path: the checkout whose code runs
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> DagsterDev:
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.dagster_home / "dagster.yaml").write_text(self.instance_yaml)
        self._log = open(self.log_path, "wb")
        # Create and stamp the SQLite schema in one process first: webserver, daemon and code
        # server racing to create it can leave two alembic heads for good (dagster#27390).
        subprocess.run(
            python("-m", "dagster", "instance", "migrate"),
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )
        cmd = python("-m", "dagster", "dev", *self.target)
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.process = start(
            cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None:
            group = self.process.pid  # start_new_session: the group holds only what we started
            if self.process.poll() is None:
                os.killpg(group, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=30)
            # webserver, daemon, code servers and runs left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self.process.wait(timeout=30)
        self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": dict(variables or {})},
            timeout=60,
        )
        response.raise_for_status()
        payload = response.json()
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_ready(self, timeout: float = 240) -> None:
        """Until the webserver answers and every code location has loaded."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                entries = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
            except (requests.RequestException, AssertionError, KeyError, TypeError) as exc:
                last = repr(exc)
            else:
                errors = [
                    e["locationOrLoadError"]["message"]
                    for e in entries
                    if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"
                ]
                if errors:
                    raise RuntimeError(f"code location failed to load: {errors[0]}")
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    return
                last = f"locations {[(e['name'], e['loadStatus']) for e in entries]}"
            time.sleep(1)
        raise TimeoutError(f"dagster dev not ready after {timeout} s ({last}):\n{self.log_tail()}")
