"""Test-wide isolation: every test gets its own BIOSCAN_HOME, never the developer's."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.gcs_emulator"]

# Read when modules are imported (e.g. BIOSCAN_MODEL sets sequence_embeddings' code version),
# so cleared before collection imports them as well as around each test.
DEVELOPER_SETTINGS = ("BIOSCAN_LANDING", "BIOSCAN_STORAGE", "BIOSCAN_MODEL")


@pytest.fixture(autouse=True)
def bioscan_home(tmp_path, monkeypatch) -> str:
    home = tmp_path / "bioscan-home"
    home.mkdir()
    monkeypatch.setenv("BIOSCAN_HOME", str(home))
    for name in DEVELOPER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    return str(home)


def pytest_configure(config) -> None:
    # Keep JAX on the CPU and its thread pool small: CI has 2 cores.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    for name in DEVELOPER_SETTINGS:
        os.environ.pop(name, None)
