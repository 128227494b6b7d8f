"""Every layout the Hub uses (one file or shards; safetensors or PyTorch .bin) loads through
`load_model` to the same weights as transformers, under one weights hash; bad checkpoints fail
with the file and tensor named, and nothing is written."""

from __future__ import annotations

import copy
import json
import shutil
import sys

import jax
import ml_dtypes
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict

from bioscan_assets.core.embedding.compute import embed_sequences
from bioscan_assets.core.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bioscan_assets.core.model.convert import convert_checkpoint
from bioscan_assets.core.model.describe import inspect_model
from bioscan_assets.core.model.hf_format import is_ignored
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.model.tokenizer import NTTokenizer
from tests.checkpoint_helpers import (
    LAYOUTS,
    batch_sequences,
    random_esm,
    save_layout,
    torch_pooled,
)
from tests.unit.test_nt_model import TINY_HASH

FP32_TOLERANCE = 1e-4
SAFE_INDEX, BIN_INDEX = "model.safetensors.index.json", "pytorch_model.bin.index.json"


@pytest.fixture(scope="module")
def encoder():
    return random_esm(seed=0)


@pytest.fixture(scope="module")
def layouts(encoder, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("layouts")
    return {layout: save_layout(encoder, root / layout, layout) for layout in LAYOUTS}


@pytest.fixture(scope="module")
def expected(encoder) -> np.ndarray:
    return torch_pooled(encoder, NTTokenizer.standard(), batch_sequences())


@pytest.fixture(scope="module")
def reference_hash(layouts) -> str:
    return load_checkpoint(str(layouts["safetensors"])).weights_hash


def _copy(layouts, layout, tmp_path):
    return shutil.copytree(layouts[layout], tmp_path / layout)


def _index(directory):
    name = SAFE_INDEX if (directory / SAFE_INDEX).exists() else BIN_INDEX
    return name, json.loads((directory / name).read_text())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_transformers_embeddings(layouts, expected, layout) -> None:
    directory = layouts[layout]
    if layout.startswith("sharded"):
        _name, index = _index(directory)
        assert len(set(index["weight_map"].values())) >= 3  # really sharded
    model = load_model(str(directory))
    assert model.pretrained and model.config.hidden_size == 64
    pooled = embed_sequences(batch_sequences(), model)
    diff = float(np.abs(pooled - expected).max())
    print(f"{layout}: pooled max |diff| vs transformers {diff:.2e}")
    assert np.abs(expected).max() > 0.1 and diff <= FP32_TOLERANCE


def test_one_weights_hash_whatever_the_layout(layouts, reference_hash, tmp_path) -> None:
    hashes = {layout: load_checkpoint(str(d)).weights_hash for layout, d in layouts.items()}
    assert set(hashes.values()) == {reference_hash}, hashes
    # converting (here .bin shards -> safetensors shards of another size) keeps the hash
    report = convert_checkpoint(str(layouts["sharded-bin"]), tmp_path / "st", 200_000)
    assert report["from"]["format"] == "bin" and len(report["to"]["files"]) > 1
    assert load_checkpoint(str(tmp_path / "st")).weights_hash == reference_hash
    # and inspecting (one tensor at a time, sorted) gives the value loading records
    assert inspect_model(str(layouts["sharded-bin"]))["weights_hash"] == reference_hash


def test_preset_hashes_survive_export_and_conversion(tmp_path) -> None:
    tiny = load_model("tiny")
    save_checkpoint(tiny, tmp_path / "export")
    convert_checkpoint(str(tmp_path / "export"), tmp_path / "sharded", 30_000)
    assert (tmp_path / "sharded" / SAFE_INDEX).exists()
    assert load_checkpoint(str(tmp_path / "sharded")).weights_hash == TINY_HASH


def test_half_precision_weights_hash_as_the_float32_values_they_are(encoder, tmp_path) -> None:
    half = copy.deepcopy(encoder).to(torch.bfloat16)
    directory = save_layout(half, tmp_path / "bf16", "sharded-safetensors")
    as_f32 = load_checkpoint(str(directory))
    as_bf16 = load_checkpoint(str(directory), dtype=ml_dtypes.bfloat16)
    leaves = flatten_dict(as_bf16.params)
    assert all(leaf.dtype == ml_dtypes.bfloat16 for leaf in leaves.values())
    assert as_bf16.weights_hash == as_f32.weights_hash
    bin_dir = save_layout(half, tmp_path / "bf16-bin", "sharded-bin")
    assert load_checkpoint(str(bin_dir)).weights_hash == as_f32.weights_hash


def test_streaming_places_each_tensor_as_it_is_read(layouts, reference_hash) -> None:
    placed = []

    def place(path, array):
        placed.append(path)
        return jax.device_put(array)

    model = load_checkpoint(str(layouts["sharded-safetensors"]), place=place)
    paths = ["/".join(key) for key in flatten_dict(model.params)]
    assert sorted(placed) == sorted(paths)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(model.params))
    assert model.weights_hash == reference_hash


# --- bad checkpoints ---------------------------------------------------------------------------


def _refused(directory, tmp_path, *fragments: str) -> str:
    """Loading fails naming every fragment, and converting writes nothing."""
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(str(directory))
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message
    with pytest.raises(CheckpointError):
        convert_checkpoint(str(directory), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    return message


@pytest.mark.parametrize("layout", ["sharded-safetensors", "sharded-bin"])
def test_a_shard_listed_but_missing(layouts, tmp_path, layout) -> None:
    directory = _copy(layouts, layout, tmp_path)
    name, index = _index(directory)
    shard = sorted(set(index["weight_map"].values()))[1]
    tensor = sorted(t for t, s in index["weight_map"].items() if s == shard and not is_ignored(t))[
        0
    ]
    (directory / shard).unlink()
    _refused(directory, tmp_path, f"{name} lists shard {shard}", tensor, "missing")


def test_a_truncated_safetensors_shard(layouts, tmp_path) -> None:
    directory = _copy(layouts, "sharded-safetensors", tmp_path)
    _name, index = _index(directory)
    shard = sorted(set(index["weight_map"].values()))[-1]
    data = (directory / shard).read_bytes()
    (directory / shard).write_bytes(data[: len(data) - 1000])
    message = _refused(directory, tmp_path, shard, "truncated: tensor ")
    named = message.split("truncated: tensor ", 1)[1].split()[0]
    assert index["weight_map"][named] == shard


def test_a_truncated_bin_shard(layouts, tmp_path) -> None:
    directory = _copy(layouts, "sharded-bin", tmp_path)
    _name, index = _index(directory)
    shard = sorted(set(index["weight_map"].values()))[0]
    data = (directory / shard).read_bytes()
    (directory / shard).write_bytes(data[: len(data) // 2])
    _refused(directory, tmp_path, shard, "not a readable PyTorch checkpoint")


@pytest.mark.parametrize("layout", ["sharded-safetensors", "sharded-bin"])
def test_an_index_naming_a_tensor_its_shard_lacks(layouts, tmp_path, layout) -> None:
    directory = _copy(layouts, layout, tmp_path)
    name, index = _index(directory)
    tensor = "encoder.layer.1.attention.self.key.weight"
    wrong = next(
        s for s in sorted(set(index["weight_map"].values())) if s != index["weight_map"][tensor]
    )
    index["weight_map"][tensor] = wrong
    (directory / name).write_text(json.dumps(index))
    _refused(
        directory,
        tmp_path,
        f"{name} names 1 tensor(s) absent from their shard",
        f"{tensor} (index: {wrong})",
    )


@pytest.mark.parametrize("layout", ["sharded-safetensors", "bin"])
def test_shapes_that_disagree_with_config_json(layouts, tmp_path, layout) -> None:
    directory = _copy(layouts, layout, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["intermediate_size"] = 96
    (directory / "config.json").write_text(json.dumps(config))
    _refused(
        directory,
        tmp_path,
        "shape mismatch(es) with config.json",
        "encoder.layer.0.intermediate.dense.weight has shape (128, 64), expected (96, 64) (in ",
    )


def test_nt_v2_is_refused_as_not_implemented(layouts, tmp_path) -> None:
    directory = _copy(layouts, "sharded-safetensors", tmp_path)
    (directory / "esm_config.py").write_text("# NT v2 custom code\n")
    message = _refused(directory, tmp_path, "custom code esm_config.py", "not implemented")
    assert "config.json: unsupported" in message
    (directory / "esm_config.py").unlink()
    config = json.loads((directory / "config.json").read_text())
    config |= {
        "auto_map": {"AutoConfig": "esm_config.EsmConfig"},
        "position_embedding_type": "rotary",
        "add_bias_fnn": False,
    }
    (directory / "config.json").write_text(json.dumps(config))
    _refused(
        directory,
        tmp_path,
        "auto_map",
        "position_embedding_type='rotary'",
        "add_bias_fnn=false",
        "not the Nucleotide Transformer v1 architecture",
    )


def test_bin_shards_without_torch_say_how_to_proceed(layouts, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when absent
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(str(layouts["sharded-bin"]))
    message = str(error.value)
    assert "pytorch_model-00001-of-" in message and "pip install torch" in message
    assert "bioscan model convert" in message
