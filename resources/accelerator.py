from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

from bioscan_assets.settings import bioscan_home

if TYPE_CHECKING:
    from bioscan_assets.core.embedding.compute import EmbeddingExecutor


@functools.lru_cache(maxsize=2)
def _executor(
    model: str, dtype: str | None, token_budget: int, cache_dir: str, cache_max_bytes: int
) -> EmbeddingExecutor:
    # jax is imported here, not at definitions load: the webserver and sensors never need it
    from bioscan_assets.core.embedding.accelerator import Accelerator
    from bioscan_assets.core.embedding.compute import EmbeddingExecutor
    from bioscan_assets.core.model.presets import load_model

    return EmbeddingExecutor(
        load_model(model),
        Accelerator.discover(dtype, cache_dir, cache_max_bytes),
        token_budget=token_budget,
    )


class AcceleratorResource(ConfigurableResource):
    """The model (BIOSCAN_MODEL) on every local device: one per process, reused by partitions."""

    model: str = Field(default="demo", description="Preset name or checkpoint dir / gs:// URL.")
    dtype: str | None = Field(default=None, description="Override: float32 or bfloat16.")
    token_budget: int = Field(default=8192, description="Padded tokens per device batch.")
    chunk_rows: int = Field(default=512, description="Rows committed per resumable chunk.")
    chunk_seconds: float = Field(default=120.0, description="Commit a chunk at least this often.")
    compilation_cache: str = Field(default="", description="Default $BIOSCAN_HOME/jax_cache.")
    compilation_cache_max_bytes: int = Field(
        default=10_000_000_000,
        description="JAX's own cap on the compilation cache (jax_compilation_cache_max_size): "
        "least recently used entries go first; -1: no cap.",
    )

    def executor(self) -> EmbeddingExecutor:
        cache = self.compilation_cache or f"{bioscan_home()}/jax_cache"
        return _executor(
            self.model, self.dtype, self.token_budget, cache, self.compilation_cache_max_bytes
        )
