"""Encoder properties the embedding and tuning code rely on (tiny preset, real JAX on CPU)."""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bioscan_assets.core.model.loaded import weights_hash
from bioscan_assets.core.model.nt_model import NTConfig, NucleotideTransformer, init_lora, mean_pool
from bioscan_assets.core.model.presets import PRESETS, load_model, random_params

# Pinned: the tiny preset's weights must be the same on every machine and numpy version.
TINY_HASH = "d59ff535ad354d5a5f18842d0aff50ed1876edd0024f830f561fac64ead1881b"
# Pinned too (the value before published names became Hub checkpoints): embeddings filed under
# the demo model's weights stay valid.
DEMO_HASH = "b7ac18a9d4b0ceda569b7e36e8e74d385e71ebd92280289f25d6672899421901"


def _apply(module, variables, ids, mask):
    """Jitted: eager op-by-op dispatch is several times slower on 2 cores."""
    return jax.jit(module.apply)(variables, ids, mask)


def _pooled(model, ids, mask, config=None, variables=None):
    module = NucleotideTransformer(config or model.config)
    hidden = _apply(module, variables or {"params": model.params}, ids, mask)
    return np.asarray(mean_pool(hidden, mask))


def _ids(tokenizer, sequence: str) -> np.ndarray:
    return tokenizer.encode(sequence)[None]


def test_shapes_and_dtypes() -> None:
    tiny = load_model("tiny")
    ids = np.stack([tiny.tokenizer.encode("ACGTACGGATTACAGG")] * 3)
    mask = np.ones(ids.shape, bool)
    for dtype in (jnp.float32, jnp.bfloat16):
        hidden = _apply(tiny.module(dtype), {"params": tiny.params}, ids, mask)
        assert hidden.shape == (3, ids.shape[1], 64) and hidden.dtype == jnp.float32
        pooled = mean_pool(hidden, mask)
        assert pooled.shape == (3, 64) and pooled.dtype == jnp.float32
        assert np.isfinite(np.asarray(pooled)).all()


def test_padding_does_not_change_a_sequence_embedding() -> None:
    tiny = load_model("tiny")
    ids = tiny.tokenizer.encode("ACGTACGGATTACA" * 3)
    alone_hidden = _apply(tiny.module(), {"params": tiny.params}, ids[None], np.ones((1, ids.size)))
    alone = np.asarray(mean_pool(alone_hidden, np.ones((1, ids.size))))
    padded = np.full((2, ids.size + 17), tiny.tokenizer.pad_id, np.int32)
    padded[0, : ids.size] = ids
    padded[1, :5] = ids[:5]
    mask = padded != tiny.tokenizer.pad_id
    hidden = np.asarray(
        _apply(tiny.module(), {"params": tiny.params}, padded, mask.astype(np.int32))
    )
    np.testing.assert_allclose(hidden[0, : ids.size], np.asarray(alone_hidden)[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(mean_pool(hidden, mask))[0], alone[0], atol=1e-5)
    # and the pooled vector is not just the <cls> row or a constant
    assert np.abs(np.asarray(mean_pool(hidden, mask))[1] - alone[0]).max() > 1e-3


def test_longest_sequence_fits_the_positions() -> None:
    tiny = load_model("tiny")
    longest = tiny.tokenizer.encode("ACGTAC" * (tiny.config.max_tokens - 1))
    assert longest.size == tiny.config.max_tokens
    out = _apply(tiny.module(), {"params": tiny.params}, longest[None], np.ones((1, longest.size)))
    assert np.isfinite(np.asarray(out)).all()


def test_preset_weights_are_deterministic() -> None:
    config = PRESETS["tiny"]
    assert weights_hash(random_params(config)) == TINY_HASH
    assert load_model("tiny").weights_hash == TINY_HASH
    assert weights_hash(random_params(config, seed=1)) != TINY_HASH
    kernel = random_params(config)["layer_0"]["intermediate"]["kernel"]
    assert kernel.dtype == np.float32 and abs(kernel.std() - 0.02) < 0.002
    assert load_model("tiny").pretrained is False
    assert load_model("tiny") is load_model(" tiny ".strip())  # cached per spec


def test_demo_weights_are_unchanged() -> None:
    demo = load_model("demo")
    assert demo.weights_hash == DEMO_HASH and demo.model_id == "demo"
    assert demo.pretrained is False and demo.source.startswith("preset:demo (random weights")


def test_unknown_model_spec_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"'no-such-model' is neither a preset \(nt-2\.5b"):
        load_model("no-such-model")
    with pytest.raises(ValueError, match=r"random-nt-2\.5b.* or Hugging Face Hub id org/name"):
        load_model("no-such-model")


def test_lora_with_zero_b_equals_base_and_trains_alone() -> None:
    tiny = load_model("tiny")
    config = replace(tiny.config, lora_rank=4)
    ids = _ids(tiny.tokenizer, "ACGTACGGATTACAGGTNACG")
    mask = np.ones(ids.shape, bool)
    lora = init_lora(config, seed=0)
    assert set(lora["layer_0"]) == {"query_lora", "value_lora"}
    assert not np.asarray(lora["layer_0"]["query_lora"]["b"]).any()
    assert np.asarray(lora["layer_0"]["query_lora"]["a"]).std() > 0

    base = _pooled(tiny, ids, mask)
    with_lora = _pooled(tiny, ids, mask, config, {"params": tiny.params, "lora": lora})
    np.testing.assert_allclose(with_lora, base, atol=1e-6)

    # a non-zero B changes the output, and gradients reach the adapters only
    nudged = jax.tree.map(lambda x: x + 0.05, lora)
    moved = _pooled(tiny, ids, mask, config, {"params": tiny.params, "lora": nudged})
    assert np.abs(moved - base).max() > 1e-3

    module = NucleotideTransformer(config)

    def loss(adapters):
        out = module.apply({"params": tiny.params, "lora": adapters}, ids, mask)
        return (mean_pool(out, mask) ** 2).sum()

    grads = jax.jit(jax.grad(loss))(nudged)
    assert np.abs(np.asarray(grads["layer_1"]["value_lora"]["b"])).max() > 0

    with pytest.raises(Exception, match="lora"):  # adapters forgotten: loud, not silent base
        _apply(module, {"params": tiny.params}, ids, mask)


def test_lora_config_is_validated() -> None:
    with pytest.raises(ValueError, match="lora_targets"):
        replace(PRESETS["tiny"], lora_rank=4, lora_targets=("qurey",))


def test_remat_gives_the_same_output_and_gradient() -> None:
    tiny = load_model("tiny")
    ids = _ids(tiny.tokenizer, "ACGTACGGATTACAGGTNACGTT")
    mask = np.ones(ids.shape, bool)

    def loss(config):
        module = NucleotideTransformer(config)
        return lambda params: (module.apply({"params": params}, ids, mask) ** 2).mean()

    plain = jax.jit(jax.value_and_grad(loss(tiny.config)))(tiny.params)
    remat = jax.jit(jax.value_and_grad(loss(replace(tiny.config, remat=True))))(tiny.params)
    np.testing.assert_allclose(remat[0], plain[0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(remat[1]), jax.tree.leaves(plain[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_presets_and_flops() -> None:
    demo = PRESETS["demo"]
    assert demo.hidden_size == 2560 and demo.num_heads == 20 and demo.intermediate_size == 10240
    assert demo.vocab_size == 4105 and demo.num_layers == 1 and demo.max_tokens == 1000
    big = PRESETS["nt-2.5b-multi-species"]
    assert big.num_layers == 32 and big.max_tokens == 1000
    assert 2.4e9 < big.encoder_parameter_count() < 2.6e9
    assert PRESETS["nt-500m-human-ref"].hidden_size == 1280
    assert PRESETS["tiny"].max_position_embeddings >= 66
    # forward FLOPs per token = 2 x matmul weights per token (+ attention, linear in length)
    per_layer_weights = 4 * 2560**2 + 2 * 2560 * 10240
    assert big.flops_per_token(0) == 2 * 32 * per_layer_weights
    assert big.flops_per_token(1000) - big.flops_per_token(0) == 32 * 4 * 1000 * 2560
    assert big.flops_per_token() == big.flops_per_token(1000)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        NTConfig(4105, 100, 1, 3, 200)
