"""Embedding with and without the hash store on a simulated amplicon study (not a timed test).

    .venv/bin/python tests/benchmarks/bench_dedup.py                 # demo model, ~10 min on 2 cores
    .venv/bin/python tests/benchmarks/bench_dedup.py --model tiny --samples 8 --reads 4000
    .venv/bin/python tests/benchmarks/bench_dedup.py --reads 5000 --pool 1000   # on a GPU/TPU
    .venv/bin/python tests/benchmarks/bench_dedup.py --help
    .venv/bin/pytest -m benchmark tests/benchmarks/bench_dedup.py    # the same, small, as a check

The study (all knobs are options; defaults in brackets):
- a pool of --pool [150] distinct amplicon sequence variants (ASVs), --length [253] bp, random;
- --samples [6] samples over --tenants [2] tenants (samples alternate between them);
- abundance: ASV i has base weight (i + 1) ** -s, a Zipf law with s = --zipf [1.1]; each sample
  keeps each ASV with probability --present [0.7] and multiplies its weight by log-normal noise
  (sigma --sigma [1.0]), then draws --reads [500] reads from the renormalised weights;
- sequencing errors: each read gets Poisson(L * --error-rate [0.0005]) random substitutions
  (about 12% of 253 bp reads carry at least one), so most error copies are new sequences.

Two runs over the same shards, each in its own storage root, with one executor (shapes warmed
up first, untimed):
  every row   what `sequence_embeddings` did before the hash store: every shard row embedded
              in chunks, one part per chunk (the old layout), manifest last;
  hash store  `embed_partition`: distinct sequences the tenant's store lacks, then the rows.
Reported: rows, distinct (in the sample), computed, wall time per sample, effective rows/hour,
the duplication factor (rows / computed) and the speed-up (wall clock; CPU seconds too, which
are steadier on a shared machine), plus the time to read every partition's vectors back
through `iter_embedding_batches` from both layouts.
Goals (issue 12): computed == distinct (tenant, sequence) pairs exactly; speed-up per sample
>= 0.8 x the duplication factor; reading no more than 10% slower than the old layout.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bioscan_assets.core import layout  # noqa: E402
from bioscan_assets.core.embedding.accelerator import Accelerator  # noqa: E402
from bioscan_assets.core.embedding.batching import _rows_at_least  # noqa: E402
from bioscan_assets.core.embedding.compute import (  # noqa: E402
    EmbeddingExecutor,
    EmbedStats,
    embed_partition,
    iter_embedding_batches,
    run_key,
)
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches, read_shard_manifest  # noqa: E402
from bioscan_assets.core.model.presets import load_model  # noqa: E402
from bioscan_assets.core.schema import embedding_schema  # noqa: E402
from bioscan_assets.core.storage import Store  # noqa: E402
from tests.helpers import write_drop  # noqa: E402
from tests.pipeline_helpers import ingest  # noqa: E402

pytestmark = pytest.mark.benchmark
BASES = np.frombuffer(b"ACGT", np.uint8)


def simulate(args: argparse.Namespace) -> dict[tuple[str, str], dict[str, str]]:
    """{(tenant, sample): {read name: sequence}} for the study the options describe."""
    rng = np.random.default_rng(args.seed)
    pool = rng.integers(0, 4, (args.pool, args.length), dtype=np.uint8)  # base indices
    base = (np.arange(args.pool) + 1.0) ** -args.zipf
    study = {}
    for s in range(args.samples):
        tenant = f"lab-{s % args.tenants}"
        present = rng.random(args.pool) < args.present
        weights = base * present * rng.lognormal(0.0, args.sigma, args.pool)
        picks = rng.choice(args.pool, args.reads, p=weights / weights.sum())
        reads = pool[picks].copy()
        errors = rng.poisson(args.length * args.error_rate, args.reads)
        for row in np.flatnonzero(errors):
            at = rng.integers(0, args.length, errors[row])
            reads[row, at] = (reads[row, at] + rng.integers(1, 4, len(at))) % 4  # another base
        text = BASES[reads]
        study[(tenant, f"S{s:03d}")] = {f"r{i}": r.tobytes().decode() for i, r in enumerate(text)}
    return study


def ingest_study(study, root: Path) -> Store:
    landing, storage = root / "landing", Store(str(root / "shards"))
    for (tenant, sample), reads in study.items():
        write_drop(landing, tenant, sample, sequences=reads)
        ingest(Store(str(landing)), storage, tenant, sample)
    return storage


def embed_every_row(
    store: Store, tenant: str, sample: str, executor: EmbeddingExecutor, chunk_rows: int
) -> None:
    """The embedding step before the hash store: every row, one part per chunk, manifest last."""
    model = executor.model
    shards = read_shard_manifest(store, tenant, sample)
    key = run_key(shards["version"], model.weights_hash)
    folder = layout.embedding_dir(model.model_id, tenant, sample)
    files, ids, seqs, start = [], [], [], 0

    def flush() -> None:
        nonlocal ids, seqs, start
        vectors = executor.embed(seqs)
        dim = vectors.shape[1]
        table = pa.Table.from_arrays(
            [pa.array(ids), pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)],
            schema=embedding_schema(dim),
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd", write_statistics=False)
        name = f"part-{key}-{start:09d}-{start + len(ids):09d}.parquet"
        store.write_bytes(f"{folder}/{name}", buffer.getvalue())
        digest = hashlib.sha256(buffer.getvalue()).hexdigest()
        files.append({"path": name, "rows": len(ids), "sha256": digest})
        start += len(ids)
        ids, seqs = [], []

    for batch in iter_shard_batches(store, tenant, sample, columns=["sequence_id", "dna_sequence"]):
        for sequence_id, sequence in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            ids.append(sequence_id)
            seqs.append(sequence)
            if len(ids) >= chunk_rows:
                flush()
    if ids:
        flush()
    manifest = {"key": key, "model_id": model.model_id, "rows": start, "files": files}
    store.write_bytes(f"{folder}/_manifest.json", json.dumps(manifest).encode())


def read_back_s(store: Store, model_id: str, keys, repeat: int = 3) -> float:
    """Best-of time to read every partition's vectors as the index step does."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for tenant, sample in keys:
            for batch in iter_embedding_batches(store, model_id, tenant, sample):
                batch.column("vector").flatten().to_numpy(zero_copy_only=False)
        best = min(best, time.perf_counter() - started)
    return best


def run(args: argparse.Namespace) -> dict:
    study = simulate(args)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    shards = ingest_study(study, tmp)
    executor = EmbeddingExecutor(load_model(args.model), Accelerator.discover(), args.token_budget)
    model_id = executor.model.model_id
    keys = list(study)
    # warm-up, untimed: one batch of every row count the runs can pack (reads have one length,
    # so one bucket), so neither run pays for a compilation
    warm = list(study[keys[0]].values())
    full = min(args.chunk_rows, args.token_budget // (args.length // 6 + 2))
    for n in sorted({_rows_at_least(n) for n in range(1, full + 1)}):
        executor.embed(warm[:n])
    roots = {}
    for mode in ("every_row", "hash_store"):
        roots[mode] = Store(str(tmp / mode))
        for rel in shards.list_files("shards"):  # the same shard bytes for both runs
            roots[mode].write_bytes(rel, shards.read_bytes(rel))
    per_sample = []
    for tenant, sample in keys:
        reads = study[(tenant, sample)]
        row = {
            "sample": f"{tenant}/{sample}",
            "rows": len(reads),
            "distinct": len(set(reads.values())),
        }
        executor.stats = EmbedStats()
        started, cpu = time.perf_counter(), time.process_time()
        embed_every_row(roots["every_row"], tenant, sample, executor, args.chunk_rows)
        row["every_row_s"] = time.perf_counter() - started
        row["every_row_cpu_s"] = time.process_time() - cpu
        executor.stats = EmbedStats()
        started, cpu = time.perf_counter(), time.process_time()
        result = embed_partition(
            roots["hash_store"], tenant, sample, executor, chunk_rows=args.chunk_rows
        )
        row["hash_store_s"] = time.perf_counter() - started
        row["hash_store_cpu_s"] = time.process_time() - cpu
        row["computed"] = result["computed"]
        row["reused"] = result["reused"]
        row["duplication"] = row["rows"] / max(row["computed"], 1)
        row["speedup"] = row["every_row_s"] / row["hash_store_s"]
        per_sample.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    pairs = {(t, seq) for (t, _s), reads in study.items() for seq in reads.values()}
    rows = sum(r["rows"] for r in per_sample)
    computed = sum(r["computed"] for r in per_sample)
    every_s = sum(r["every_row_s"] for r in per_sample)
    store_s = sum(r["hash_store_s"] for r in per_sample)
    read_old = read_back_s(roots["every_row"], model_id, keys)
    read_new = read_back_s(roots["hash_store"], model_id, keys)
    return {
        "model": args.model,
        "device": executor.accelerator.describe(),
        "study": {
            k: getattr(args, k)
            for k in (
                "samples",
                "tenants",
                "pool",
                "length",
                "reads",
                "zipf",
                "present",
                "sigma",
                "error_rate",
                "seed",
            )
        },
        "rows": rows,
        "distinct_tenant_sequence_pairs": len(pairs),
        "computed": computed,
        "computed_equals_distinct_pairs": computed == len(pairs),
        "duplication_factor": round(rows / max(computed, 1), 2),
        "wall_s_per_sample": {
            "every_row": round(every_s / len(keys), 3),
            "hash_store": round(store_s / len(keys), 3),
        },
        "effective_rows_per_hour": {
            "every_row": round(rows / every_s * 3600),
            "hash_store": round(rows / store_s * 3600),
        },
        "speedup": round(every_s / store_s, 2),
        "speedup_cpu_s": round(
            sum(r["every_row_cpu_s"] for r in per_sample)
            / sum(r["hash_store_cpu_s"] for r in per_sample),
            2,
        ),
        "goal_speedup_at_least": round(0.8 * rows / max(computed, 1), 2),
        "samples_meeting_goal": sum(r["speedup"] >= 0.8 * r["duplication"] for r in per_sample),
        "read_back_s": {"old_layout": round(read_old, 4), "hash_store_layout": round(read_new, 4)},
        "read_back_ratio": round(read_new / read_old, 3),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="demo", help="a preset (demo, tiny) or checkpoint")
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--pool", type=int, default=150, help="distinct ASVs in the study")
    parser.add_argument("--length", type=int, default=253, help="amplicon length (bp)")
    parser.add_argument("--reads", type=int, default=500, help="reads per sample")
    parser.add_argument("--zipf", type=float, default=1.1, help="abundance exponent s")
    parser.add_argument("--present", type=float, default=0.7, help="P(an ASV is in a sample)")
    parser.add_argument("--sigma", type=float, default=1.0, help="log-normal abundance noise")
    parser.add_argument("--error-rate", type=float, default=0.0005, help="substitutions per base")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-rows", type=int, default=512)
    parser.add_argument("--token-budget", type=int, default=8192)
    return parser.parse_args(argv)


def test_computed_equals_distinct_pairs() -> None:
    """The benchmark's exactness goal on a small study with the tiny model (no timing goal)."""
    report = run(
        parse_args(["--model", "tiny", "--samples", "4", "--reads", "300", "--pool", "80"])
    )
    assert report["computed_equals_distinct_pairs"]
    assert report["duplication_factor"] > 1.5


def main() -> None:
    print(json.dumps(run(parse_args()), indent=2))


if __name__ == "__main__":
    main()
