"""Batching, windowing and the executor with the tiny model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.batching import (
    _rows_at_least,
    bucket_ladder,
    pack_batches,
    split_rows,
    split_windows,
)
from bioscan_assets.core.embedding.compute import EmbeddingExecutor
from bioscan_assets.core.model.presets import load_model
from tests.helpers import random_dna


@pytest.fixture(scope="module")
def executor() -> EmbeddingExecutor:
    return EmbeddingExecutor(load_model("tiny"), Accelerator.discover(), token_budget=1024)


def _random_seqs(rng: np.random.Generator, lengths) -> list[str]:
    return [random_dna(rng, n) for n in lengths]


def test_batches_cover_every_row_once_within_budget() -> None:
    rng = np.random.default_rng(0)
    tokens = [np.arange(n, dtype=np.int32) + 5 for n in rng.integers(1, 120, 300)]
    seen = []
    for batch in pack_batches(tokens, pad_id=1, max_tokens=128, token_budget=1024, device_count=4):
        assert batch.ids.shape[0] % 4 == 0
        assert batch.computed_tokens <= 1024 or batch.ids.shape[0] == 4
        seen.extend(batch.rows[batch.rows >= 0].tolist())
        for slot, row in enumerate(batch.rows):
            if row >= 0:
                np.testing.assert_array_equal(batch.ids[slot, : len(tokens[row])], tokens[row])
    assert sorted(seen) == list(range(300))


def test_last_batch_pads_little() -> None:
    for n in range(1, 300):
        sizes = split_rows(n)
        waste = sum(sizes) - n
        assert waste >= 0 and (waste * 8 <= n or waste <= 2), n
        assert len(sizes) <= n.bit_length() and all(_rows_at_least(s) == s for s in sizes), n
    tokens = [np.arange(40, dtype=np.int32) + 5 for _ in range(106)]
    batches = list(pack_batches(tokens, pad_id=1, max_tokens=64, token_budget=8192))
    assert sorted(b.ids.shape[0] for b in batches) == [12, 96]  # not one batch of 128


def test_ladder_is_bounded_and_increasing() -> None:
    ladder = bucket_ladder(1000)
    assert ladder[-1] == 1000 and all(b > a for a, b in itertools.pairwise(ladder))
    assert len(ladder) < 60


def test_windows_start_with_cls_and_fit() -> None:
    tokens = np.concatenate(([3], np.arange(300) + 5)).astype(np.int32)
    pieces = split_windows(tokens, 128)
    assert all(p[0] == 3 and len(p) <= 128 for p in pieces)
    np.testing.assert_array_equal(np.concatenate([p[1:] for p in pieces]), tokens[1:])


def test_batched_equals_one_by_one(executor: EmbeddingExecutor) -> None:
    seqs = _random_seqs(np.random.default_rng(1), [30, 150, 400, 31, 90, 600])
    together = executor.embed(seqs)
    alone = np.concatenate([executor.embed([s]) for s in seqs])
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_long_sequence_is_length_weighted_mean_of_windows(executor: EmbeddingExecutor) -> None:
    model = executor.model
    seq = _random_seqs(np.random.default_rng(2), [1500])[0]  # ~250 tokens > tiny's 128
    tokens = model.tokenizer.encode(seq)
    pieces = split_windows(tokens, model.config.max_tokens)
    assert len(pieces) > 1
    window_seqs = []
    start = 0
    for piece in pieces:  # windows of whole 6-mers: 6 bases per token after <cls>
        window_seqs.append(seq[start : start + 6 * (len(piece) - 1)])
        start += 6 * (len(piece) - 1)
    per_window = executor.embed(window_seqs)
    weights = np.array([len(p) for p in pieces], np.float32)
    expected = (per_window * weights[:, None]).sum(0) / weights.sum()
    before = executor.stats.windowed
    np.testing.assert_allclose(executor.embed([seq])[0], expected, atol=2e-5)
    assert executor.stats.windowed == before + 1


def test_one_compilation_per_shape(executor: EmbeddingExecutor) -> None:
    seqs = _random_seqs(np.random.default_rng(3), [60] * 40)
    shapes_before = set(executor.stats.shapes)
    executor.embed(seqs)
    executor.embed(seqs)
    new = executor.stats.shapes - shapes_before
    assert executor._forward._cache_size() >= len(executor.stats.shapes) >= len(new)
    size = executor._forward._cache_size()
    executor.embed(seqs)
    assert executor._forward._cache_size() == size
