"""An 8-core host (simulated CPU devices): same embeddings as one device, batch split on `data`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _run(devices: int, out: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.multidevice_worker", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
