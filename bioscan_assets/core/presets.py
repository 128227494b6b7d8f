"""Model presets and `load_model`: a preset name or a Hugging Face checkpoint, cached per spec.

NT weights cannot be downloaded here, so presets get random weights from a fixed seed and say
`pretrained=False`; a real checkpoint directory or `gs://` URL gives the published model.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, replace
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from bioscan_assets.core.nt_model import NTConfig, NucleotideTransformer, param_shapes
from bioscan_assets.core.tokenizer import NTTokenizer

NT_VOCAB_SIZE = 4105
PRESET_SEED = 20261122

PRESETS: dict[str, NTConfig] = {
    "nt-2.5b-multi-species": NTConfig(NT_VOCAB_SIZE, 2560, 32, 20, 10240),
    "nt-500m-human-ref": NTConfig(NT_VOCAB_SIZE, 1280, 24, 20, 5120),
    "nt-500m-1000g": NTConfig(NT_VOCAB_SIZE, 1280, 24, 20, 5120),
    # NT v1 shape at hidden 2560 so the demo writes real 2560-dim vectors; two layers keep the
    # bundled demo (~26k tokens) to about two minutes on 2 CPU cores.
    "demo": NTConfig(NT_VOCAB_SIZE, 2560, 2, 20, 10240),
    "tiny": NTConfig(NT_VOCAB_SIZE, 64, 2, 4, 128, max_position_embeddings=130),
}


@dataclass
class LoadedModel:
    model_id: str
    config: NTConfig
    params: Any  # flax params pytree, float32
    tokenizer: NTTokenizer
    weights_hash: str
    pretrained: bool
    source: str

    def module(self, dtype: Any = jnp.float32, **overrides: Any) -> NucleotideTransformer:
        config = replace(self.config, **overrides) if overrides else self.config
        return NucleotideTransformer(config, dtype=dtype)

    def provenance(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "weights_hash": self.weights_hash,
            "pretrained": self.pretrained,
            "source": self.source,
            "hidden_size": self.config.hidden_size,
            "num_layers": self.config.num_layers,
        }


def weights_hash(params: Any) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for path, leaf in sorted(flatten_dict(params, sep="/").items()):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{path}|{array.shape}|{array.dtype}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def random_params(config: NTConfig, seed: int = PRESET_SEED) -> Any:
    """Deterministic random weights on any machine (numpy PCG64), without a traced init."""
    rng = np.random.default_rng(seed)
    out = {}
    shapes = flatten_dict(param_shapes(config), sep="/", is_leaf=lambda _, x: isinstance(x, tuple))
    for path, shape in sorted(shapes.items()):
        name = path.rsplit("/", 1)[-1]
        if name in ("bias", "lora_b"):
            out[path] = np.zeros(shape, np.float32)
        elif name == "scale":
            out[path] = np.ones(shape, np.float32)
        else:
            out[path] = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
    return unflatten_dict(out, sep="/")


@functools.lru_cache(maxsize=4)
def load_model(spec: str) -> LoadedModel:
    """A preset name, or a Hugging Face checkpoint directory / `gs://` URL."""
    if spec in PRESETS:
        config = PRESETS[spec]
        params = random_params(config)
        return LoadedModel(
            model_id=spec,
            config=config,
            params=params,
            tokenizer=NTTokenizer.standard(),
            weights_hash=weights_hash(params),
            pretrained=False,
            source=f"preset:{spec} (random weights, seed {PRESET_SEED})",
        )
    if "/" not in spec and not spec.startswith("."):
        raise ValueError(
            f"BIOSCAN_MODEL={spec!r} is neither a preset ({', '.join(PRESETS)}) nor a "
            "checkpoint path; give a preset name or a directory / gs:// URL with config.json"
        )
    from bioscan_assets.core.checkpoint import load_checkpoint

    return load_checkpoint(spec)
