"""A partition killed mid-embedding (SIGKILL) resumes from the hash store's commits; two
partitions of one tenant embedding at once (two processes) never compute a sequence twice."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from subprocess import PIPE

import numpy as np
import pyarrow as pa

from bioscan_assets.core.embedding.compute import iter_embedding_batches
from bioscan_assets.core.embedding.hash_store import HashStore
from bioscan_assets.core.ingest.shard_reader import read_shard_manifest
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from tests.helpers import python, random_dna, run, start, write_drop
from tests.pipeline_helpers import ingest

WORKER = python("-m", "tests.integration.embed_worker")


def _vectors(store: Store, sample: str = "S1") -> tuple[list[str], np.ndarray]:
    table = pa.Table.from_batches(list(iter_embedding_batches(store, "tiny", "lab", sample)))
    dim = table.schema.field("vector").type.list_size
    vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    return table.column("sequence_id").to_pylist(), vectors


def _result(stdout: str) -> dict[str, int]:
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT"))
    return {k: int(v) for k, v in (item.split("=") for item in line.split()[1:])}


def _commits(storage: Path) -> list[Path]:
    return list(storage.glob("vectors/tiny/*/tenant=lab/commit=*/_manifest.json"))


def test_sigkill_then_resume_equals_uninterrupted(tmp_path) -> None:
    rng = np.random.default_rng(5)
    seqs = {f"r{i}": random_dna(rng, rng.integers(100, 400)) for i in range(120)}
    seqs |= {f"d{i}": seqs[f"r{i}"] for i in range(30)}  # 30 duplicate reads: 150 rows
    stores = []
    for name in ("killed", "clean"):
        landing = tmp_path / name / "landing"
        write_drop(landing, "lab", "S1", sequences=seqs)
        store = Store(str(tmp_path / name / "storage"))
        ingest(Store(str(landing)), store, "lab", "S1")
        stores.append(store)
    killed, clean = stores
    storage = Path(killed.root)
    parts_dir = storage / "embeddings/tiny/tenant=lab/sample=S1"
    cache = str(tmp_path / "jax_cache")

    proc = start([*WORKER, killed.root, "lab", "S1", "20", cache])
    deadline = time.time() + 180
    while time.time() < deadline and len(_commits(storage)) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(_commits(storage))
    assert 2 <= committed < 6, "kill must land mid-partition"
    assert not (parts_dir / "_manifest.json").exists()

    resumed = _result(run([*WORKER, killed.root, "lab", "S1", "20", cache]).stdout)
    assert resumed["rows"] == 150 and resumed["distinct"] == 120
    assert resumed["reused"] >= 40 and resumed["reused"] % 20 == 0
    assert resumed["computed"] == 120 - resumed["reused"]

    run([*WORKER, clean.root, "lab", "S1", "20", cache])
    ids_k, vec_k = _vectors(killed)
    ids_c, vec_c = _vectors(clean)
    assert len(ids_k) == len(set(ids_k)) == read_shard_manifest(killed, "lab", "S1")["rows"] == 150
    assert ids_k == ids_c
    np.testing.assert_allclose(vec_k, vec_c, atol=2e-5)
    assert not [p for p in parts_dir.iterdir() if p.name.endswith(".tmp")]
    model = load_model("tiny")
    hashes = HashStore(killed, "tiny", model.weights_hash, "lab").holdings().hashes.to_pylist()
    assert len(hashes) == len(set(hashes)) == 120  # every distinct sequence stored exactly once


def test_two_processes_embedding_one_tenant_share_the_work(tmp_path) -> None:
    rng = np.random.default_rng(6)
    pool = [random_dna(rng, rng.integers(100, 300)) for _ in range(60)]
    landing, store = tmp_path / "landing", Store(str(tmp_path / "storage"))
    samples = {"A": pool[:40], "B": pool[20:]}  # 20 sequences in both
    for sample, sequences in samples.items():
        reads = {f"{sample}{i}": s for i, s in enumerate(sequences + sequences[:10])}
        write_drop(landing, "lab", sample, sequences=reads)
        ingest(Store(str(landing)), store, "lab", sample)
    cache = str(tmp_path / "jax_cache")
    procs = [
        start(
            [*WORKER, store.root, "lab", s, "8", cache, "0.1"], stdout=PIPE, stderr=PIPE, text=True
        )
        for s in samples
    ]
    results = {}
    for sample, proc in zip(samples, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        results[sample] = _result(stdout)
    assert results["A"]["computed"] + results["B"]["computed"] == 60  # the shared 20 once
    assert {r["distinct"] for r in results.values()} == {40}
    model = load_model("tiny")
    hashes = HashStore(store, "tiny", model.weights_hash, "lab").holdings().hashes.to_pylist()
    assert len(hashes) == len(set(hashes)) == 60
    ids, vectors = _vectors(store, "B")
    assert len(ids) == 50 and np.isfinite(vectors).all()
