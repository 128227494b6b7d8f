"""The embedding executor: tokenise, batch, run the encoder on the mesh, mean-pool.

A partition's run (`compute.embed_partition`) calls it once per chunk of distinct sequences;
search calls `embed_sequences` for query sequences.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.batching import pack_batches
from bioscan_assets.core.embedding.forward import (
    jit_pooled_forward,
    length_weighted_mean,
    tokenise_windows,
)
from bioscan_assets.core.model.loaded import LoadedModel


@dataclass
class EmbedStats:
    sequences: int = 0
    real_tokens: int = 0
    computed_tokens: int = 0
    windowed: int = 0
    batches: int = 0
    read_s: float = 0.0
    tokenise_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    shapes: set[tuple[int, int]] = field(default_factory=set)

    @property
    def padding_efficiency(self) -> float:
        return self.real_tokens / self.computed_tokens if self.computed_tokens else 1.0

    def as_metadata(self, wall_s: float) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "shapes"}
        out.update(
            compilations=len(self.shapes),
            padding_efficiency=round(self.padding_efficiency, 4),
            sequences_per_s=round(self.sequences / wall_s, 2) if wall_s else 0.0,
            tokens_per_s=round(self.real_tokens / wall_s, 1) if wall_s else 0.0,
            wall_s=round(wall_s, 3),
        )
        for key in ("read_s", "tokenise_s", "compute_s", "write_s"):
            out[key] = round(out[key], 3)
        return out


class EmbeddingExecutor:
    """One model on one accelerator; jitted forward + mean-pool, one compile per batch shape."""

    def __init__(self, model: LoadedModel, accelerator: Accelerator, token_budget: int = 8192):
        self.model = model
        self.accelerator = accelerator
        self.token_budget = token_budget
        self.stats = EmbedStats()
        self.compiled_shapes: set[tuple[int, int]] = set()  # for the process lifetime
        self._params = accelerator.replicate(model.params)
        self._forward = jit_pooled_forward(model, accelerator, accelerator.batch_sharding)

    @property
    def compilations(self) -> int:
        return len(self.compiled_shapes)

    def embed(self, sequences: list[str]) -> np.ndarray:
        """float32 [N, H] in input order; long sequences are windowed and length-weighted."""
        stats = self.stats
        started = time.perf_counter()
        pieces, owner = tokenise_windows(self.model, sequences)
        stats.windowed += int(np.sum(np.bincount(owner, minlength=len(sequences)) > 1))
        stats.tokenise_s += time.perf_counter() - started

        started = time.perf_counter()
        pooled = np.zeros((len(pieces), self.model.config.hidden_size), np.float32)
        pending: list[tuple[Any, np.ndarray]] = []
        for batch in pack_batches(
            pieces,
            pad_id=self.model.tokenizer.pad_id,
            max_tokens=self.model.config.max_tokens,
            token_budget=self.token_budget,
            device_count=self.accelerator.device_count,
        ):
            stats.shapes.add(batch.ids.shape)
            self.compiled_shapes.add(batch.ids.shape)
            stats.batches += 1
            stats.real_tokens += batch.real_tokens
            stats.computed_tokens += batch.computed_tokens
            # dispatch now, fetch later: the host packs the next batch while the device works
            pending.append(
                (self._forward(self._params, self.accelerator.shard_batch(batch.ids)), batch.rows)
            )
            if len(pending) > 1:
                self._collect(pending.pop(0), pooled)
        for item in pending:
            self._collect(item, pooled)
        stats.compute_s += time.perf_counter() - started

        stats.sequences += len(sequences)
        return length_weighted_mean(pooled, pieces, owner, len(sequences))

    @staticmethod
    def _collect(item: tuple[Any, np.ndarray], pooled: np.ndarray) -> None:
        result, rows = item
        values = np.asarray(result)
        real = rows >= 0
        pooled[rows[real]] = values[real]


def embed_sequences(
    sequences: list[str], model: LoadedModel, executor: EmbeddingExecutor | None = None
) -> np.ndarray:
    """Embeddings for ad-hoc sequences (search queries), float32 [N, H]."""
    executor = executor or EmbeddingExecutor(model, Accelerator.discover())
    return executor.embed(sequences)
