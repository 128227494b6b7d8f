"""Hugging Face checkpoints (`config.json`, `vocab.txt`, safetensors or .bin) <-> Flax params.

Reads what `EsmModel` / `EsmForMaskedLM.save_pretrained` writes (keys with or without the
`esm.` prefix, LayerNorm as `weight/bias` or the legacy `gamma/beta`), from a local directory
or `gs://bucket/prefix`, one tensor at a time so a 2.5B checkpoint needs about its own size in
memory, not twice that.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from bioscan_assets.core.model.loaded import LoadedModel, weights_hash
from bioscan_assets.core.model.nt_model import NTConfig, param_shapes
from bioscan_assets.core.model.tokenizer import NTTokenizer
from bioscan_assets.core.storage import Store

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Heads and buffers an encoder does not use (names after the `esm.` prefix is removed).
_IGNORED = re.compile(r"^(lm_head|contact_head|pooler)\.|(^|\.)position_ids$")

# Hugging Face name inside `encoder.layer.N.` -> (flax path inside `layer_N/`, transpose)
_LAYER_MAP = {
    "attention.LayerNorm.weight": ("attention_layer_norm/scale", False),
    "attention.LayerNorm.bias": ("attention_layer_norm/bias", False),
    "attention.self.query.weight": ("query/kernel", True),
    "attention.self.query.bias": ("query/bias", False),
    "attention.self.key.weight": ("key/kernel", True),
    "attention.self.key.bias": ("key/bias", False),
    "attention.self.value.weight": ("value/kernel", True),
    "attention.self.value.bias": ("value/bias", False),
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
_LEGACY_NORM = re.compile(r"\.(gamma|beta)$")  # transformers still writes these for LayerNorm
_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_LIST_LIMIT = 20


class CheckpointError(ValueError):
    pass


def config_from_hf(doc: dict[str, Any], source: str) -> NTConfig:
    """NTConfig from config.json; missing fields take transformers' EsmConfig defaults."""
    where = f"{source}/config.json"
    problems = []
    if doc.get("model_type", "esm") != "esm":
        problems.append(f"model_type={doc['model_type']!r} (only 'esm')")
    if (doc.get("position_embedding_type") or "absolute") != "absolute":
        problems.append(
            f"position_embedding_type={doc['position_embedding_type']!r} "
            "(NT v1 uses 'absolute'; rotary models such as NT v2 are not supported)"
        )
    if doc.get("emb_layer_norm_before"):
        problems.append("emb_layer_norm_before=true (not an NT v1 option)")
    if doc.get("is_folding_model") or doc.get("esmfold_config"):
        problems.append("is_folding_model / esmfold_config (ESMFold is not an NT encoder)")
    if doc.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act={doc['hidden_act']!r} (only exact 'gelu')")
    if doc.get("is_decoder") or doc.get("add_cross_attention"):
        problems.append("is_decoder / add_cross_attention (NT is an encoder)")
    token_dropout = bool(doc.get("token_dropout") or False)
    for field in ("vocab_size", "pad_token_id") + (("mask_token_id",) if token_dropout else ()):
        if doc.get(field) is None:
            problems.append(f"{field} is missing")
    if problems:
        raise CheckpointError(f"{where}: unsupported: {'; '.join(problems)}")
    try:
        return NTConfig(
            vocab_size=int(doc["vocab_size"]),
            hidden_size=int(doc.get("hidden_size", 768)),
            num_layers=int(doc.get("num_hidden_layers", 12)),
            num_heads=int(doc.get("num_attention_heads", 12)),
            intermediate_size=int(doc.get("intermediate_size", 3072)),
            max_position_embeddings=int(doc.get("max_position_embeddings", 1026)),
            pad_token_id=int(doc["pad_token_id"]),
            mask_token_id=int(doc["mask_token_id"] if doc.get("mask_token_id") is not None else -1),
            layer_norm_eps=float(doc.get("layer_norm_eps") or 1e-12),
            token_dropout=token_dropout,
        )
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: {error}") from None


def _safetensors_tensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        names = list(handle.keys())
        for name in names:
            try:
                yield name, handle.get_tensor(name)
            except TypeError:  # bfloat16 has no numpy dtype: read through JAX instead
                with safe_open(str(path), framework="flax") as jax_handle:
                    yield name, np.asarray(jax_handle.get_tensor(name), dtype=np.float32)


def _torch_tensors(path: Path, source: str) -> Iterator[tuple[str, np.ndarray]]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{source}/pytorch_model.bin: reading it needs torch, which is not installed; "
            "install torch or convert the checkpoint to model.safetensors"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for name in list(state):
        yield name, state.pop(name).float().numpy()


def read_tensors(files: dict[str, Path], source: str) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) pairs from model.safetensors, else pytorch_model.bin."""
    if "model.safetensors" in files:
        return _safetensors_tensors(files["model.safetensors"])
    if "pytorch_model.bin" in files:
        return _torch_tensors(files["pytorch_model.bin"], source)
    raise CheckpointError(
        f"{source}: no weights file; expected one of {', '.join(WEIGHT_FILES)} "
        "(sharded checkpoints are not supported)"
    )


def _flax_target(hf_name: str) -> tuple[str, bool] | None:
    name = _LEGACY_NORM.sub(lambda m: ".weight" if m.group(1) == "gamma" else ".bias", hf_name)
    name = name.removeprefix("esm.")
    if name in _TOP_MAP:
        return _TOP_MAP[name]
    if match := _LAYER_KEY.match(name):
        inner = _LAYER_MAP.get(match.group(2))
        if inner is not None:
            return f"layer_{match.group(1)}/{inner[0]}", inner[1]
    return None


def _named(items: list[str]) -> str:
    more = f" (and {len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return ", ".join(items[:_LIST_LIMIT]) + more


def params_from_state_dict(
    tensors: dict[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
    config: NTConfig,
    source: str,
) -> dict[str, Any]:
    """Map, transpose and shape-check every tensor; report every problem by name at once."""
    expected = flatten_dict(
        param_shapes(config), sep="/", is_leaf=lambda _, x: isinstance(x, tuple)
    )
    params: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    unexpected, mismatched, duplicated = [], [], []
    mismatched_paths = set()
    pairs = tensors.items() if isinstance(tensors, dict) else tensors
    for hf_name, tensor in pairs:
        if _IGNORED.search(hf_name.removeprefix("esm.")):
            continue
        target = _flax_target(hf_name)
        if target is None or target[0] not in expected:
            unexpected.append(hf_name)
            continue
        path, transpose = target
        array = np.asarray(tensor, dtype=np.float32)
        array = array.T if transpose else array
        if array.shape != expected[path]:
            shown = tuple(np.shape(tensor))
            want = expected[path][::-1] if transpose else expected[path]
            mismatched.append(f"{hf_name} has shape {shown}, expected {want}")
            mismatched_paths.add(path)
            continue
        if path in params:
            duplicated.append(f"{origin[path]} and {hf_name}")
            continue
        params[path] = np.ascontiguousarray(array)
        origin[path] = hf_name
    missing = sorted(set(expected) - set(params) - mismatched_paths)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) (Flax names): {_named(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s): {_named(sorted(unexpected))}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_named(mismatched)}")
    if duplicated:
        problems.append(f"the same tensor twice: {_named(duplicated)}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))
    return unflatten_dict(params, sep="/")


def _model_id(source: str, digest: str) -> str:
    stem = source.rstrip("/").rsplit("/", 1)[-1].lower()
    stem = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._")[:64]
    return f"{stem or 'checkpoint'}-{digest[:8]}"


def _load_files(files: dict[str, Path], source: str) -> LoadedModel:
    for required in ("config.json", "vocab.txt"):
        if required not in files:
            raise CheckpointError(f"{source}: missing {required}")
    try:
        doc = json.loads(files["config.json"].read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{source}/config.json: not JSON ({error})") from None
    config = config_from_hf(doc, source)
    try:
        tokenizer = NTTokenizer.from_vocab_file(files["vocab.txt"])
    except ValueError as error:
        raise CheckpointError(f"{source}/vocab.txt: {error}") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"{source}: vocab.txt has {tokenizer.vocab_size} tokens but config.json says "
            f"vocab_size={config.vocab_size}"
        )
    special = [
        f"<{name}> is token {ours} in vocab.txt but config.json says {field}={theirs}"
        for name, ours, field, theirs, needed in (
            ("pad", tokenizer.pad_id, "pad_token_id", config.pad_token_id, True),
            (
                "mask",
                tokenizer.mask_id,
                "mask_token_id",
                config.mask_token_id,
                config.token_dropout,
            ),
        )
        if needed and ours != theirs
    ]
    if special:
        raise CheckpointError(f"{source}: {'; '.join(special)}")
    params = params_from_state_dict(read_tensors(files, source), config, source)
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
    names = ("config.json", "vocab.txt", *WEIGHT_FILES)
    if not location.startswith("gs://"):
        directory = Path(location)
        if not directory.is_dir():
            raise CheckpointError(f"{location}: checkpoint directory not found")
        files = {name: directory / name for name in names if (directory / name).is_file()}
        return _load_files(files, location)
    store = Store(location)
    present = [name for name in names if store.exists(name)]
    if "model.safetensors" in present and "pytorch_model.bin" in present:
        present.remove("pytorch_model.bin")  # never download the one we would not read
    with contextlib.ExitStack() as stack:
        files = {name: stack.enter_context(store.local_copy(name)) for name in present}
        return _load_files(files, location)


def save_checkpoint(model: LoadedModel, directory: str | Path) -> None:
    """Write the Hugging Face layout (safetensors) that `EsmModel.from_pretrained` reads."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    reverse_top = {path: (name, t) for name, (path, t) in _TOP_MAP.items()}
    reverse_layer = {path: (name, t) for name, (path, t) in _LAYER_MAP.items()}
    state = {}
    for path, leaf in flatten_dict(model.params, sep="/").items():
        if path in reverse_top:
            name, transpose = reverse_top[path]
        else:
            layer, inner = path.split("/", 1)
            hf_inner, transpose = reverse_layer[inner]
            name = f"encoder.layer.{layer.removeprefix('layer_')}.{hf_inner}"
        array = np.asarray(leaf, dtype=np.float32)
        state[name] = np.ascontiguousarray(array.T if transpose else array)
    cfg = model.config
    doc = {
        "model_type": "esm",
        "architectures": ["EsmModel"],
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
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    # each file atomically, config.json last: a directory with config.json is complete
    _write_atomic(
        directory / "model.safetensors", lambda tmp: save_file(state, str(tmp), {"format": "pt"})
    )
    _write_atomic(directory / "vocab.txt", model.tokenizer.write_vocab_file)
    _write_atomic(
        directory / "config.json", lambda tmp: tmp.write_text(json.dumps(doc, indent=2) + "\n")
    )


def _write_atomic(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
