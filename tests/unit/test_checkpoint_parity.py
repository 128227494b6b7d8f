"""Our Flax encoder loaded from a Hugging Face checkpoint equals transformers' EsmModel."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import EsmConfig, EsmModel

from bioscan_assets.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bioscan_assets.core.nt_model import mean_pool
from bioscan_assets.core.presets import load_model
from bioscan_assets.core.tokenizer import NTTokenizer

LENGTHS = [5, 37, 120, 301]


def _hf_model(tmp_path, safe: bool):
    tokenizer = NTTokenizer.standard()
    config = EsmConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_id,
        mask_token_id=tokenizer.mask_id,
        position_embedding_type="absolute",
        token_dropout=True,
        emb_layer_norm_before=False,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    model = EsmModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():  # non-trivial LayerNorm/bias values so a swapped tensor shows
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory, safe_serialization=safe)
    tokenizer.write_vocab_file(directory / "vocab.txt")
    return model, directory, tokenizer


def _batch(tokenizer: NTTokenizer, rng: np.random.Generator):
    seqs = ["".join(rng.choice(list("ACGTN"), n, p=[0.24] * 4 + [0.04])) for n in LENGTHS]
    encoded = [tokenizer.encode(s) for s in seqs]
    encoded[2][5] = tokenizer.mask_id  # exercise the token_dropout rescaling
    width = max(len(e) for e in encoded)
    ids = np.full((len(encoded), width), tokenizer.pad_id, np.int32)
    for row, e in enumerate(encoded):
        ids[row, : len(e)] = e
    return ids, ids != tokenizer.pad_id


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_bin"])
def test_hidden_states_match_transformers(tmp_path, safe: bool) -> None:
    hf, directory, tokenizer = _hf_model(tmp_path, safe)
    loaded = load_checkpoint(str(directory))
    ids, mask = _batch(tokenizer, np.random.default_rng(1))
    with torch.no_grad():
        expected = hf(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
        ).last_hidden_state.numpy()
    hidden = np.asarray(loaded.module().apply({"params": loaded.params}, ids, mask))
    valid = mask[..., None]
    assert np.abs((hidden - expected) * valid).max() <= 1e-4
    pooled = np.asarray(mean_pool(hidden, mask))
    expected_pooled = (expected * valid).sum(1) / mask.sum(1, keepdims=True)
    assert np.abs(pooled - expected_pooled).max() <= 1e-4

    bf16 = np.asarray(loaded.module(jnp.bfloat16).apply({"params": loaded.params}, ids, mask))
    bf16_pooled = np.asarray(mean_pool(bf16, mask))
    # measured 3.9e-3 pooled (8.8e-3 per token); a wrong mapping is off by O(1)
    assert np.abs(bf16_pooled - expected_pooled).max() <= 1e-2


def test_round_trip_and_hash(tmp_path) -> None:
    tiny = load_model("tiny")
    save_checkpoint(tiny, tmp_path / "export")
    again = load_checkpoint(str(tmp_path / "export"))
    assert again.weights_hash == tiny.weights_hash
    assert again.model_id == f"export-{tiny.weights_hash[:8]}"
    assert again.pretrained is True and tiny.pretrained is False


def test_missing_unexpected_and_shape_errors_name_keys(tmp_path) -> None:
    from safetensors.numpy import load_file, save_file

    _hf, directory, _tok = _hf_model(tmp_path, True)
    state = load_file(str(directory / "model.safetensors"))
    state.pop("encoder.layer.1.attention.self.key.weight")
    state["encoder.layer.0.surprise.weight"] = np.zeros(3, np.float32)
    state["encoder.layer.2.output.dense.bias"] = np.zeros(7, np.float32)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(str(directory))
    message = str(error.value)
    assert "layer_1/key/base/kernel" in message
    assert "encoder.layer.0.surprise.weight" in message
    assert "encoder.layer.2.output.dense.bias: (7,)" in message


def test_rotary_checkpoints_are_refused(tmp_path) -> None:
    _hf, directory, _tok = _hf_model(tmp_path, True)
    config = (directory / "config.json").read_text().replace('"absolute"', '"rotary"')
    (directory / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match="position_embedding_type='rotary'"):
        load_checkpoint(str(directory))


def test_gcs_checkpoint_loads(tmp_path, gcs_bucket) -> None:
    from bioscan_assets.core.storage import Store

    tiny = load_model("tiny")
    save_checkpoint(tiny, tmp_path / "export")
    url = f"gs://{gcs_bucket}/models/tiny-export"
    store = Store(url)
    for path in (tmp_path / "export").iterdir():
        store.put_file(path, path.name)
    assert load_checkpoint(url).weights_hash == tiny.weights_hash
