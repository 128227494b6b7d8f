"""Nucleotide Transformer v1 encoder (ESM architecture) in Flax.

Matches transformers' `EsmModel` with absolute positions: learned positions offset by
`pad_token_id + 1`, pre-LayerNorm blocks, exact GELU, `emb_layer_norm_after`, and the
`token_dropout` rescaling of embeddings at inference. Parameters stay float32; `dtype` is the
compute dtype (bf16 on accelerators). Optional LoRA on the attention projections for tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

MASK_RATIO_TRAIN = 0.15 * 0.8  # fixed in every ESM/NT training run; used by token_dropout


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
    remat: bool = False

    @property
    def max_tokens(self) -> int:
        """Longest token sequence (with `<cls>`) the learned positions cover."""
        return self.max_position_embeddings - self.pad_token_id - 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token: 2 x matmul parameters plus attention scores and mixing."""
        h, f = self.hidden_size, self.intermediate_size
        dense = 2 * (4 * h * h + 2 * h * f)
        attention = 2 * 2 * seq_len * h
        return float(self.num_layers * (dense + attention))

    def encoder_parameter_count(self) -> int:
        h, f = self.hidden_size, self.intermediate_size
        per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 4 * h
        embeddings = (self.vocab_size + self.max_position_embeddings) * h
        return self.num_layers * per_layer + embeddings + 2 * h


class LoRADense(nn.Module):
    """Dense layer with an optional low-rank update; B starts at zero so it starts as the base."""

    features: int
    rank: int
    alpha: float
    dropout: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        y = nn.Dense(self.features, dtype=self.dtype, name="base")(x)
        if self.rank <= 0:
            return y
        a = self.param(
            "lora_a", nn.initializers.kaiming_uniform(), (x.shape[-1], self.rank), jnp.float32
        )
        b = self.param("lora_b", nn.initializers.zeros, (self.rank, self.features), jnp.float32)
        h = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        update = (h @ a.astype(self.dtype)) @ b.astype(self.dtype)
        return y + update * (self.alpha / self.rank)


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=eps, dtype=jnp.float32, name=name)


class NTLayer(nn.Module):
    config: NTConfig
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        batch, length, _ = x.shape

        def projection(name: str) -> nn.Module:
            rank = cfg.lora_rank if name in cfg.lora_targets else 0
            return LoRADense(
                cfg.hidden_size, rank, cfg.lora_alpha, cfg.lora_dropout, self.dtype, name=name
            )

        h = _layer_norm(cfg.layer_norm_eps, "attention_layer_norm")(x).astype(self.dtype)
        shape = (batch, length, cfg.num_heads, cfg.head_dim)
        q = projection("query")(h, deterministic).reshape(shape) / math.sqrt(cfg.head_dim)
        k = projection("key")(h, deterministic).reshape(shape)
        v = projection("value")(h, deterministic).reshape(shape)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) + bias
        weights = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        context = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, -1)
        x = x + nn.Dense(cfg.hidden_size, dtype=self.dtype, name="attention_output")(context)

        h = _layer_norm(cfg.layer_norm_eps, "ffn_layer_norm")(x).astype(self.dtype)
        h = nn.Dense(cfg.intermediate_size, dtype=self.dtype, name="intermediate")(h)
        h = jax.nn.gelu(h, approximate=False)
        return x + nn.Dense(cfg.hidden_size, dtype=self.dtype, name="output")(h)


class NucleotideTransformer(nn.Module):
    config: NTConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        """Last hidden state [B, T, H] (float32) after `emb_layer_norm_after`."""
        cfg = self.config
        mask = attention_mask.astype(bool)
        mask_f = mask.astype(jnp.float32)
        x = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="word_embeddings")(input_ids)
        if cfg.token_dropout:
            is_mask_token = input_ids == cfg.mask_token_id
            x = jnp.where(is_mask_token[..., None], 0.0, x)
            observed = is_mask_token.sum(-1) / jnp.maximum(mask_f.sum(-1), 1.0)
            x = x * ((1 - MASK_RATIO_TRAIN) / (1 - observed))[:, None, None]
        not_pad = (input_ids != cfg.pad_token_id).astype(jnp.int32)
        positions = jnp.cumsum(not_pad, axis=1) * not_pad + cfg.pad_token_id
        x = x + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, name="position_embeddings")(
            positions
        )
        x = x * mask_f[..., None]

        bias = jnp.where(mask[:, None, None, :], 0.0, jnp.finfo(jnp.float32).min)
        layer_cls = nn.remat(NTLayer, static_argnums=(3,)) if cfg.remat else NTLayer
        for index in range(cfg.num_layers):
            x = layer_cls(cfg, self.dtype, name=f"layer_{index}")(x, bias, deterministic)
        return _layer_norm(cfg.layer_norm_eps, "emb_layer_norm_after")(x)


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean of the last hidden layer over non-pad tokens (`<cls>` included) -> float32 [B, H]."""
    mask = attention_mask.astype(jnp.float32)[..., None]
    total = (hidden.astype(jnp.float32) * mask).sum(axis=1)
    return total / jnp.maximum(mask.sum(axis=1), 1.0)


def param_shapes(config: NTConfig) -> dict:
    """Parameter tree of shapes, without allocating or computing anything."""
    module = NucleotideTransformer(config)
    ids = jnp.zeros((1, 8), jnp.int32)
    tree = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), ids, ids > 0))["params"]
    return jax.tree.map(lambda s: tuple(s.shape), tree)
