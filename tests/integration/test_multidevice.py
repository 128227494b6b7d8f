"""An 8-core host (simulated CPU devices): same embeddings as one device, batch split on `data`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers import command_env, last_json_line, python, run


def _run(devices: int, out: Path) -> dict:
    flags = f"--xla_force_host_platform_device_count={devices}"
    env = command_env(JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    proc = run(python("-m", "tests.integration.multidevice_worker", out), env=env)
    return last_json_line(proc.stdout)


def test_eight_devices_match_one(tmp_path) -> None:
    one = _run(1, tmp_path / "one.npy")
    eight = _run(8, tmp_path / "eight.npy")
    assert one["devices"] == 1 and eight["devices"] == 8
    assert eight["mesh_axes"] == ["data"]
    assert eight["batch_spec"][0] == "data" and eight["batch_devices"] == 8
    assert eight["shard_shape"] == [8, 32]  # 64 rows over 8 devices
    np.testing.assert_allclose(
        np.load(tmp_path / "eight.npy"), np.load(tmp_path / "one.npy"), atol=1e-5
    )
