"""A LoRA run killed with SIGKILL resumes from its latest checkpoint and ends where an
uninterrupted run ends.

Tolerance: every adapter and head parameter within 1e-6 (absolute) of the uninterrupted run;
on CPU the resumed run is in fact bit-identical, because batches, crops and dropout keys
depend on (seed, step) only and the optimiser state is checkpointed with the weights.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import command_env, last_json_line, python, run, start

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cmd(workdir: Path, storage: Path, out: Path, cache: Path, delay: float = 0.0) -> list[str]:
    return python(
        "-m",
        "tests.integration.tune_worker",
        workdir,
        storage,
        out,
        "--steps",
        "30",
        "--step-delay",
        str(delay),
        "--cache",
        cache,
    )


def _env() -> dict[str, str]:
    return command_env(JAX_PLATFORMS="cpu")


def _run(cmd: list[str]) -> dict:
    return last_json_line(run(cmd, env=_env(), timeout=900).stdout)


def _committed_steps(storage: Path) -> list[int]:
    return sorted(int(p.parent.name) for p in storage.glob("tune/checkpoints/*/*/_COMMITTED"))


def _assert_same(a: Path, b: Path) -> None:
    left, right = np.load(a), np.load(b)
    assert sorted(left.files) == sorted(right.files)
    for name in left.files:
        np.testing.assert_allclose(left[name], right[name], rtol=0, atol=1e-6, err_msg=name)


def test_sigkilled_run_resumes_and_matches_an_uninterrupted_run(tmp_path):
    cache = tmp_path / "jax-cache"
    reference = _run(
        _cmd(tmp_path / "ref-work", tmp_path / "ref-store", tmp_path / "ref.npz", cache)
    )
    assert reference["done"] == 30 and reference["resumed_from"] is None

    work, store, out = tmp_path / "work", tmp_path / "store", tmp_path / "out.npz"
    proc = start(
        _cmd(work, store, out, cache, delay=0.4),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 600
    try:
        # kill once a checkpoint past the first has reached the store, mid-training
        while not [s for s in _committed_steps(store) if s >= 10]:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint reached the store in time"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    killed_at = max(_committed_steps(store))
    assert 10 <= killed_at < 30

    # 1) the local checkpoint is preferred
    resumed = _run(_cmd(work, store, out, cache))
    assert resumed["resumed_from"] == "local"
    assert resumed["resumed_from_step"] >= killed_at
    assert resumed["done"] == 30
    _assert_same(tmp_path / "ref.npz", out)

    # 2) with the local folder gone (a new pod), the store's copy is used
    shutil.rmtree(work)
    again = tmp_path / "again.npz"
    from_store = _run(_cmd(work, store, again, cache))
    assert from_store["resumed_from"] == "storage"
    assert from_store["resumed_from_step"] == 30
    _assert_same(tmp_path / "ref.npz", again)
    # only the last K (2) checkpoints are kept in the store
    assert _committed_steps(store) == [25, 30]
