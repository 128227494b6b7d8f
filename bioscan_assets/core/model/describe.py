"""What a model spec is, without running it: architecture, size, storage, weights hash, and
which preset it matches (`bioscan model inspect`).

The hash is computed one tensor at a time in sorted order, so inspecting the 2.5B checkpoint
needs one tensor's memory, not the model's, and gives the same value `load_model` records.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bioscan_assets.core.model import hub, streaming
from bioscan_assets.core.model.checkpoint import locate, read_config
from bioscan_assets.core.model.loaded import weights_hash
from bioscan_assets.core.model.nt_model import NTConfig
from bioscan_assets.core.model.presets import PRESETS, PUBLISHED, RANDOM, random_params

ARCHITECTURE = "Nucleotide Transformer v1 (ESM encoder, learned absolute positions)"
_SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")


def _shape(config: NTConfig) -> tuple[int, ...]:
    return tuple(getattr(config, name) for name in _SHAPE_FIELDS)


def _architecture(config: NTConfig) -> dict[str, Any]:
    same = [name for name, preset in PRESETS.items() if _shape(preset) == _shape(config)]
    fields = asdict(config)
    return {
        "architecture": ARCHITECTURE,
        "layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "max_tokens": config.max_tokens,
        "token_dropout": fields["token_dropout"],
        "parameters": config.encoder_parameter_count(),
        "same_shape_as": same,
    }


def inspect_model(spec: str, with_hash: bool = True) -> dict[str, Any]:
    """A JSON-ready description of a preset name or checkpoint location."""
    spec = spec.strip()
    if spec in RANDOM:
        config = RANDOM[spec]
        return {
            "spec": spec,
            "source": "random weights (preset)",
            "pretrained": False,
            **_architecture(config),
            "stored_dtypes": ["float32"],
            "weights_hash": weights_hash(random_params(config)) if with_hash else None,
            "preset": spec,
        }
    location, hint = spec, ""
    if spec in PUBLISHED:
        location = PUBLISHED[spec].spec
        hint = f"(Preset {spec!r} is that checkpoint.) {hub.copy_hint(spec)}"
    with locate(location, hint) as found:
        config, _tokenizer, layout = read_config(found)
        files = {shard: found.path(shard) for shard in layout.shards}
        plan = streaming.plan(layout, files, config, found.source)
        digest = streaming.hash_streamed(plan, layout, files, found.source) if with_hash else None
        origin = found.origin or hub.read_source(found.names, found.read_text)
        source = found.source
    published = [
        name
        for name, pub in PUBLISHED.items()
        if origin.get("repo_id") == pub.repo_id and _shape(config) == _shape(pub.config)
    ]
    return {
        "spec": spec,
        "source": source,
        "pretrained": True,
        **({"hub": origin} if origin else {}),
        **_architecture(config),
        "stored_parameters": plan.parameters,
        "stored_dtypes": sorted(plan.stored_dtypes),
        "layout": {"format": layout.format, "files": list(layout.shards), "index": layout.index},
        "bytes": plan.stored_bytes,
        "weights_hash": digest,
        "preset": spec if spec in PUBLISHED else (published[0] if published else None),
    }
