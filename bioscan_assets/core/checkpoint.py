"""Hugging Face checkpoints (`config.json`, `vocab.txt`, safetensors or .bin) <-> Flax params."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from bioscan_assets.core.nt_model import NTConfig, param_shapes
from bioscan_assets.core.presets import LoadedModel, weights_hash
from bioscan_assets.core.storage import Store
from bioscan_assets.core.tokenizer import NTTokenizer

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_IGNORED = re.compile(r"^(lm_head|contact_head|pooler)\.|(^|\.)position_ids$|\.pooler\.")

# Hugging Face name (after `esm.`) -> (flax path, transpose)
_LAYER_MAP = {
    "attention.LayerNorm.weight": ("attention_layer_norm/scale", False),
    "attention.LayerNorm.bias": ("attention_layer_norm/bias", False),
    "attention.self.query.weight": ("query/base/kernel", True),
    "attention.self.query.bias": ("query/base/bias", False),
    "attention.self.key.weight": ("key/base/kernel", True),
    "attention.self.key.bias": ("key/base/bias", False),
    "attention.self.value.weight": ("value/base/kernel", True),
    "attention.self.value.bias": ("value/base/bias", False),
    "attention.output.dense.weight": ("attention_output/kernel", True),
    "attention.output.dense.bias": ("attention_output/bias", False),
    "intermediate.dense.weight": ("intermediate/kernel", True),
    "intermediate.dense.bias": ("intermediate/bias", False),
    "output.dense.weight": ("output/kernel", True),
    "output.dense.bias": ("output/bias", False),
    "LayerNorm.weight": ("ffn_layer_norm/scale", False),
    "LayerNorm.bias": ("ffn_layer_norm/bias", False),
}
_TOP_MAP = {
    "embeddings.word_embeddings.weight": ("word_embeddings/embedding", False),
    "embeddings.position_embeddings.weight": ("position_embeddings/embedding", False),
    "encoder.emb_layer_norm_after.weight": ("emb_layer_norm_after/scale", False),
    "encoder.emb_layer_norm_after.bias": ("emb_layer_norm_after/bias", False),
}
_LEGACY_NORM = re.compile(r"\.(gamma|beta)$")  # older LayerNorm names, still seen in files
_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


class CheckpointError(ValueError):
    pass


def config_from_hf(doc: dict[str, Any], source: str) -> NTConfig:
    problems = []
    if doc.get("position_embedding_type", "absolute") != "absolute":
        problems.append(
            f"position_embedding_type={doc['position_embedding_type']!r} (only NT v1 'absolute')"
        )
    if doc.get("emb_layer_norm_before"):
        problems.append("emb_layer_norm_before=true is not an NT v1 option")
    if doc.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act={doc['hidden_act']!r} (only exact 'gelu')")
    if doc.get("is_decoder") or doc.get("add_cross_attention"):
        problems.append("decoder/cross-attention models are not encoders")
    if problems:
        raise CheckpointError(f"{source}/config.json: unsupported: {'; '.join(problems)}")
    try:
        return NTConfig(
            vocab_size=int(doc["vocab_size"]),
            hidden_size=int(doc["hidden_size"]),
            num_layers=int(doc["num_hidden_layers"]),
            num_heads=int(doc["num_attention_heads"]),
            intermediate_size=int(doc["intermediate_size"]),
            max_position_embeddings=int(doc["max_position_embeddings"]),
            pad_token_id=int(doc.get("pad_token_id", 1)),
            mask_token_id=int(doc.get("mask_token_id", 2)),
            layer_norm_eps=float(doc.get("layer_norm_eps", 1e-12)),
            token_dropout=bool(doc.get("token_dropout", True)),
        )
    except KeyError as missing:
        raise CheckpointError(f"{source}/config.json: missing field {missing}") from None


def _read_state_dict(directory: Path, source: str) -> dict[str, np.ndarray]:
    if (directory / "model.safetensors").exists():
        from safetensors.numpy import load_file

        return load_file(str(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").exists():
        try:
            import torch
        except ImportError:
            raise CheckpointError(
                f"{source}/pytorch_model.bin needs torch to read; install torch or convert the "
                "checkpoint to model.safetensors"
            ) from None
        state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}
    raise CheckpointError(f"{source}: no weights file; expected one of {', '.join(WEIGHT_FILES)}")


def params_from_state_dict(
    state: dict[str, np.ndarray], config: NTConfig, source: str
) -> dict[str, Any]:
    """Map, transpose and shape-check every tensor; report missing/unexpected keys by name."""
    expected = flatten_dict(
        param_shapes(config), sep="/", is_leaf=lambda _, x: isinstance(x, tuple)
    )
    params: dict[str, np.ndarray] = {}
    unexpected, mismatched = [], []
    for hf_name, tensor in state.items():
        name = _LEGACY_NORM.sub(lambda m: ".weight" if m.group(1) == "gamma" else ".bias", hf_name)
        name = name.removeprefix("esm.")
        if _IGNORED.search(hf_name):
            continue
        target = _TOP_MAP.get(name)
        if target is None and (match := _LAYER_KEY.match(name)):
            inner = _LAYER_MAP.get(match.group(2))
            if inner is not None:
                target = (f"layer_{match.group(1)}/{inner[0]}", inner[1])
        if target is None or target[0] not in expected:
            unexpected.append(hf_name)
            continue
        path, transpose = target
        array = np.asarray(tensor, dtype=np.float32)
        array = array.T if transpose else array
        if array.shape != expected[path]:
            mismatched.append(f"{hf_name}: {tuple(array.shape)} != expected {expected[path]}")
            continue
        params[path] = np.ascontiguousarray(array)
    missing = sorted(set(expected) - set(params))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:12])}")
    if unexpected:
        problems.append(
            f"unexpected {len(unexpected)} key(s): {', '.join(sorted(unexpected)[:12])}"
        )
    if mismatched:
        problems.append(f"shape mismatch: {'; '.join(mismatched[:12])}")
    if problems:
        raise CheckpointError(f"{source}: " + " | ".join(problems))
    return unflatten_dict(params, sep="/")


def _model_id(source: str, digest: str) -> str:
    stem = re.sub(r"[^a-z0-9._-]+", "-", source.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-.")
    return f"{stem or 'checkpoint'}-{digest[:8]}"


def _load_local(directory: Path, source: str) -> LoadedModel:
    for required in ("config.json", "vocab.txt"):
        if not (directory / required).exists():
            raise CheckpointError(f"{source}: missing {required}")
    config = config_from_hf(json.loads((directory / "config.json").read_text()), source)
    tokenizer = NTTokenizer.from_vocab_file(directory / "vocab.txt")
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{source}: vocab.txt has {tokenizer.vocab_size} tokens, config.json says {config.vocab_size}"
        )
    params = params_from_state_dict(_read_state_dict(directory, source), config, source)
    digest = weights_hash(params)
    return LoadedModel(
        model_id=_model_id(source, digest),
        config=config,
        params=params,
        tokenizer=tokenizer,
        weights_hash=digest,
        pretrained=True,
        source=source,
    )


def load_checkpoint(location: str) -> LoadedModel:
    """A checkpoint from a local directory or `gs://bucket/prefix`."""
    if not location.startswith("gs://"):
        directory = Path(location)
        if not directory.is_dir():
            raise CheckpointError(f"{location}: checkpoint directory not found")
        return _load_local(directory, location)
    store = Store(location)
    names = {rel.rsplit("/", 1)[-1] for rel in store.list_files("")}
    with tempfile.TemporaryDirectory(prefix="bioscan-ckpt-") as tmp:
        for name in ("config.json", "vocab.txt", *WEIGHT_FILES):
            if name in names:
                with store.local_copy(name) as local:
                    Path(tmp, name).write_bytes(Path(local).read_bytes())
        return _load_local(Path(tmp), location)


def save_checkpoint(model: LoadedModel, directory: str | Path) -> None:
    """Write the Hugging Face layout (safetensors) so other tools can read our weights."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    flat = flatten_dict(model.params, sep="/")
    reverse = {v[0]: (k, v[1]) for k, v in _TOP_MAP.items()}
    state = {}
    for path, leaf in flat.items():
        if path in reverse:
            name, transpose = reverse[path]
        else:
            layer, inner = path.split("/", 1)
            hf_inner = next(k for k, v in _LAYER_MAP.items() if v[0] == inner)
            name, transpose = (
                f"encoder.layer.{layer.removeprefix('layer_')}.{hf_inner}",
                _LAYER_MAP[hf_inner][1],
            )
        array = np.asarray(leaf, dtype=np.float32)
        state[f"esm.{name}"] = np.ascontiguousarray(array.T if transpose else array)
    save_file(state, str(directory / "model.safetensors"))
    cfg = model.config
    (directory / "config.json").write_text(
        json.dumps(
            {
                "model_type": "esm",
                "architectures": ["EsmForMaskedLM"],
                "vocab_size": cfg.vocab_size,
                "hidden_size": cfg.hidden_size,
                "num_hidden_layers": cfg.num_layers,
                "num_attention_heads": cfg.num_heads,
                "intermediate_size": cfg.intermediate_size,
                "max_position_embeddings": cfg.max_position_embeddings,
                "pad_token_id": cfg.pad_token_id,
                "mask_token_id": cfg.mask_token_id,
                "layer_norm_eps": cfg.layer_norm_eps,
                "token_dropout": cfg.token_dropout,
                "position_embedding_type": "absolute",
                "emb_layer_norm_before": False,
                "hidden_act": "gelu",
            },
            indent=2,
        )
    )
    model.tokenizer.write_vocab_file(directory / "vocab.txt")
