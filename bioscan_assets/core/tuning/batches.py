"""Token windows for training and prediction; a step's batch is a function of (seed, step)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bioscan_assets.core.tuning.config import TrainConfig


def crop(tokens: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """`<cls>` + a window of `length - 1` tokens: random start in training, the start otherwise."""
    if len(tokens) <= length:
        return tokens
    body = tokens[1:]
    start = 0 if rng is None else int(rng.integers(0, len(body) - (length - 1) + 1))
    return np.concatenate((tokens[:1], body[start : start + length - 1]))


def training_batch(
    tokens: Sequence[np.ndarray],
    labels: np.ndarray,
    step: int,
    config: TrainConfig,
    batch_size: int,
    pad_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The batch of a step: depends on (seed, step) only, so resumed runs see the same data."""
    rng = np.random.default_rng([config.seed, 0xBA7C, step])
    n = len(tokens)
    picks = rng.choice(n, size=batch_size, replace=n < batch_size)
    ids = np.full((batch_size, config.crop_tokens), pad_id, np.int32)
    for row, index in enumerate(picks):
        window = crop(tokens[index], config.crop_tokens, rng if config.window == "random" else None)
        ids[row, : len(window)] = window
    return ids, labels[picks]
