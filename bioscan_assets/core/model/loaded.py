"""A model ready to run: config, weights, tokenizer and the identity its outputs are filed under."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax.traverse_util import flatten_dict

from bioscan_assets.core.model.nt_model import NTConfig, NucleotideTransformer
from bioscan_assets.core.model.tokenizer import NTTokenizer


@dataclass
class LoadedModel:
    model_id: str
    config: NTConfig
    params: Any  # flax params pytree: float32 numpy unless loaded in another dtype or placed
    tokenizer: NTTokenizer
    weights_hash: str
    pretrained: bool
    source: str
    origin: dict[str, str] = field(default_factory=dict)  # Hub repo_id / revision / commit

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
            **{f"hub_{key}": value for key, value in self.origin.items()},
        }


_WIDENED = {np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)}
_WIDEN_CHUNK = 1 << 20


def weights_hash(params: Any) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes, in sorted name order.

    Half-precision leaves are hashed as the float32 values they equal, so the same weights
    give the same hash whatever dtype they are held in (leaves may live on devices).
    """
    digest = hashlib.sha256()
    for path, leaf in sorted(flatten_dict(params, sep="/").items()):
        hash_leaf(digest, path, leaf)
    return digest.hexdigest()


def hash_leaf(digest: Any, path: str, leaf: Any) -> None:
    """One parameter's share of `weights_hash`; callers feed leaves in sorted path order."""
    array = np.asarray(leaf)
    if array.dtype in _WIDENED:  # widened a slice at a time: no float32 copy of the whole leaf
        flat = np.ascontiguousarray(array).reshape(-1)
        digest.update(f"{path}|{array.shape}|float32\n".encode())
        for start in range(0, flat.size, _WIDEN_CHUNK):
            digest.update(flat[start : start + _WIDEN_CHUNK].astype("<f4").data)
        return
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    digest.update(f"{path}|{array.shape}|{array.dtype}\n".encode())
    digest.update(memoryview(array).cast("B"))  # no copy of large leaves
