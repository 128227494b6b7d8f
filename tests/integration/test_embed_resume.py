"""A partition killed mid-embedding (SIGKILL) resumes from its committed chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bioscan_assets.core.embedding.compute import iter_embedding_batches
from bioscan_assets.core.ingest.shards import read_shard_manifest
from bioscan_assets.core.storage import Store
from tests.pipeline_helpers import ingest, write_fasta_drop

ROOT = Path(__file__).resolve().parents[2]
WORKER = [sys.executable, "-m", "tests.integration.embed_worker"]


def _vectors(store: Store) -> tuple[list[str], np.ndarray]:
    table = pa.Table.from_batches(list(iter_embedding_batches(store, "tiny", "lab", "S1")))
    dim = table.schema.field("vector").type.list_size
    vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    return table.column("sequence_id").to_pylist(), vectors


def test_sigkill_then_resume_equals_uninterrupted(tmp_path) -> None:
    rng = np.random.default_rng(5)
    seqs = {f"r{i}": "".join(rng.choice(list("ACGT"), rng.integers(100, 400))) for i in range(120)}
    stores = []
    for name in ("killed", "clean"):
        landing = tmp_path / name / "landing"
        write_fasta_drop(landing, "lab", "S1", seqs)
        store = Store(str(tmp_path / name / "storage"))
        ingest(Store(str(landing)), store, "lab", "S1")
        stores.append(store)
    killed, clean = stores
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parts_dir = Path(killed.url("embeddings/tiny/tenant=lab/sample=S1"))
    cache = str(tmp_path / "jax_cache")

    proc = subprocess.Popen([*WORKER, killed.root, "lab", "S1", "20", cache], cwd=ROOT, env=env)
    deadline = time.time() + 180
    while time.time() < deadline and len(list(parts_dir.glob("part-*.parquet"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list(parts_dir.glob("part-*.parquet")))
    assert 2 <= committed < 6, "kill must land mid-partition"
    assert not (parts_dir / "_manifest.json").exists()

    resumed = subprocess.run(
        [*WORKER, killed.root, "lab", "S1", "20", cache],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in resumed.stdout.splitlines() if x.startswith("RESULT"))
    resumed_rows = int(line.split("resumed=")[1])
    assert resumed_rows >= 40 and resumed_rows % 20 == 0
    assert int(line.split("computed=")[1].split()[0]) == 120 - resumed_rows

    subprocess.run(
        [*WORKER, clean.root, "lab", "S1", "20", cache],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    ids_k, vec_k = _vectors(killed)
    ids_c, vec_c = _vectors(clean)
    assert len(ids_k) == len(set(ids_k)) == read_shard_manifest(killed, "lab", "S1")["rows"] == 120
    assert ids_k == ids_c
    np.testing.assert_allclose(vec_k, vec_c, atol=2e-5)
    assert not [p for p in parts_dir.iterdir() if p.name.endswith(".tmp")]
