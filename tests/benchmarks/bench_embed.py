"""Embedding throughput benchmark (not part of the test run).

    python tests/benchmarks/bench_embed.py [--model demo] [--backfill 20]
    python tests/benchmarks/bench_embed.py --shape-only --model random-nt-2.5b \\
        --dtype bfloat16 --length 1000            # on a GPU/TPU: vectors/hour and MFU

1. End to end (read shards -> tokenise -> compute -> write) for every bundled demo sample
   against the bare jitted forward pass on the very same token batches, and the padding
   efficiency on the demo data.
2. Per-partition overhead of a backfill of N small partitions: N separate processes (one run
   each: import, model load, compile from the persistent cache) against one process handling
   all N (what BackfillPolicy.multi_run does).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bioscan_assets.core.embedding.accelerator import Accelerator  # noqa: E402
from bioscan_assets.core.embedding.batching import pack_batches, split_windows  # noqa: E402
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, EmbedStats, embed_partition  # noqa: E402
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches  # noqa: E402
from bioscan_assets.core.model.presets import PRESETS, load_model  # noqa: E402


def end_to_end(model_spec: str, token_budget: int) -> dict:
    from tests.pipeline_helpers import ingest_demo

    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    _landing, storage, keys = ingest_demo(tmp)
    executor = EmbeddingExecutor(load_model(model_spec), Accelerator.discover(), token_budget)
    # warm every shape once so both sides measure steady state, not compilation
    all_tokens = []
    for key in keys:
        tenant, sample = key.split("/")
        for batch in iter_shard_batches(storage, tenant, sample, columns=["dna_sequence"]):
            for seq in batch.column(0).to_pylist():
                all_tokens.extend(
                    split_windows(
                        executor.model.tokenizer.encode(seq), executor.model.config.max_tokens
                    )
                )
    batches = list(
        pack_batches(
            all_tokens,
            pad_id=executor.model.tokenizer.pad_id,
            max_tokens=executor.model.config.max_tokens,
            token_budget=token_budget,
            device_count=executor.accelerator.device_count,
        )
    )
    for batch in batches:
        executor._forward(
            executor._params, executor.accelerator.shard_batch(batch.ids)
        ).block_until_ready()

    started = time.perf_counter()
    for batch in batches:
        out = executor._forward(executor._params, executor.accelerator.shard_batch(batch.ids))
    out.block_until_ready()
    bare_s = time.perf_counter() - started

    executor.stats = EmbedStats()
    started = time.perf_counter()
    for key in keys:
        tenant, sample = key.split("/")
        embed_partition(storage, tenant, sample, executor, chunk_rows=100_000)
    e2e_s = time.perf_counter() - started
    stats = executor.stats
    return {
        "model": model_spec,
        "sequences": stats.sequences,
        "real_tokens": stats.real_tokens,
        "bare_forward_s": round(bare_s, 2),
        "end_to_end_s": round(e2e_s, 2),
        "end_to_end_over_bare": round(bare_s / e2e_s, 3),
        "padding_efficiency": round(stats.padding_efficiency, 3),
        "tokens_per_s_end_to_end": round(stats.real_tokens / e2e_s, 1),
        "time_split_s": {
            k: round(getattr(stats, k), 2) for k in ("read_s", "tokenise_s", "compute_s", "write_s")
        },
    }


_WORKER = """
import sys, time
t0 = time.perf_counter()
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
storage, model, cache, keys = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
ex = EmbeddingExecutor(load_model(model), Accelerator.discover(cache_dir=cache))
for key in keys:
    t, s = key.split("/")
    embed_partition(Store(storage), t, s, ex)
print(time.perf_counter() - t0)
"""


def backfill(model_spec: str, partitions: int) -> dict:
    from bioscan_assets.core.storage import Store
    from tests.helpers import random_dna, write_drop
    from tests.pipeline_helpers import ingest

    tmp = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    rng = np.random.default_rng(0)
    keys = []
    for mode in ("separate", "together"):
        landing, storage = tmp / mode / "landing", Store(str(tmp / mode / "storage"))
        for i in range(partitions):
            seqs = {f"r{j}": random_dna(rng, 150) for j in range(20)}
            write_drop(landing, "bench", f"P{i:03d}", sequences=seqs)
            ingest(Store(str(landing)), storage, "bench", f"P{i:03d}")
        keys = [f"bench/P{i:03d}" for i in range(partitions)]
    cache = str(tmp / "jax_cache")
    env_cmd = [sys.executable, "-c", _WORKER]
    subprocess.run(
        [*env_cmd, str(tmp / "warm"), model_spec, cache], cwd=ROOT, check=True, capture_output=True
    )
    started = time.perf_counter()
    for key in keys:
        subprocess.run(
            [*env_cmd, str(tmp / "separate" / "storage"), model_spec, cache, key],
            cwd=ROOT,
            check=True,
        )
    separate = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        [*env_cmd, str(tmp / "together" / "storage"), model_spec, cache, *keys],
        cwd=ROOT,
        check=True,
    )
    together = time.perf_counter() - started
    return {
        "partitions": partitions,
        "one_run_per_partition_s": round(separate, 2),
        "one_run_for_all_s": round(together, 2),
        "per_partition_overhead_separate_s": round(separate / partitions, 2),
        "per_partition_overhead_together_s": round(together / partitions, 2),
    }


def shape_only(model_spec: str, dtype: str, length: int, batch: int, steps: int) -> dict:
    """Random weights at a preset's shape: vectors/hour and model FLOP utilisation."""
    from bioscan_assets.core.model.presets import random_params

    config = PRESETS[model_spec]
    accelerator = Accelerator.discover(dtype)
    params = accelerator.replicate(random_params(config))
    module = load_model("tiny").module(accelerator.dtype).__class__(config, accelerator.dtype)
    from bioscan_assets.core.model.nt_model import mean_pool

    @jax.jit
    def forward(p, ids):
        mask = ids != 1
        return mean_pool(module.apply({"params": p}, ids, mask), mask)

    tokens = length // 6 + 1
    ids = accelerator.shard_batch(np.full((batch, tokens), 5, np.int32))
    forward(params, ids).block_until_ready()
    started = time.perf_counter()
    for _ in range(steps):
        out = forward(params, ids)
    out.block_until_ready()
    seconds = (time.perf_counter() - started) / steps
    flops = config.flops_per_token(tokens) * batch * tokens
    peak = {"gpu": 989e12, "tpu": 197e12, "cpu": 1e11}[
        accelerator.platform
    ] * accelerator.device_count
    return {
        **accelerator.describe(),
        "vectors_per_hour": round(batch / seconds * 3600),
        "achieved_tflops": round(flops / seconds / 1e12, 2),
        "mfu_vs_dense_bf16_peak": round(flops / seconds / peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="demo")
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--backfill", type=int, default=20, help="partitions (0 skips)")
    parser.add_argument("--backfill-model", default="tiny")
    parser.add_argument("--shape-only", action="store_true")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if args.shape_only:
        print(
            json.dumps(
                shape_only(args.model, args.dtype, args.length, args.batch, args.steps), indent=2
            )
        )
        return
    print(
        json.dumps({"end_to_end": end_to_end(args.model, args.token_budget)}, indent=2), flush=True
    )
    if args.backfill:
        print(json.dumps({"backfill": backfill(args.backfill_model, args.backfill)}, indent=2))


if __name__ == "__main__":
    main()
