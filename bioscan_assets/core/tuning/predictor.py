"""An adapter applied onto its base model: per-rank probabilities and calls with abstention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.batching import split_windows
from bioscan_assets.core.model import lora as lora_mod
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.model.nt_model import NucleotideTransformer, mean_pool
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.adapter import Adapter
from bioscan_assets.core.tuning.batches import crop
from bioscan_assets.core.tuning.labels import Lineage
from bioscan_assets.core.tuning.loop import TaxonomyHead


@dataclass
class ClassifierPrediction:
    labels: list[Lineage]  # after abstention (a rank below an abstained one is abstained too)
    raw_labels: list[Lineage]  # argmax at every rank
    confidence: np.ndarray  # float [N, 7]: probability of the argmax


class TaxonomyPredictor:
    """An adapter applied onto its base model: the base weights are checked by hash."""

    def __init__(
        self,
        model: LoadedModel,
        adapter: Adapter,
        accelerator: Accelerator | None = None,
        threshold: float = 0.5,
    ):
        if model.weights_hash != adapter.base_weights_hash:
            raise ValueError(
                f"adapter {adapter.version or '(unsaved)'} was trained on {adapter.base_model_id} "
                f"weights {adapter.base_weights_hash[:12]}, but the loaded base model "
                f"{model.model_id} has weights {model.weights_hash[:12]}"
            )
        self.model = model
        self.adapter = adapter
        self.threshold = threshold
        self.accelerator = accelerator or Accelerator.discover()
        config = adapter.config
        enc_config = config.lora.apply_to(model.config)
        encoder = NucleotideTransformer(enc_config, dtype=self.accelerator.dtype)
        head = TaxonomyHead(adapter.vocab.sizes)
        pad_id = model.tokenizer.pad_id
        lora_mod.check_matches(model.config, config.lora, adapter.lora)
        self._params = self.accelerator.replicate(
            {"base": model.params, "lora": adapter.lora, "head": adapter.head}
        )

        def forward(params, ids_b):
            mask = ids_b != pad_id
            hidden = encoder.apply({"params": params["base"], "lora": params["lora"]}, ids_b, mask)
            logits = head.apply({"params": params["head"]}, mean_pool(hidden, mask))
            return [jax.nn.softmax(lg, axis=-1) for lg in logits]

        acc = self.accelerator
        self._forward = jax.jit(
            forward, in_shardings=(acc.replicated, acc.batch_sharding), out_shardings=acc.replicated
        )

    def probabilities(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """Per rank [N, C]: window probabilities averaged with token-count weights.

        An adapter trained on `start` windows sees only each sequence's first window here too.
        """
        config = self.adapter.config
        tokenizer = self.model.tokenizer
        windows, owner = [], []
        for row, tokens in enumerate(tokenizer.encode_batch(list(sequences))):
            if config.window == "random":
                windows_of = split_windows(tokens, config.crop_tokens)
            else:  # the training window itself (`crop` without a generator takes the start)
                windows_of = [crop(tokens, config.crop_tokens, None)]
            for window in windows_of:
                windows.append(window)
                owner.append(row)
        devices = self.accelerator.device_count
        batch = -(-config.eval_batch_size // devices) * devices
        sizes = [max(1, n) for n in self.adapter.vocab.sizes]
        window_probs = [np.zeros((len(windows), n), np.float32) for n in sizes]
        for start in range(0, len(windows), batch):
            chunk = windows[start : start + batch]
            ids = np.full((batch, config.crop_tokens), tokenizer.pad_id, np.int32)
            for row, window in enumerate(chunk):
                ids[row, : len(window)] = window
            outs = self._forward(self._params, self.accelerator.shard_batch(ids))
            for r, out in enumerate(outs):
                window_probs[r][start : start + len(chunk)] = np.asarray(out)[: len(chunk)]
        owner_arr = np.asarray(owner, np.int64)
        weight = np.array([len(w) for w in windows], np.float32)
        totals = np.bincount(owner_arr, weights=weight, minlength=len(sequences))
        result = []
        for probs in window_probs:
            acc = np.zeros((len(sequences), probs.shape[1]), np.float32)
            np.add.at(acc, owner_arr, probs * weight[:, None])
            result.append(acc / np.maximum(totals, 1e-9)[:, None])
        return result

    def predict(self, sequences: Sequence[str]) -> ClassifierPrediction:
        probs = self.probabilities(sequences)
        vocab = self.adapter.vocab
        confidence = np.zeros((len(sequences), len(RANKS)), np.float32)
        raw: list[list[str | None]] = [[] for _ in sequences]
        for r, rank in enumerate(RANKS):
            labels = vocab.labels[rank]
            best = probs[r].argmax(axis=1)
            confidence[:, r] = probs[r].max(axis=1) if labels else 0.0
            for n in range(len(sequences)):
                raw[n].append(labels[best[n]] if labels else None)
        called = []
        for n in range(len(sequences)):
            out: list[str | None] = []
            stopped = False
            for r in range(len(RANKS)):
                stopped = stopped or raw[n][r] is None or confidence[n, r] < self.threshold
                out.append(None if stopped else raw[n][r])
            called.append(tuple(out))
        return ClassifierPrediction(called, [tuple(x) for x in raw], confidence)
