"""Model presets and `load_model`: a preset name, a checkpoint location or a Hub id.

Names of published models (`nt-2.5b-multi-species`, ...) are the real checkpoints on the
Hugging Face Hub; random-weight shapes exist only under names that say so (`random-nt-2.5b`,
`random-nt-500m`) plus the small `demo` and `tiny` models, all with `pretrained=False`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from bioscan_assets.core.model import hub
from bioscan_assets.core.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_located,
    locate,
)
from bioscan_assets.core.model.loaded import LoadedModel, weights_hash
from bioscan_assets.core.model.nt_model import NTConfig, param_shapes
from bioscan_assets.core.model.tokenizer import NTTokenizer

NT_VOCAB_SIZE = 4105
PRESET_SEED = 20261122
INIT_STD = 0.02
# NOT a commit pin: the commit shas of the published repositories could not be looked up from
# here, so presets follow the branch. Every load records the commit it resolved to
# (`hub_commit` in provenance); replace this with that sha to pin.
PUBLISHED_REVISION_UNPINNED = "main"

NT_2_5B = NTConfig(NT_VOCAB_SIZE, 2560, 32, 20, 10240)
NT_500M = NTConfig(NT_VOCAB_SIZE, 1280, 24, 20, 5120)


@dataclass(frozen=True)
class Published:
    repo_id: str
    config: NTConfig  # the architecture its config.json must give
    revision: str = PUBLISHED_REVISION_UNPINNED

    @property
    def spec(self) -> str:
        return f"{self.repo_id}@{self.revision}"


PUBLISHED: dict[str, Published] = {
    "nt-2.5b-multi-species": Published(
        "InstaDeepAI/nucleotide-transformer-2.5b-multi-species", NT_2_5B
    ),
    "nt-500m-human-ref": Published("InstaDeepAI/nucleotide-transformer-500m-human-ref", NT_500M),
    "nt-500m-1000g": Published("InstaDeepAI/nucleotide-transformer-500m-1000g", NT_500M),
}
RANDOM: dict[str, NTConfig] = {
    "random-nt-2.5b": NT_2_5B,
    "random-nt-500m": NT_500M,
    # NT v1 layer shape at hidden 2560, so the demo writes real 2560-dim vectors, with ONE layer:
    # about 0.16 GFLOP per token, so the bundled demo's ~30k tokens embed in about a minute on
    # 2 CPU cores and leave time for LoRA tuning (3x forward per step) in the same demo run.
    "demo": NTConfig(NT_VOCAB_SIZE, 2560, 1, 20, 10240),
    "tiny": NTConfig(NT_VOCAB_SIZE, 64, 2, 4, 128, max_position_embeddings=130),
}
# The architecture behind every preset name (published ones as their config.json gives it).
PRESETS: dict[str, NTConfig] = {
    **{name: published.config for name, published in PUBLISHED.items()},
    **RANDOM,
}


def _uniform(seed: int, path: str, size: int, bound: float) -> np.ndarray:
    """U[-bound, bound) float32 from a PCG64 stream keyed by (seed, path).

    Built from raw PCG64 bits (numpy keeps those stable across versions and machines, unlike
    its distribution methods): each 64-bit draw, read as two little-endian 32-bit words, gives
    two 24-bit values, exact in float32. Chunked so temporaries stay small.
    """
    key = int.from_bytes(hashlib.sha256(f"{seed}/{path}".encode()).digest()[:16], "little")
    bits = np.random.PCG64(key)
    out = np.empty(size, np.float32)
    scale, chunk = np.float32(2 * bound / (1 << 24)), 1 << 21
    for begin in range(0, size, chunk):
        count = min(chunk, size - begin)
        words = bits.random_raw((count + 1) // 2).astype("<u8", copy=False).view("<u4")[:count]
        view = out[begin : begin + count]
        view[:] = words >> np.uint32(8)
        view *= scale
        view -= np.float32(bound)
    return out


def random_params(config: NTConfig, seed: int = PRESET_SEED) -> Any:
    """Deterministic random weights on any machine, without tracing or compiling an init.

    Matrices and embeddings get std 0.02 (uniform), biases 0, LayerNorm scales 1.
    """
    out = {}
    shapes = flatten_dict(param_shapes(config), sep="/", is_leaf=lambda _, x: isinstance(x, tuple))
    for path, shape in sorted(shapes.items()):
        name = path.rsplit("/", 1)[-1]
        if name == "bias":
            out[path] = np.zeros(shape, np.float32)
        elif name == "scale":
            out[path] = np.ones(shape, np.float32)
        else:
            size = int(np.prod(shape))
            out[path] = _uniform(seed, path, size, INIT_STD * 3**0.5).reshape(shape)
    return unflatten_dict(out, sep="/")


def _shape(config: NTConfig) -> tuple[int, ...]:
    return (
        config.vocab_size,
        config.hidden_size,
        config.num_layers,
        config.num_heads,
        config.intermediate_size,
    )


def random_model(name: str) -> LoadedModel:
    config = RANDOM[name]
    params = random_params(config)
    return LoadedModel(
        model_id=name,
        config=config,
        params=params,
        tokenizer=NTTokenizer.standard(),
        weights_hash=weights_hash(params),
        pretrained=False,
        source=f"preset:{name} (random weights, seed {PRESET_SEED})",
    )


def published_model(name: str, dtype: Any = np.float32) -> LoadedModel:
    """The published checkpoint from the Hub (or its cache), filed under the preset's name."""
    published = PUBLISHED[name]
    hint = f"(Preset {name!r} is that checkpoint.) {hub.copy_hint(name)}"
    with locate(published.spec, hint) as found:
        model = load_located(found, dtype, model_id=name)
    if _shape(model.config) != _shape(published.config):
        raise CheckpointError(
            f"{model.source}: config.json gives (vocab, hidden, layers, heads, ffn) "
            f"{_shape(model.config)}, not the {_shape(published.config)} of {name}"
        )
    return model


@functools.lru_cache(maxsize=4)
def load_model(spec: str, dtype: str = "float32") -> LoadedModel:
    """A preset name, or a checkpoint: directory, `gs://` URL or Hub id `org/name[@revision]`.

    Cached per process and per spec string: a checkpoint rewritten in place is not reread until
    the process restarts.
    """
    spec = spec.strip()
    if spec in RANDOM:
        return random_model(spec)
    if spec in PUBLISHED:
        return published_model(spec, jnp.dtype(dtype))
    if Path(spec).expanduser().is_dir():
        return load_checkpoint(str(Path(spec).expanduser()), jnp.dtype(dtype))
    if not (spec.startswith("gs://") or hub.parse_ref(spec)):
        raise ValueError(
            f"model {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a checkpoint: a "
            "directory, gs:// URL or Hugging Face Hub id org/name[@revision] (with config.json, "
            "vocab.txt and weights)"
        )
    return load_checkpoint(spec, jnp.dtype(dtype))
