"""Small random ESM/NT-v1 checkpoints in every layout the Hub uses, and a Hub cache holding one.

transformers 5 writes only safetensors; the `.bin` layouts are written the way
`save_pretrained(safe_serialization=False)` wrote them (one pickled state dict per shard and
`pytorch_model.bin.index.json`), with the same shard split as the safetensors ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import EsmConfig, EsmForMaskedLM, EsmModel

from bioscan_assets.core.model.tokenizer import NTTokenizer
from tests.helpers import random_dna

LAYOUTS = ("safetensors", "sharded-safetensors", "bin", "sharded-bin")
SHARD_SIZE = "300KB"
LENGTHS = [5, 37, 120, 301, 700]  # bases; with 4% N the longest is ~200 of 256 tokens


def esm_config(tokenizer: NTTokenizer, **overrides) -> EsmConfig:
    fields = {
        "vocab_size": tokenizer.vocab_size,
        "hidden_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "max_position_embeddings": 258,
        "pad_token_id": tokenizer.pad_id,
        "mask_token_id": tokenizer.mask_id,
        "position_embedding_type": "absolute",
        "token_dropout": True,
        "emb_layer_norm_before": False,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    return EsmConfig(**{**fields, **overrides})


def random_esm(seed: int = 0, masked_lm: bool = False, **overrides):
    """A random encoder whose attention is sharp enough for a wrong mapping to show."""
    torch.manual_seed(seed)
    config = esm_config(NTTokenizer.standard(), **overrides)
    model = EsmForMaskedLM(config) if masked_lm else EsmModel(config, add_pooling_layer=False)
    model = model.eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
            if name.endswith(("query.weight", "key.weight")):
                param.mul_(10.0)
            if name.endswith(("value.weight", "attention.output.dense.weight")):
                param.mul_(5.0)
    return model


def save_layout(model, directory: Path, layout: str) -> Path:
    """`model` saved as config.json + vocab.txt + weights in `layout` (one of LAYOUTS)."""
    directory = Path(directory)
    sharded = layout.startswith("sharded")
    if sharded:
        model.save_pretrained(directory, max_shard_size=SHARD_SIZE)
    else:
        model.save_pretrained(directory)
    if layout.endswith("bin"):
        _to_bin(directory, sharded)
    NTTokenizer.standard().write_vocab_file(directory / "vocab.txt")
    return directory


def _to_bin(directory: Path, sharded: bool) -> None:
    """The safetensors files just written, re-saved as pickled state dicts (same names)."""
    if not sharded:
        state = load_file(directory / "model.safetensors")
        (directory / "model.safetensors").unlink()
        torch.save(state, directory / "pytorch_model.bin")
        return
    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    files = sorted(set(index["weight_map"].values()))
    renamed = {f: f"pytorch_model-{i + 1:05d}-of-{len(files):05d}.bin" for i, f in enumerate(files)}
    for old, new in renamed.items():
        torch.save(load_file(directory / old), directory / new)
        (directory / old).unlink()
    index_path.unlink()
    weight_map = {name: renamed[f] for name, f in index["weight_map"].items()}
    (directory / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": index.get("metadata", {}), "weight_map": weight_map}, indent=2)
    )


def batch_sequences(seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [random_dna(rng, n, alphabet="ACGTN", p=[0.24] * 4 + [0.04]) for n in LENGTHS]


def torch_pooled(encoder, tokenizer: NTTokenizer, sequences: list[str]) -> np.ndarray:
    """transformers' last hidden state, mean-pooled over each sequence's tokens."""
    out = []
    with torch.no_grad():
        for ids in tokenizer.encode_batch(sequences):
            ids_t = torch.tensor(ids[None], dtype=torch.long)
            hidden = encoder(input_ids=ids_t, attention_mask=torch.ones_like(ids_t))
            out.append(hidden.last_hidden_state[0].mean(0).numpy())
    return np.stack(out)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def is_lfs(name: str) -> bool:
    return name.endswith((".bin", ".safetensors"))


def populate_hub_cache(
    cache: Path, repo_id: str, checkpoint: Path, commit: str, ref: str = "main"
) -> Path:
    """`checkpoint`'s files as huggingface_hub caches them: blobs named by the hash the Hub
    serves them with (sha256 for LFS files, git blob sha1 otherwise), a snapshot of symlinks,
    and `refs/<ref>` -> commit. Returns the snapshot folder."""
    storage = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(checkpoint.iterdir()):
        data = path.read_bytes()
        blob = hashlib.sha256(data).hexdigest() if is_lfs(path.name) else git_blob_sha1(data)
        shutil.copyfile(path, storage / "blobs" / blob)
        os.symlink(f"../../blobs/{blob}", snapshot / path.name)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    return snapshot


def hub_listing(checkpoint: Path) -> list[dict]:
    """The `siblings` / tree entries the Hub API would return for `checkpoint`'s files."""
    out = []
    for path in sorted(checkpoint.iterdir()):
        data = path.read_bytes()
        entry = {"rfilename": path.name, "size": len(data), "blobId": git_blob_sha1(data)}
        if is_lfs(path.name):  # git holds a pointer; its blob id is the pointer's
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
            pointer += f"size {len(data)}\n"
            entry["blobId"] = git_blob_sha1(pointer.encode())
            entry["lfs"] = {"size": len(data), "sha256": sha256, "pointerSize": len(pointer)}
        out.append(entry)
    return out
