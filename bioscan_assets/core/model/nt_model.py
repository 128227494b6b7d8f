"""Nucleotide Transformer v1 encoder (ESM architecture) in Flax.

Matches transformers' `EsmModel` with absolute positions: learned positions computed from the
input ids (non-pad tokens numbered from `pad_token_id + 1`, pads keep `pad_token_id`),
pre-LayerNorm blocks, exact GELU, `emb_layer_norm_after`, and the `token_dropout` rescaling of
embeddings at inference. Parameters stay float32; `dtype` is the compute dtype of the matmuls
(bf16 on accelerators) while LayerNorms, softmax and the residual stream stay float32.

LoRA adapters live in their own variable collection, `"lora"`, next to `"params"`: the base
weights (and their hash) never change, an optimiser can take gradients of the adapters alone,
and adapters are saved on their own. `apply({"params": base, "lora": adapters}, ...)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

MASK_RATIO_TRAIN = 0.15 * 0.8  # fixed in every ESM/NT training run; used by token_dropout
DENSE_NAMES = ("query", "key", "value", "attention_output", "intermediate", "output")


@dataclass(frozen=True)
class NTConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int = 1002
    pad_token_id: int = 1
    mask_token_id: int = 2
    layer_norm_eps: float = 1e-12
    token_dropout: bool = True
    lora_rank: int = 0
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("query", "value")
    remat: bool = False  # rematerialise each layer in the backward pass (training memory)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        unknown = sorted(set(self.lora_targets) - set(DENSE_NAMES))
        if unknown:
            raise ValueError(f"lora_targets {unknown} are not layers; choose from {DENSE_NAMES}")
        if self.lora_rank < 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError("lora_rank must be >= 0 and lora_dropout in [0, 1)")
        if self.max_tokens < 2:
            raise ValueError(f"max_position_embeddings {self.max_position_embeddings} too small")

    @property
    def max_tokens(self) -> int:
        """Longest token sequence (with `<cls>`) the learned positions cover (1000 for NT v1)."""
        return self.max_position_embeddings - self.pad_token_id - 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Forward FLOPs per token (2 per multiply-add) at a padded length of `seq_len` tokens.

        Dense projections and FFN, attention scores and mixing (which grow with `seq_len`,
        default `max_tokens`); embeddings, norms, softmax and any LoRA update are left out as
        the usual MFU convention does.
        """
        length = self.max_tokens if seq_len is None else seq_len
        h, f = self.hidden_size, self.intermediate_size
        dense = 2 * (4 * h * h + 2 * h * f)
        attention = 2 * 2 * length * h
        return float(self.num_layers * (dense + attention))

    def encoder_parameter_count(self) -> int:
        h, f = self.hidden_size, self.intermediate_size
        per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
        embeddings = (self.vocab_size + self.max_position_embeddings) * h
        return self.num_layers * per_layer + embeddings + 2 * h


class LoRA(nn.Module):
    """Low-rank update `x A B * alpha/rank`; B starts at zero so a fresh adapter changes nothing."""

    features: int
    rank: int
    alpha: float
    dropout: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        shape_a = (x.shape[-1], self.rank)
        a = self.variable(
            "lora",
            "a",
            lambda: nn.initializers.kaiming_uniform()(self.make_rng("params"), shape_a),
        )
        b = self.variable("lora", "b", jnp.zeros, (self.rank, self.features), jnp.float32)
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        update = (x @ a.value.astype(self.dtype)) @ b.value.astype(self.dtype)
        return update * jnp.asarray(self.alpha / self.rank, self.dtype)


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=eps, dtype=jnp.float32, name=name)


class NTLayer(nn.Module):
    config: NTConfig
    dtype: jnp.dtype

    def _dense(self, name: str, features: int, x: jax.Array, deterministic: bool) -> jax.Array:
        cfg = self.config
        y = nn.Dense(features, dtype=self.dtype, name=name)(x)
        if cfg.lora_rank > 0 and name in cfg.lora_targets:
            lora = LoRA(
                features,
                cfg.lora_rank,
                cfg.lora_alpha,
                cfg.lora_dropout,
                self.dtype,
                name=f"{name}_lora",
            )
            y = y + lora(x, deterministic)
        return y

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        batch, length, _ = x.shape
        shape = (batch, length, cfg.num_heads, cfg.head_dim)

        h = _layer_norm(cfg.layer_norm_eps, "attention_layer_norm")(x).astype(self.dtype)
        q = self._dense("query", cfg.hidden_size, h, deterministic).reshape(shape)
        k = self._dense("key", cfg.hidden_size, h, deterministic).reshape(shape)
        v = self._dense("value", cfg.hidden_size, h, deterministic).reshape(shape)
        q = q * jnp.asarray(1.0 / math.sqrt(cfg.head_dim), self.dtype)  # ESM scales q first
        # scores leave the matmul in f32 (no bf16 rounding of logits before the softmax)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) + bias
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        context = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, -1)
        x = x + self._dense("attention_output", cfg.hidden_size, context, deterministic)

        h = _layer_norm(cfg.layer_norm_eps, "ffn_layer_norm")(x).astype(self.dtype)
        h = self._dense("intermediate", cfg.intermediate_size, h, deterministic)
        h = jax.nn.gelu(h, approximate=False)
        return x + self._dense("output", cfg.hidden_size, h, deterministic)


def position_ids(input_ids: jax.Array, pad_token_id: int) -> jax.Array:
    """As transformers' `create_position_ids_from_input_ids`: from the ids, not the mask."""
    not_pad = (input_ids != pad_token_id).astype(jnp.int32)
    return jnp.cumsum(not_pad, axis=1) * not_pad + pad_token_id


class NucleotideTransformer(nn.Module):
    config: NTConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        """Last hidden state [B, T, H] (float32) after `emb_layer_norm_after`.

        Sequences must fit `config.max_tokens`; longer ones index past the learned positions
        and come out as NaN, so window them first.
        """
        cfg = self.config
        input_ids = input_ids.astype(jnp.int32)
        mask = attention_mask.astype(bool)
        mask_f = mask.astype(jnp.float32)
        x = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="word_embeddings")(input_ids)
        if cfg.token_dropout:
            is_mask_token = input_ids == cfg.mask_token_id
            x = jnp.where(is_mask_token[..., None], 0.0, x)
            observed = is_mask_token.sum(-1) / jnp.maximum(mask_f.sum(-1), 1.0)
            x = x * ((1 - MASK_RATIO_TRAIN) / (1 - observed))[:, None, None]
        positions = position_ids(input_ids, cfg.pad_token_id)
        x = x + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, name="position_embeddings")(
            positions
        )
        x = x * mask_f[..., None]

        bias = jnp.where(mask[:, None, None, :], 0.0, jnp.finfo(jnp.float32).min)
        # static_argnums counts `self`: (self, x, bias, deterministic)
        layer_cls = nn.remat(NTLayer, static_argnums=(3,)) if cfg.remat else NTLayer
        for index in range(cfg.num_layers):
            x = layer_cls(cfg, self.dtype, name=f"layer_{index}")(x, bias, deterministic)
        return _layer_norm(cfg.layer_norm_eps, "emb_layer_norm_after")(x)


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean of the last hidden layer over non-pad tokens (`<cls>` included) -> float32 [B, H]."""
    mask = attention_mask.astype(jnp.float32)[..., None]
    total = (hidden.astype(jnp.float32) * mask).sum(axis=1)
    return total / jnp.maximum(mask.sum(axis=1), 1.0)


def variable_shapes(config: NTConfig) -> dict:
    """All variable collections as trees of shapes, without allocating or computing anything."""
    module = NucleotideTransformer(config)
    ids = jnp.zeros((1, 8), jnp.int32)
    tree = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), ids, ids > 0))
    return jax.tree.map(lambda s: tuple(s.shape), dict(tree))


def param_shapes(config: NTConfig) -> dict:
    """The base parameter tree (`"params"`) as shapes."""
    return variable_shapes(config)["params"]


def init_lora(config: NTConfig, seed: int = 0) -> dict:
    """Fresh adapters (A random, B zero) for `config.lora_rank > 0`, float32."""
    if config.lora_rank <= 0:
        raise ValueError("init_lora needs config.lora_rank > 0")
    module = NucleotideTransformer(config)
    ids = jnp.zeros((1, 8), jnp.int32)

    def lora_only():
        return module.init(jax.random.PRNGKey(seed), ids, ids > 0)["lora"]

    return jax.jit(lora_only)()
