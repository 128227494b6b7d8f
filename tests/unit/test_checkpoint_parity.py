"""Our Flax encoder loaded from a Hugging Face checkpoint equals transformers' EsmModel.

The correctness test for the model (NT weights cannot be downloaded here): a small random
ESM/NT-v1 config saved with `save_pretrained`, loaded by our loader, run on a padded batch of
mixed lengths, compared with `EsmModel` on torch CPU.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import EsmConfig, EsmForMaskedLM, EsmModel

from bioscan_assets.core.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bioscan_assets.core.model.nt_model import mean_pool
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.model.tokenizer import NTTokenizer
from tests.helpers import random_dna

LENGTHS = [5, 37, 120, 301, 700]  # bases; with 4% N the longest is ~200 of 256 tokens
FP32_TOLERANCE = 1e-4
# bf16 compute (f32 params; LayerNorm, softmax and the residual stream in f32) against torch
# f32, measured on this batch: max |diff| 4.0e-2 per token, 1.8e-2 pooled (hidden values are
# LayerNorm outputs of O(1)); fp32 measured 2.7e-6 and 1.0e-6. Swapping query and key in one
# layer is off by 2.2, so both tolerances still catch a wrong mapping.
BF16_TOKEN_TOLERANCE = 8e-2
BF16_POOLED_TOLERANCE = 4e-2


def _hf_config(tokenizer: NTTokenizer) -> EsmConfig:
    return EsmConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=258,
        pad_token_id=tokenizer.pad_id,
        mask_token_id=tokenizer.mask_id,
        position_embedding_type="absolute",
        token_dropout=True,
        emb_layer_norm_before=False,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def _hf_model(tmp_path, safe: bool = True, masked_lm: bool = False):
    tokenizer = NTTokenizer.standard()
    torch.manual_seed(0)
    cls = EsmForMaskedLM if masked_lm else EsmModel
    kwargs = {} if masked_lm else {"add_pooling_layer": False}
    model = cls(_hf_config(tokenizer), **kwargs).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            # non-trivial LayerNorm/bias values so a swapped tensor shows
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
            # the default init (std 0.02) leaves attention almost uniform and its output tiny,
            # which would hide errors in scores, scaling or masking: make it sharp and strong
            if name.endswith(("query.weight", "key.weight")):
                param.mul_(10.0)
            if name.endswith(("value.weight", "attention.output.dense.weight")):
                param.mul_(5.0)
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory)
    if not safe:
        # transformers 5 always writes safetensors; a legacy pytorch_model.bin is a pickled
        # state_dict, as older save_pretrained(safe_serialization=False) wrote it
        (directory / "model.safetensors").unlink()
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    assert (directory / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
    tokenizer.write_vocab_file(directory / "vocab.txt")
    encoder = model.esm if masked_lm else model
    return encoder, directory, tokenizer


def _batch(tokenizer: NTTokenizer, seed: int = 1):
    rng = np.random.default_rng(seed)
    seqs = [random_dna(rng, n, alphabet="ACGTN", p=[0.24] * 4 + [0.04]) for n in LENGTHS]
    encoded = tokenizer.encode_batch(seqs)
    encoded[2][5] = tokenizer.mask_id  # exercise the token_dropout rescaling
    width = max(len(e) for e in encoded) + 3  # every row padded, the longest too
    assert width - 3 <= 256
    ids = np.full((len(encoded), width), tokenizer.pad_id, np.int32)
    for row, e in enumerate(encoded):
        ids[row, : len(e)] = e
    return ids, ids != tokenizer.pad_id


def _torch_hidden(encoder, ids, mask) -> np.ndarray:
    with torch.no_grad():
        return encoder(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
        ).last_hidden_state.numpy()


def _ours(loaded, ids, mask, dtype=jnp.float32) -> np.ndarray:
    apply = jax.jit(loaded.module(dtype).apply)
    return np.asarray(apply({"params": loaded.params}, ids, mask))


def _max_diffs(hidden, expected, mask) -> tuple[float, float]:
    valid = mask[..., None]
    token = float(np.abs((hidden - expected) * valid).max())
    expected_pooled = (expected * valid).sum(1) / mask.sum(1, keepdims=True)
    pooled = float(np.abs(np.asarray(mean_pool(hidden, mask)) - expected_pooled).max())
    return token, pooled


@pytest.mark.parametrize(
    ("safe", "masked_lm"),
    [(True, False), (False, False), (True, True)],
    ids=["safetensors", "pytorch_bin", "masked_lm_safetensors"],
)
def test_hidden_states_match_transformers(tmp_path, safe: bool, masked_lm: bool) -> None:
    encoder, directory, tokenizer = _hf_model(tmp_path, safe, masked_lm)
    loaded = load_checkpoint(str(directory))
    ids, mask = _batch(tokenizer)
    expected = _torch_hidden(encoder, ids, mask)
    assert np.abs(expected).max() > 0.5  # a real signal to compare against

    token, pooled = _max_diffs(_ours(loaded, ids, mask), expected, mask)
    print(f"fp32 max |diff|: token {token:.2e}, pooled {pooled:.2e}")
    assert token <= FP32_TOLERANCE and pooled <= FP32_TOLERANCE

    token, pooled = _max_diffs(_ours(loaded, ids, mask, jnp.bfloat16), expected, mask)
    print(f"bf16 max |diff|: token {token:.2e}, pooled {pooled:.2e}")
    assert token <= BF16_TOKEN_TOLERANCE and pooled <= BF16_POOLED_TOLERANCE


def test_a_wrong_mapping_would_be_caught(tmp_path) -> None:
    """The parity check has teeth: swapping two same-shaped tensors breaks it by far."""
    encoder, directory, tokenizer = _hf_model(tmp_path)
    loaded = load_checkpoint(str(directory))
    layer = loaded.params["layer_1"]
    layer["query"], layer["key"] = layer["key"], layer["query"]
    ids, mask = _batch(tokenizer)
    token, _ = _max_diffs(_ours(loaded, ids, mask), _torch_hidden(encoder, ids, mask), mask)
    assert token > 10 * BF16_TOKEN_TOLERANCE
    print(f"query/key swapped in one layer: max |diff| {token:.2e}")


def test_exported_checkpoint_loads_in_transformers(tmp_path) -> None:
    tiny = load_model("tiny")
    save_checkpoint(tiny, tmp_path / "export")
    hf = EsmModel.from_pretrained(tmp_path / "export", add_pooling_layer=False).eval()
    ids, mask = _batch(tiny.tokenizer)
    ids, mask = ids[:3], mask[:3]  # the tiny preset holds 128 tokens; padding may go beyond
    token, pooled = _max_diffs(_ours(tiny, ids, mask), _torch_hidden(hf, ids, mask), mask)
    assert token <= FP32_TOLERANCE and pooled <= FP32_TOLERANCE


def test_round_trip_hash_model_id_and_load_model(tmp_path) -> None:
    tiny = load_model("tiny")
    export = tmp_path / "My Export"
    save_checkpoint(tiny, export)
    assert not list(export.glob(".*tmp"))
    again = load_checkpoint(str(export))
    assert again.weights_hash == tiny.weights_hash
    assert again.model_id == f"my-export-{tiny.weights_hash[:8]}"
    assert again.pretrained is True and tiny.pretrained is False
    assert again.config == tiny.config
    via_spec = load_model(str(export))
    assert via_spec.weights_hash == tiny.weights_hash and via_spec is load_model(str(export))


def test_missing_unexpected_and_shape_errors_name_keys(tmp_path) -> None:
    from safetensors.numpy import load_file, save_file

    _encoder, directory, _tok = _hf_model(tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    state.pop("encoder.layer.1.attention.self.key.weight")
    state["encoder.layer.0.surprise.weight"] = np.zeros(3, np.float32)
    state["encoder.layer.2.output.dense.bias"] = np.zeros(7, np.float32)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(str(directory))
    message = str(error.value)
    assert str(directory) in message
    assert "missing 1 tensor(s) (Flax names): layer_1/key/kernel" in message
    assert "unexpected 1 key(s): encoder.layer.0.surprise.weight" in message
    assert "encoder.layer.2.output.dense.bias has shape (7,), expected (64,)" in message
    assert "layer_2/output/bias" not in message  # a wrong shape is not also "missing"


def test_unsupported_configs_are_refused(tmp_path) -> None:
    _encoder, directory, _tok = _hf_model(tmp_path)
    config = directory / "config.json"
    original = config.read_text()
    config.write_text(original.replace('"absolute"', '"rotary"'))
    with pytest.raises(CheckpointError, match=r"config\.json: unsupported: .*'rotary'"):
        load_checkpoint(str(directory))
    config.write_text(original.replace('"vocab_size": 4105', '"vocab_size": 4107'))
    with pytest.raises(CheckpointError, match=r"vocab\.txt has 4105 tokens but config\.json says"):
        load_checkpoint(str(directory))
    (directory / "model.safetensors").unlink()
    config.write_text(original)
    with pytest.raises(CheckpointError, match="no weights file"):
        load_checkpoint(str(directory))


def test_pytorch_bin_without_torch_is_a_clear_error(tmp_path, monkeypatch) -> None:
    _encoder, directory, _tok = _hf_model(tmp_path, safe=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when absent
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: reading it needs torch"):
        load_checkpoint(str(directory))


def test_gcs_checkpoint_loads(tmp_path, gcs_bucket) -> None:
    from bioscan_assets.core.storage import Store

    tiny = load_model("tiny")
    save_checkpoint(tiny, tmp_path / "export")
    url = f"gs://{gcs_bucket}/models/tiny-export"
    store = Store(url)
    for path in (tmp_path / "export").iterdir():
        store.put_file(path, path.name)
    loaded = load_checkpoint(url)
    assert loaded.weights_hash == tiny.weights_hash
    assert loaded.model_id == f"tiny-export-{tiny.weights_hash[:8]}"
    assert loaded.source == url and loaded.pretrained is True
    with pytest.raises(CheckpointError, match=r"missing config\.json"):
        load_checkpoint(f"gs://{gcs_bucket}/models/nothing-here")
