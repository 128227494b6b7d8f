"""Subprocess entry: embed fixed sequences on however many CPU devices XLA_FLAGS gives."""

import json
import sys

import jax
import numpy as np

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor
from bioscan_assets.core.model.presets import load_model
from tests.helpers import random_dna

if __name__ == "__main__":
    rng = np.random.default_rng(11)
    seqs = [random_dna(rng, n, alphabet="ACGTN") for n in rng.integers(20, 700, 37)]
    executor = EmbeddingExecutor(load_model("tiny"), Accelerator.discover(), token_budget=2048)
    vectors = executor.embed(seqs)
    ids = np.full((8 * executor.accelerator.device_count, 32), 5, np.int32)
    compiled = executor._forward.lower(
        executor._params, executor.accelerator.shard_batch(ids)
    ).compile()
    batch_sharding = compiled.input_shardings[0][1]
    np.save(sys.argv[1], vectors)
    print(
        json.dumps(
            {
                "devices": jax.device_count(),
                "mesh_axes": list(executor.accelerator.mesh.axis_names),
                "batch_spec": [str(p) for p in batch_sharding.spec],
                "batch_devices": len(batch_sharding.device_set),
                "shard_shape": list(batch_sharding.shard_shape(ids.shape)),
            }
        )
    )
