"""The encoder's mean-pooled forward pass and the windowing around it.

Shared by the embedding step (`executor`, batches packed to a token budget) and the kNN calls'
fixed-shape embedder (`core.calls.strand_embedding`), so both window, pool and weight alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.batching import split_windows
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.model.nt_model import mean_pool


def jit_pooled_forward(
    model: LoadedModel, accelerator: Accelerator, out_sharding: Any
) -> Callable[[Any, jax.Array], jax.Array]:
    """`forward(params, ids) -> [B, H]` mean over the real tokens, jitted for the mesh."""
    module = model.module(accelerator.dtype)
    pad_id = model.tokenizer.pad_id

    def forward(params: Any, ids: jax.Array) -> jax.Array:
        mask = ids != pad_id
        return mean_pool(module.apply({"params": params}, ids, mask), mask)

    return jax.jit(
        forward,
        in_shardings=(accelerator.replicated, accelerator.batch_sharding),
        out_shardings=out_sharding,
    )


def tokenise_windows(
    model: LoadedModel, sequences: Sequence[str]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Token windows of at most the model's length, and the input row each one belongs to."""
    windows: list[np.ndarray] = []
    owner: list[int] = []
    for row, sequence in enumerate(sequences):
        pieces = split_windows(model.tokenizer.encode(sequence), model.config.max_tokens)
        windows.extend(pieces)
        owner.extend([row] * len(pieces))
    return windows, np.asarray(owner, dtype=np.int64)


def length_weighted_mean(
    pooled: np.ndarray, windows: Sequence[np.ndarray], owner: np.ndarray, rows: int
) -> np.ndarray:
    """float32 [rows, H]: each row's windows weighted by their token counts, summed in order."""
    weights = np.array([len(window) for window in windows], np.float32)
    out = np.zeros((rows, pooled.shape[1]), np.float32)
    np.add.at(out, owner, pooled * weights[:, None])
    totals = np.bincount(owner, weights=weights, minlength=rows)
    return out / np.maximum(totals, 1.0)[:, None].astype(np.float32)
