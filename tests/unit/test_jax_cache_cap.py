"""The JAX compilation cache is capped by JAX itself (jax_compilation_cache_max_size), set from
the accelerator resource; retention no longer reads the cache's files."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from bioscan_resources.accelerator import AcceleratorResource

from bioscan_assets.core.governance.policy import POLICY_NAMES, load_policies

# compile six distinct functions into a fresh cache; print the entries JAX kept
_COMPILE = """
import json, pathlib, sys
import jax, jax.numpy as jnp
from bioscan_assets.core.embedding.accelerator import Accelerator
folder, cap = sys.argv[1], int(sys.argv[2])
Accelerator.discover(cache_dir=folder, cache_max_bytes=cap)
for n in range(1, 7):
    jax.jit(lambda x, n=n: jnp.sin(x) * n + jnp.cos(x) ** n)(jnp.ones((n * 8,))).block_until_ready()
sizes = [p.stat().st_size for p in pathlib.Path(folder).iterdir() if p.name.endswith("-cache")]
print(json.dumps({"cap": jax.config.jax_compilation_cache_max_size, "sizes": sizes}))
"""


def _compile(folder, cap: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _COMPILE, str(folder), str(cap)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_jax_keeps_its_cache_under_the_cap(tmp_path):
    free = _compile(tmp_path / "uncapped", -1)
    assert free["cap"] == -1 and len(free["sizes"]) >= 6
    cap = sum(free["sizes"]) * 2 // 3  # room for about two thirds of what was compiled
    capped = _compile(tmp_path / "capped", cap)
    assert capped["cap"] == cap
    assert sum(capped["sizes"]) <= cap
    assert 0 < len(capped["sizes"]) < len(free["sizes"])  # JAX evicted, and kept the newest


def test_accelerator_resource_caps_the_cache_by_default():
    assert AcceleratorResource().compilation_cache_max_bytes == 10_000_000_000


def test_jax_cache_retention_policy_is_retired(caplog):
    assert "jax_cache" not in POLICY_NAMES
    assert load_policies().get("jax_cache") is None
    with caplog.at_level(logging.WARNING):
        policies = load_policies(overrides={"policies": {"jax_cache": {"max_bytes": 800}}})
    assert "jax_cache" not in policies.policies
    assert "retention policy jax_cache is ignored" in caplog.text
