"""A model ready to run: config, weights, tokenizer and the identity its outputs are filed under."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from bioscan_assets.core.model.nt_model import NTConfig, NucleotideTransformer
from bioscan_assets.core.model.tokenizer import NTTokenizer


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
        array = np.asarray(leaf)
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        digest.update(f"{path}|{array.shape}|{array.dtype}\n".encode())
        digest.update(memoryview(array).cast("B"))  # no copy of large leaves
    return digest.hexdigest()
