"""What a Hugging Face ESM checkpoint means in our terms: config.json <-> NTConfig, tensor names
<-> Flax paths, and the one error every checkpoint problem raises.

Only the NT v1 architecture (transformers' `EsmModel` with learned absolute positions) is
implemented; NT v2 (rotary positions, gated feed-forward without biases, shipped as custom code
`esm_config.py` / `modeling_esm.py`) is refused by name rather than loaded wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bioscan_assets.core.model.nt_model import NTConfig

# Heads and buffers an encoder does not use (names after the `esm.` prefix is removed).
_IGNORED = re.compile(r"^(lm_head|contact_head|pooler)\.|(^|\.)position_ids$")

# Hugging Face name inside `encoder.layer.N.` -> (flax path inside `layer_N/`, transpose)
LAYER_MAP = {
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
TOP_MAP = {
    "embeddings.word_embeddings.weight": ("word_embeddings/embedding", False),
    "embeddings.position_embeddings.weight": ("position_embeddings/embedding", False),
    "encoder.emb_layer_norm_after.weight": ("emb_layer_norm_after/scale", False),
    "encoder.emb_layer_norm_after.bias": ("emb_layer_norm_after/bias", False),
}
_LEGACY_NORM = re.compile(r"\.(gamma|beta)$")  # transformers still writes these for LayerNorm
_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
# files the NT v2 repositories ship for `trust_remote_code`
CUSTOM_CODE_FILES = ("esm_config.py", "modeling_esm.py")
NOT_V1 = (
    "this is not the Nucleotide Transformer v1 architecture, the only one bioscan implements "
    "(NT v2's rotary positions and gated feed-forward are not implemented)"
)


class CheckpointError(ValueError):
    """A checkpoint we cannot load; the message names the file and, where one is at fault, the
    tensor."""


def is_ignored(hf_name: str) -> bool:
    return bool(_IGNORED.search(hf_name.removeprefix("esm.")))


def flax_target(hf_name: str) -> tuple[str, bool] | None:
    """(Flax path, stored transposed) for a Hugging Face tensor name, or None if not ours."""
    name = _LEGACY_NORM.sub(lambda m: ".weight" if m.group(1) == "gamma" else ".bias", hf_name)
    name = name.removeprefix("esm.")
    if name in TOP_MAP:
        return TOP_MAP[name]
    if match := _LAYER_KEY.match(name):
        inner = LAYER_MAP.get(match.group(2))
        if inner is not None:
            return f"layer_{match.group(1)}/{inner[0]}", inner[1]
    return None


def hf_name(flax_path: str) -> tuple[str, bool]:
    """The Hugging Face name `EsmModel` uses for a Flax path, and whether it is transposed."""
    for name, (path, transpose) in TOP_MAP.items():
        if path == flax_path:
            return name, transpose
    layer, inner = flax_path.split("/", 1)
    for name, (path, transpose) in LAYER_MAP.items():
        if path == inner:
            return f"encoder.layer.{layer.removeprefix('layer_')}.{name}", transpose
    raise KeyError(flax_path)


def _v2_signs(doc: dict[str, Any], files: Iterable[str]) -> list[str]:
    signs = [f"custom code {name}" for name in CUSTOM_CODE_FILES if name in set(files)]
    if doc.get("auto_map"):
        signs.append(f"auto_map {sorted(doc['auto_map'])} (custom code)")
    if (doc.get("position_embedding_type") or "absolute") != "absolute":
        signs.append(f"position_embedding_type={doc['position_embedding_type']!r}")
    if doc.get("add_bias_fnn") is False:
        signs.append("add_bias_fnn=false (gated feed-forward without biases)")
    return signs


def config_from_hf(doc: dict[str, Any], source: str, files: Iterable[str] = ()) -> NTConfig:
    """NTConfig from config.json (`files`: the checkpoint's file names, to spot custom code);
    missing fields take transformers' EsmConfig defaults."""
    where = f"{source}/config.json"
    problems = []
    signs = _v2_signs(doc, files)
    if signs:
        problems.append(f"{'; '.join(signs)}: {NOT_V1}")
    if doc.get("model_type", "esm") != "esm":
        problems.append(f"model_type={doc['model_type']!r} (only 'esm')")
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


def config_to_hf(cfg: NTConfig) -> dict[str, Any]:
    """The config.json `EsmModel.from_pretrained` reads back as the same NTConfig."""
    return {
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
