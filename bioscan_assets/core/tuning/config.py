"""Training hyper-parameters (the one place their defaults live) and the run key that ties a
checkpoint to what it was computed from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import optax

from bioscan_assets.core.model import lora as lora_mod
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.labels import LabelVocab

DEFAULT_RANK_WEIGHTS: tuple[float, ...] = (2.0, 1.8, 1.5, 1.2, 1.0, 0.8, 0.6)
WINDOWS = ("random", "start")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 16
    batch_size: int = 8
    crop_tokens: int = 64  # <cls> + 63 tokens (~380 bp) per training window
    # "random": a window anywhere in the sequence (reads from any region); "start": always the
    # first window, in training and prediction (references that all begin at the same primer)
    window: str = "random"
    learning_rate: float = 2e-3
    warmup_steps: int = 2
    end_learning_rate_fraction: float = 0.05
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = ("query", "value")
    remat: bool = False
    rank_weights: tuple[float, ...] = DEFAULT_RANK_WEIGHTS
    seed: int = 0
    checkpoint_every_steps: int = 10
    checkpoint_every_minutes: float = 10.0
    keep_checkpoints: int = 3
    eval_batch_size: int = 8

    def __post_init__(self) -> None:
        if len(self.rank_weights) != len(RANKS):
            raise ValueError(f"rank_weights needs {len(RANKS)} values ({', '.join(RANKS)})")
        if self.steps < 1 or self.batch_size < 1 or self.crop_tokens < 2:
            raise ValueError("steps and batch_size must be >= 1, crop_tokens >= 2")
        if self.window not in WINDOWS:
            raise ValueError(f"window={self.window!r}: choose from {', '.join(WINDOWS)}")
        if self.keep_checkpoints < 1 or self.checkpoint_every_steps < 1:
            raise ValueError("keep_checkpoints and checkpoint_every_steps must be >= 1")
        _ = self.lora  # validates the LoRA settings

    @property
    def lora(self) -> lora_mod.LoRASettings:
        return lora_mod.LoRASettings(
            self.lora_rank, self.lora_alpha, self.lora_dropout, tuple(self.lora_targets)
        )

    def schedule(self) -> optax.Schedule:
        warmup = min(self.warmup_steps, max(self.steps - 1, 0))
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=self.learning_rate,
            warmup_steps=warmup,
            decay_steps=max(self.steps, warmup + 1),
            end_value=self.learning_rate * self.end_learning_rate_fraction,
        )

    def optimizer(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(self.clip_norm),
            optax.adamw(self.schedule(), weight_decay=self.weight_decay),
        )

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["lora_targets"] = list(self.lora_targets)
        doc["rank_weights"] = list(self.rank_weights)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TrainConfig:
        """Unknown keys are ignored, so a wider document (a run config) can be passed whole."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in names}
        for key in ("lora_targets", "rank_weights"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _result_affecting(config: TrainConfig) -> dict[str, Any]:
    """Config fields that change the trained weights (not checkpoint cadence)."""
    skip = {"checkpoint_every_steps", "checkpoint_every_minutes", "keep_checkpoints"}
    return {k: v for k, v in config.to_json().items() if k not in skip}


def run_key(
    config: TrainConfig, model: LoadedModel, ids: Sequence[str], vocab: LabelVocab, labels: Any
) -> str:
    """What a checkpoint was computed from; a checkpoint of another key is never resumed."""
    digest = hashlib.sha256()
    digest.update(json.dumps(_result_affecting(config), sort_keys=True).encode())
    digest.update(f"|{model.model_id}|{model.weights_hash}|".encode())
    digest.update(json.dumps(list(ids)).encode())
    digest.update(json.dumps(vocab.labels, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:16]
