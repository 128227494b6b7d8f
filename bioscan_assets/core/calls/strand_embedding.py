"""Query embeddings for the kNN calls that depend on the sequence alone, never on its batch.

The embedding step packs batches of varying row counts, and a row's float sums then vary
with its batch-mates in the last bits (measured: up to 6e-7), enough to flip a tie between
two references. Here every batch has the same row count and a width fixed by the length
bucket, so a sequence's vector is bit-identical whichever other reads it arrives with.
Long sequences are windowed and length-weighted as the embedding step does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.batching import bucket_ladder
from bioscan_assets.core.embedding.forward import (
    jit_pooled_forward,
    length_weighted_mean,
    tokenise_windows,
)
from bioscan_assets.core.model.loaded import LoadedModel


class StrandEmbedder:
    """Mean-pooled encoder embeddings in fixed-shape batches (one compilation per bucket)."""

    def __init__(self, model: LoadedModel, accelerator: Accelerator, rows_per_device: int = 8):
        self.model = model
        self.accelerator = accelerator
        self.rows = rows_per_device * accelerator.device_count
        self._ladder = np.array(bucket_ladder(model.config.max_tokens))
        self._params = accelerator.replicate(model.params)
        self._forward = jit_pooled_forward(model, accelerator, accelerator.replicated)

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def embed(self, sequences: Sequence[str]) -> np.ndarray:
        """float32 [N, H] in input order."""
        pad_id = self.model.tokenizer.pad_id
        windows, owner = tokenise_windows(self.model, sequences)
        pooled = np.zeros((len(windows), self.model.config.hidden_size), np.float32)
        by_width: dict[int, list[int]] = defaultdict(list)
        for index, window in enumerate(windows):
            width = int(self._ladder[np.searchsorted(self._ladder, len(window))])
            by_width[width].append(index)
        for width, members in sorted(by_width.items()):
            for start in range(0, len(members), self.rows):
                chunk = members[start : start + self.rows]
                ids = np.full((self.rows, width), pad_id, np.int32)
                for slot, member in enumerate(chunk):
                    ids[slot, : len(windows[member])] = windows[member]
                out = self._forward(self._params, self.accelerator.shard_batch(ids))
                pooled[chunk] = np.asarray(out, np.float32)[: len(chunk)]
        return length_weighted_mean(pooled, windows, owner, len(sequences))
