"""Model presets and `load_model`: a preset name or a Hugging Face checkpoint, cached per spec.

NT weights cannot be downloaded here, so presets get random weights from a fixed seed and say
`pretrained=False`; a real checkpoint directory or `gs://` URL gives the published model.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from bioscan_assets.core.model.checkpoint import load_checkpoint
from bioscan_assets.core.model.loaded import LoadedModel, weights_hash
from bioscan_assets.core.model.nt_model import NTConfig, param_shapes
from bioscan_assets.core.model.tokenizer import NTTokenizer

NT_VOCAB_SIZE = 4105
PRESET_SEED = 20261122
INIT_STD = 0.02

PRESETS: dict[str, NTConfig] = {
    "nt-2.5b-multi-species": NTConfig(NT_VOCAB_SIZE, 2560, 32, 20, 10240),
    "nt-500m-human-ref": NTConfig(NT_VOCAB_SIZE, 1280, 24, 20, 5120),
    "nt-500m-1000g": NTConfig(NT_VOCAB_SIZE, 1280, 24, 20, 5120),
    # NT v1 layer shape at hidden 2560, so the demo writes real 2560-dim vectors, with ONE layer:
    # about 0.16 GFLOP per token, so the bundled demo's ~30k tokens embed in about a minute on
    # 2 CPU cores and leave time for LoRA tuning (3x forward per step) in the same demo run.
    "demo": NTConfig(NT_VOCAB_SIZE, 2560, 1, 20, 10240),
    "tiny": NTConfig(NT_VOCAB_SIZE, 64, 2, 4, 128, max_position_embeddings=130),
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


def _is_checkpoint_spec(spec: str) -> bool:
    return spec.startswith("gs://") or Path(spec).expanduser().is_dir()


@functools.lru_cache(maxsize=4)
def load_model(spec: str) -> LoadedModel:
    """A preset name, or a Hugging Face checkpoint directory / `gs://` URL (cached per spec).

    The cache is per process and per spec string: a checkpoint rewritten in place is not
    reread until the process restarts.
    """
    spec = spec.strip()
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
    if not _is_checkpoint_spec(spec):
        raise ValueError(
            f"model {spec!r} is neither a preset ({', '.join(PRESETS)}) nor an existing "
            "checkpoint directory or gs:// URL (with config.json, vocab.txt and weights)"
        )
    return load_checkpoint(str(Path(spec).expanduser()) if not spec.startswith("gs://") else spec)
