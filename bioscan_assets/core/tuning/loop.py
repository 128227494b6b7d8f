"""The training loop: LoRA leaves and a seven-rank taxonomy head on the frozen encoder.

- Loss: per-rank masked cross-entropy (unknown ranks and labels are -1 and masked out),
  combined with per-rank weights (coarse ranks weigh more).
- Optimiser: AdamW with linear warmup and cosine decay, global-norm clipping. Only the LoRA
  leaves and the head are differentiated; the base tree is an argument, never updated or saved.
- Data-parallel: every batch is sharded along the accelerator mesh's `data` axis, parameters are
  replicated; XLA inserts the gradient all-reduce.
- Determinism: batch contents, crops and dropout keys are functions of (seed, step) only, so a
  run resumed from a checkpoint computes the same updates as one that never stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.model import lora as lora_mod
from bioscan_assets.core.model.loaded import LoadedModel
from bioscan_assets.core.model.nt_model import NucleotideTransformer, mean_pool
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.batches import training_batch
from bioscan_assets.core.tuning.checkpoints import CHECKPOINT_PREFIX, CheckpointSync
from bioscan_assets.core.tuning.config import TrainConfig, run_key
from bioscan_assets.core.tuning.labels import LabelVocab

log = logging.getLogger(__name__)


class TaxonomyHead(nn.Module):
    """LayerNorm on the pooled embedding, then one linear classifier per rank."""

    num_classes: tuple[int, ...]

    @nn.compact
    def __call__(self, pooled: jax.Array) -> list[jax.Array]:
        x = nn.LayerNorm(dtype=jnp.float32, name="norm")(pooled.astype(jnp.float32))
        return [
            nn.Dense(max(1, n), dtype=jnp.float32, name=f"rank_{rank}")(x)
            for rank, n in zip(RANKS, self.num_classes, strict=True)
        ]


@dataclass
class TrainResult:
    lora: dict  # numpy tree, LoRA leaves only
    head: dict  # numpy tree
    vocab: LabelVocab
    config: TrainConfig
    run_key: str
    steps: int
    resumed_from_step: int | None
    resumed_from: str | None
    history: list[dict[str, float]]
    train_seconds: float
    first_step_seconds: float
    sequences_per_s: float
    tokens_per_s: float
    parameters: dict[str, Any]
    checkpoints: dict[str, Any] = field(default_factory=dict)

    last_loss: float | None = None

    def final_loss(self) -> float | None:
        if self.history:
            return self.history[-1]["loss"]
        return (
            self.last_loss if self.last_loss is not None and np.isfinite(self.last_loss) else None
        )


def _batch_size(config: TrainConfig, devices: int) -> int:
    return -(-config.batch_size // devices) * devices


def _loss_terms(
    logits: list[jax.Array], labels: jax.Array, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
    per_rank, present = [], []
    for r, lg in enumerate(logits):
        y = labels[:, r]
        valid = y >= 0
        ce = optax.softmax_cross_entropy_with_integer_labels(lg, jnp.maximum(y, 0))
        n = valid.sum()
        per_rank.append((ce * valid).sum() / jnp.maximum(n, 1))
        present.append(n > 0)
    per_rank_arr = jnp.stack(per_rank)
    w = weights * jnp.stack(present)
    return (w * per_rank_arr).sum() / jnp.maximum(w.sum(), 1e-9), per_rank_arr


def train_classifier(
    sequences: Sequence[str],
    lineages: Sequence[Sequence[str | None]],
    model: LoadedModel,
    config: TrainConfig,
    *,
    workdir: str | Path,
    ids: Sequence[str] | None = None,
    accelerator: Accelerator | None = None,
    store: Store | None = None,
    store_prefix: str = CHECKPOINT_PREFIX,
    say: Callable[[str], None] = log.info,
    on_metrics: Callable[[dict[str, float], int], None] | None = None,
    stop_after_step: int | None = None,
) -> TrainResult:
    """Train (or resume) the adapter and head; `ids` name the sequences for the run key."""
    if not sequences or len(sequences) != len(lineages):
        raise ValueError(f"{len(sequences)} sequences for {len(lineages)} lineages")
    if config.crop_tokens > model.config.max_tokens:
        raise ValueError(
            f"crop_tokens={config.crop_tokens} exceeds the model's {model.config.max_tokens} positions"
        )
    accelerator = accelerator or Accelerator.discover()
    vocab = LabelVocab.from_lineages(lineages)
    labels = vocab.encode(lineages)
    tokenizer = model.tokenizer
    tokens = tokenizer.encode_batch(list(sequences))
    ids = list(ids) if ids is not None else [f"#{i}" for i in range(len(sequences))]
    key = run_key(config, model, ids, vocab, labels)
    batch_size = _batch_size(config, accelerator.device_count)

    settings = config.lora
    enc_config = settings.apply_to(model.config, remat=config.remat)
    encoder = NucleotideTransformer(enc_config, dtype=accelerator.dtype)
    head = TaxonomyHead(vocab.sizes)
    head_params = head.init(
        jax.random.PRNGKey(config.seed), jnp.zeros((1, model.config.hidden_size), jnp.float32)
    )["params"]
    trainable = {
        "lora": lora_mod.init_lora(model.config, settings, config.seed),
        "head": jax.tree.map(np.asarray, head_params),
    }
    frozen = model.params
    head_count = lora_mod.count(trainable["head"])
    parameters = lora_mod.trainable_fraction(model.config, settings, head_count)
    parameters["actual_trainable"] = lora_mod.count(trainable)
    tx = config.optimizer()
    schedule = config.schedule()
    weights = jnp.asarray(config.rank_weights, jnp.float32)
    pad_id = tokenizer.pad_id

    def loss_fn(train_tree, frozen_tree, ids_b, labels_b, rng):
        mask = ids_b != pad_id
        hidden = encoder.apply(
            {"params": frozen_tree, "lora": train_tree["lora"]},
            ids_b,
            mask,
            deterministic=False,
            rngs={"dropout": rng},
        )
        logits = head.apply({"params": train_tree["head"]}, mean_pool(hidden, mask))
        return _loss_terms(logits, labels_b, weights)

    def train_step(state, frozen_tree, ids_b, labels_b):
        rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), state["step"])
        (loss, per_rank), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["trainable"], frozen_tree, ids_b, labels_b, rng
        )
        updates, opt_state = tx.update(grads, state["opt_state"], state["trainable"])
        new_state = {
            "step": state["step"] + 1,
            "loss": loss,
            "trainable": optax.apply_updates(state["trainable"], updates),
            "opt_state": opt_state,
        }
        return new_state, loss, per_rank, optax.tree.norm(grads)

    rep, data = accelerator.replicated, accelerator.batch_sharding
    step_fn = jax.jit(
        train_step,
        in_shardings=(rep, rep, data, data),
        out_shardings=(rep, rep, rep, rep),
        donate_argnums=(0,),
    )
    state = {
        "step": np.asarray(0, np.int32),
        "loss": np.asarray(
            np.nan, np.float32
        ),  # the last step's, so a finished run resumed says it
        "trainable": trainable,
        "opt_state": jax.tree.map(np.asarray, tx.init(trainable)),
    }
    workdir = Path(workdir)
    sync = CheckpointSync(
        workdir / key / "checkpoints",
        config.keep_checkpoints,
        store,
        f"{store_prefix.strip('/')}/{key}",
        say,
    )
    resumed_step, resumed_from = sync.latest()
    if resumed_step is not None:
        state = sync.restore(resumed_step, state)
        say(f"resuming run {key} from step {resumed_step} ({resumed_from} checkpoint)")
    state = accelerator.replicate(state)
    frozen_dev = accelerator.replicate(frozen)

    history: list[dict[str, float]] = []
    start = int(np.asarray(state["step"]))
    last_save = time.monotonic()
    started = time.perf_counter()
    first_step_s = 0.0
    timed_s, timed_steps = 0.0, 0
    real_tokens = 0
    try:
        for step in range(start, config.steps):
            t = time.perf_counter()
            ids_np, labels_np = training_batch(tokens, labels, step, config, batch_size, pad_id)
            state, loss, per_rank, grad_norm = step_fn(
                state,
                frozen_dev,
                accelerator.shard_batch(ids_np),
                accelerator.shard_batch(labels_np),
            )
            loss_v = float(loss)  # waits for the step
            elapsed = time.perf_counter() - t
            if step == start:
                first_step_s = elapsed
            else:
                timed_s += elapsed
                timed_steps += 1
            batch_tokens = int((ids_np != pad_id).sum())
            real_tokens += batch_tokens
            if not np.isfinite(loss_v):
                raise FloatingPointError(f"loss is {loss_v} at step {step}; lower learning_rate")
            record = {
                "loss": loss_v,
                "learning_rate": float(schedule(step)),
                "grad_norm": float(grad_norm),
                "sequences_per_s": batch_size / elapsed,
                "tokens_per_s": batch_tokens / elapsed,
                **{f"loss_{rank}": float(v) for rank, v in zip(RANKS, per_rank, strict=True)},
            }
            history.append(record)
            if on_metrics:
                on_metrics(record, step + 1)
            done = step + 1
            due = done % config.checkpoint_every_steps == 0 or (
                time.monotonic() - last_save >= config.checkpoint_every_minutes * 60
            )
            if due or done == config.steps:
                sync.save(done, state)
                last_save = time.monotonic()
            if stop_after_step is not None and done >= stop_after_step:
                break
    finally:
        sync.close()
    wall = time.perf_counter() - started
    final = jax.tree.map(np.asarray, state["trainable"])
    per_step = timed_s / timed_steps if timed_steps else first_step_s
    return TrainResult(
        lora=final["lora"],
        head=final["head"],
        vocab=vocab,
        config=config,
        run_key=key,
        steps=int(np.asarray(state["step"])),
        resumed_from_step=resumed_step,
        resumed_from=resumed_from,
        history=history,
        train_seconds=wall,
        first_step_seconds=first_step_s,
        sequences_per_s=batch_size / per_step if per_step else 0.0,
        tokens_per_s=(real_tokens / max(len(history), 1)) / per_step if per_step else 0.0,
        parameters=parameters,
        last_loss=float(np.asarray(state["loss"])),
        checkpoints={
            "local_dir": str(sync.local_dir),
            "store_prefix": sync.store.url(sync.prefix) if sync.store else None,
            "saves": len(sync.save_seconds),
            "max_save_s": round(max(sync.save_seconds, default=0.0), 4),
            "uploaded_steps": sync.uploaded,
            "upload_errors": sync.upload_errors,
        },
    )
