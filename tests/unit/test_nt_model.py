"""Encoder properties the embedding and tuning code rely on."""

from __future__ import annotations

from dataclasses import replace

import jax
import numpy as np

from bioscan_assets.core.nt_model import NucleotideTransformer, mean_pool
from bioscan_assets.core.presets import PRESETS, load_model, random_params, weights_hash


def _pooled(model, ids, mask, config=None):
    module = NucleotideTransformer(config or model.config)
    return np.asarray(mean_pool(module.apply({"params": model.params}, ids, mask), mask))


def test_padding_does_not_change_a_sequence_embedding() -> None:
    tiny = load_model("tiny")
    ids = tiny.tokenizer.encode("ACGTACGGATTACA" * 3)
    alone = _pooled(tiny, ids[None], np.ones((1, ids.size), bool))
    padded = np.full((2, ids.size + 17), tiny.tokenizer.pad_id, np.int32)
    padded[0, : ids.size] = ids
    padded[1, :5] = ids[:5]
    batch = _pooled(tiny, padded, padded != tiny.tokenizer.pad_id)
    np.testing.assert_allclose(batch[0], alone[0], atol=1e-5)


def test_preset_weights_are_deterministic() -> None:
    config = PRESETS["tiny"]
    assert weights_hash(random_params(config)) == weights_hash(random_params(config))
    assert weights_hash(random_params(config, seed=1)) != weights_hash(random_params(config))
    assert load_model("tiny").pretrained is False


def test_lora_with_zero_b_equals_base() -> None:
    tiny = load_model("tiny")
    lora_config = replace(tiny.config, lora_rank=4)
    ids = tiny.tokenizer.encode("ACGTACGGATTACAGGT")[None]
    mask = np.ones(ids.shape, bool)
    init = NucleotideTransformer(lora_config).init(jax.random.PRNGKey(0), ids, mask)["params"]
    params = jax.tree.map(lambda x: x, tiny.params)
    for index in range(lora_config.num_layers):
        for target in lora_config.lora_targets:
            params[f"layer_{index}"][target].update(
                {k: v for k, v in init[f"layer_{index}"][target].items() if k.startswith("lora")}
            )
    base = _pooled(tiny, ids, mask)
    lora = np.asarray(
        mean_pool(NucleotideTransformer(lora_config).apply({"params": params}, ids, mask), mask)
    )
    np.testing.assert_allclose(lora, base, atol=1e-6)


def test_demo_preset_is_2560_wide() -> None:
    demo = PRESETS["demo"]
    assert demo.hidden_size == 2560 and demo.num_heads == 20 and demo.intermediate_size == 10240
    assert PRESETS["nt-2.5b-multi-species"].num_layers == 32
    assert 2.4e9 < PRESETS["nt-2.5b-multi-species"].encoder_parameter_count() < 2.6e9
