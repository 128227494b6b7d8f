"""The "TPU executor": one mesh over every local device, params replicated, batches sharded.

The same code runs on a TPU host, a GPU or the CPU; tests simulate an 8-core host with
`XLA_FLAGS=--xla_force_host_platform_device_count=8` (set before jax is imported).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)
_CACHE: tuple[str, int] | None = None


def enable_compilation_cache(directory: str, max_bytes: int = -1) -> None:
    """Persistent XLA cache, so a new run process does not compile the same shapes again.

    `max_bytes` (-1: no cap) is JAX's own limit: above it JAX drops the least recently used
    entries as it writes new ones, so retention need not look inside the cache.
    """
    global _CACHE
    if (directory, max_bytes) == _CACHE:
        return
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", max_bytes)
    _CACHE = (directory, max_bytes)


def default_dtype(platform: str) -> Any:
    return jnp.float32 if platform == "cpu" else jnp.bfloat16


@dataclass
class Accelerator:
    mesh: Mesh
    platform: str  # "tpu", "gpu" or "cpu"
    device_kind: str  # e.g. "TPU v5 lite", "NVIDIA H100 80GB HBM3", "cpu"
    dtype: Any

    @classmethod
    def discover(
        cls, dtype: str | None = None, cache_dir: str | None = None, cache_max_bytes: int = -1
    ) -> Accelerator:
        if cache_dir:
            enable_compilation_cache(cache_dir, cache_max_bytes)
        devices = jax.devices()
        platform = devices[0].platform
        mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,))
        chosen = jnp.dtype(dtype) if dtype else default_dtype(platform)
        return cls(mesh, platform, devices[0].device_kind, chosen)

    @property
    def device_count(self) -> int:
        return self.mesh.size

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec("data"))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def replicate(self, tree: Any) -> Any:
        return jax.device_put(tree, self.replicated)

    def shard_batch(self, array: np.ndarray) -> jax.Array:
        return jax.device_put(array, self.batch_sharding)

    def describe(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "device_kind": self.device_kind,
            "device_count": self.device_count,
            "dtype": jnp.dtype(self.dtype).name,
        }
