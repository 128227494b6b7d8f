"""The hash store: each distinct sequence computed once per tenant and model weights, readers
still get one vector per shard row, tenants never share, and retention keeps what is used."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from bioscan_assets.core import layout
from bioscan_assets.core.embedding.compute import embed_partition, iter_embedding_batches
from bioscan_assets.core.embedding.hash_store import HashStore
from bioscan_assets.core.governance.apply import apply_retention
from bioscan_assets.core.governance.audit import AuditLog
from bioscan_assets.core.governance.planners import plan_retention
from bioscan_assets.core.governance.planners.hash_store import plan_hash_store
from bioscan_assets.core.governance.policy import load_policies
from bioscan_assets.core.ingest.sequence_hash import sequence_hash
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches
from bioscan_assets.core.manifests import CorruptArtefactError
from bioscan_assets.core.storage import Store
from tests.embedding_helpers import FakeExecutor, fake_vector, make_sample
from tests.helpers import random_dna

POLICY = {"expire_after_days": 30}


def _pool(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [random_dna(rng, int(rng.integers(80, 200))) for _ in range(n)]


def _reads(pool: list[str], copies: list[int], prefix: str = "r") -> dict[str, str]:
    """`copies[i]` reads of `pool[i]`, interleaved so duplicates are far apart."""
    order = [i for k in range(max(copies)) for i, c in enumerate(copies) if c > k]
    return {f"{prefix}{n}": pool[i] for n, i in enumerate(order)}


def _rows(store: Store, tenant: str, sample: str, model: str = "fake") -> dict[str, np.ndarray]:
    table = pa.Table.from_batches(list(iter_embedding_batches(store, model, tenant, sample)))
    dim = table.schema.field("vector").type.list_size
    vectors = table.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, dim)
    return dict(zip(table.column("sequence_id").to_pylist(), vectors, strict=True))


def _shard_sequences(store: Store, tenant: str, sample: str) -> dict[str, str]:
    out = {}
    for batch in iter_shard_batches(store, tenant, sample, columns=["sequence_id", "dna_sequence"]):
        out.update(zip(*(c.to_pylist() for c in batch.columns), strict=True))
    return out


def _store_hashes(store: Store, tenant: str, ex: FakeExecutor) -> list[str]:
    return HashStore(store, ex.model_id, ex.weights_hash, tenant).holdings().hashes.to_pylist()


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "storage"))


def test_duplicates_are_computed_once_and_every_row_gets_its_vector(tmp_path, store):
    pool = _pool(1, 10)
    make_sample(tmp_path, store, "lab", "S1", _reads(pool, [9, 5, 4, 3, 2, 2, 1, 1, 1, 1]))
    ex = FakeExecutor()
    result = embed_partition(store, "lab", "S1", ex, chunk_rows=4)
    assert (result["rows"], result["distinct"], result["computed"], result["reused"]) == (
        29,
        10,
        10,
        0,
    )
    assert sorted(ex.computed) == sorted(pool)  # one forward pass per distinct sequence
    vectors = _rows(store, "lab", "S1")
    sequences = _shard_sequences(store, "lab", "S1")
    assert list(vectors) == list(sequences)  # shard order, one row each
    for sequence_id, vector in vectors.items():
        np.testing.assert_array_equal(vector, fake_vector(sequences[sequence_id]))
    assert sorted(_store_hashes(store, "lab", ex)) == sorted(map(sequence_hash, pool))
    manifest = json.loads(
        store.read_bytes(f"{layout.embedding_dir('fake', 'lab', 'S1')}/_manifest.json")
    )
    assert manifest["distinct"] == 10 and len(manifest["hash_store"]["commits"]) == 3  # 4+4+2


def test_a_second_sample_computes_only_its_new_sequences(tmp_path, store):
    pool = _pool(2, 12)
    make_sample(tmp_path, store, "lab", "S1", _reads(pool[:8], [3] * 8))
    make_sample(tmp_path, store, "lab", "S2", _reads(pool[4:], [2] * 8, "q"))
    ex = FakeExecutor()
    embed_partition(store, "lab", "S1", ex)
    ex.computed.clear()
    second = embed_partition(store, "lab", "S2", ex)
    assert (second["computed"], second["reused"], second["distinct"]) == (4, 4, 8)
    assert sorted(ex.computed) == sorted(pool[8:])
    sequences = _shard_sequences(store, "lab", "S2")
    for sequence_id, vector in _rows(store, "lab", "S2").items():
        np.testing.assert_array_equal(vector, fake_vector(sequences[sequence_id]))
    # a re-run of a current partition computes nothing
    ex.computed.clear()
    assert embed_partition(store, "lab", "S2", ex)["computed"] == 0 and not ex.computed


def test_a_killed_run_resumes_from_its_commits(tmp_path, store):
    pool = _pool(3, 20)
    make_sample(tmp_path, store, "lab", "S1", _reads(pool, [2] * 20))
    killed = FakeExecutor(fail_after_calls=3)
    with pytest.raises(KeyboardInterrupt):
        embed_partition(store, "lab", "S1", killed, chunk_rows=4)
    assert len(killed.computed) == 12  # three chunks committed
    assert not store.exists(f"{layout.embedding_dir('fake', 'lab', 'S1')}/_manifest.json")
    resumed = FakeExecutor()
    result = embed_partition(store, "lab", "S1", resumed, chunk_rows=4)
    assert (result["computed"], result["reused"]) == (8, 12)
    assert not set(resumed.computed) & set(killed.computed)
    sequences = _shard_sequences(store, "lab", "S1")
    vectors = _rows(store, "lab", "S1")
    assert len(vectors) == 40
    for sequence_id, vector in vectors.items():
        np.testing.assert_array_equal(vector, fake_vector(sequences[sequence_id]))


def test_two_partitions_at_once_never_compute_a_hash_twice(tmp_path, store):
    pool = _pool(4, 30)
    make_sample(tmp_path, store, "lab", "A", _reads(pool[:20], [2] * 20))
    make_sample(tmp_path, store, "lab", "B", _reads(pool[10:], [2] * 20, "b"))
    executors = {"A": FakeExecutor(delay_s=0.05), "B": FakeExecutor(delay_s=0.05)}
    results, errors = {}, []
    start = threading.Barrier(2)

    def run(sample: str) -> None:
        try:
            start.wait()
            results[sample] = embed_partition(store, "lab", sample, executors[sample], chunk_rows=3)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(s,)) for s in executors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    computed = executors["A"].computed + executors["B"].computed
    assert sorted(computed) == sorted(pool)  # the 10 shared sequences once, not twice
    assert results["A"]["computed"] + results["B"]["computed"] == 30
    hashes = _store_hashes(store, "lab", executors["A"])
    assert len(hashes) == len(set(hashes)) == 30
    for sample in ("A", "B"):
        sequences = _shard_sequences(store, "lab", sample)
        for sequence_id, vector in _rows(store, "lab", sample).items():
            np.testing.assert_array_equal(vector, fake_vector(sequences[sequence_id]))


def test_tenants_never_share_vectors(tmp_path, store):
    pool = _pool(5, 4)
    for tenant in ("acme-lab", "reef-survey"):
        make_sample(tmp_path, store, tenant, "S1", _reads(pool, [2] * 4))
    computed = {}
    for tenant in ("acme-lab", "reef-survey"):
        ex = FakeExecutor()
        computed[tenant] = embed_partition(store, tenant, "S1", ex)["computed"]
        assert sorted(ex.computed) == sorted(pool)  # once per tenant, even if identical
    assert computed == {"acme-lab": 4, "reef-survey": 4}
    a = HashStore(store, "fake", "f0" * 32, "acme-lab")
    b = HashStore(store, "fake", "f0" * 32, "reef-survey")
    assert a.folder.endswith("/tenant=acme-lab") and b.folder.endswith("/tenant=reef-survey")
    assert all(c["tenant"] == "acme-lab" for c in a.holdings().commits)
    assert all(c["tenant"] == "reef-survey" for c in b.holdings().commits)
    for crafted in ("reef-survey/../acme-lab", "../reef-survey", "acme-lab/", "", "ACME-LAB", "*"):
        with pytest.raises(ValueError):
            HashStore(store, "fake", "f0" * 32, crafted)
    with pytest.raises(ValueError):
        HashStore(store, "fake", "../../x", "acme-lab")
    # a commit copied from B's store into A's is refused: it names B as its tenant
    stolen = b.commit_ids()[0]
    src = store.local_path(b.commit_dir(stolen))
    shutil.copytree(src, store.local_path(a.commit_dir(stolen)), dirs_exist_ok=True)
    with pytest.raises(CorruptArtefactError, match="tenant"):
        a.holdings()


def _age(store: Store, days: int) -> None:
    """Pretend every hash-store commit was written `days` ago."""
    for rel in store.list_files(layout.hash_store_root()):
        if rel.endswith("_manifest.json"):
            doc = json.loads(store.read_bytes(rel))
            then = datetime.fromisoformat(doc["created_at"]) - timedelta(days=days)
            doc["created_at"] = then.isoformat()
            store.write_bytes(rel, json.dumps(doc).encode())


def test_retention_keeps_referenced_vectors_and_expires_the_rest(tmp_path, store):
    pool = _pool(6, 12)
    make_sample(tmp_path, store, "lab", "S1", _reads(pool[:6], [2] * 6))
    make_sample(tmp_path, store, "lab", "S2", _reads(pool[4:], [1] * 8, "q"))
    ex = FakeExecutor()
    embed_partition(store, "lab", "S1", ex, chunk_rows=2)
    embed_partition(store, "lab", "S2", ex, chunk_rows=2)
    _age(store, 90)
    now = datetime.now(UTC)
    assert plan_hash_store(store, POLICY, now) == []  # every commit is referenced

    # S2's embeddings are gone (re-embedded elsewhere, or dropped): its own commits are no
    # longer referenced; the one it shares with S1 is
    s2 = layout.embedding_dir("fake", "lab", "S2")
    store.delete(f"{s2}/_manifest.json")
    plan = plan_hash_store(store, POLICY, now)
    expired = {d.details[0][1] for d in plan}
    s1_commits = set(
        json.loads(store.read_bytes(f"{layout.embedding_dir('fake', 'lab', 'S1')}/_manifest.json"))[
            "hash_store"
        ]["commits"]
    )
    assert expired and not expired & s1_commits
    assert all(d.files[0].endswith("/_manifest.json") for d in plan)
    # an orphan (a killed writer's part, no manifest) goes too once old; a fresh one stays
    hs = HashStore(store, "fake", "f0" * 32, "lab")
    orphan = store.local_path(hs.commit_dir("0" * 20))
    orphan.mkdir(parents=True)
    (orphan / "part-00000.parquet").write_bytes(b"x")
    assert not [d for d in plan_hash_store(store, POLICY, now) if "uncommitted" in d.reason]
    later = plan_hash_store(store, POLICY, now + timedelta(days=31))
    assert [d.target for d in later if "uncommitted" in d.reason] == [hs.commit_dir("0" * 20)]

    policies = load_policies(overrides={"policies": {"sequence_embeddings": POLICY}})
    full = [d for d in plan_retention(store, policies, now) if d.policy == "hash_store"]
    assert {d.target for d in full} == {d.target for d in plan}
    apply_retention(store, full, AuditLog(store, "r-1"), policies=policies)
    assert not any(store.local_path(d.target).exists() for d in full)  # no empty commit folders
    left = set(_store_hashes(store, "lab", ex))
    assert left == {sequence_hash(s) for s in pool[:6]}  # all of S1's, none of S2's own
    # S1 still embeds from the store alone; S2 recomputes exactly what expired
    ex.computed.clear()
    store.delete(f"{layout.embedding_dir('fake', 'lab', 'S1')}/_manifest.json")
    assert embed_partition(store, "lab", "S1", ex)["computed"] == 0
    assert embed_partition(store, "lab", "S2", ex)["computed"] == 6
    assert sorted(ex.computed) == sorted(pool[6:])


def test_an_expired_partition_keeps_its_vectors_for_the_policy_age(tmp_path, store):
    make_sample(tmp_path, store, "lab", "S1", _reads(_pool(7, 3), [2] * 3))
    embed_partition(store, "lab", "S1", FakeExecutor())
    _age(store, 90)
    folder = layout.embedding_dir("fake", "lab", "S1")
    manifest = json.loads(store.read_bytes(f"{folder}/_manifest.json"))
    expired_at = datetime.now(UTC) - timedelta(days=10)
    store.write_bytes(
        f"{folder}/_expired.json",
        json.dumps({"expired_at": expired_at.isoformat(), "manifest": manifest}).encode(),
    )
    store.delete(f"{folder}/_manifest.json")
    now = datetime.now(UTC)
    assert plan_hash_store(store, POLICY, now) == []  # unreferenced for 10 days only
    assert len(plan_hash_store(store, POLICY, now + timedelta(days=21))) == 1
