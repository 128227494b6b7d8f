"""`vector_index` materialised by Dagster: checks, QC changes, concurrent writers, tenant isolation."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.vector_store import VectorStoreResource
from dagster import DagsterInstance, materialize

from bioscan_assets.assets.embed import sequence_embeddings
from bioscan_assets.assets.index import evaluate_checks, index_checks, vector_index
from bioscan_assets.assets.ingest import ingest_assets
from bioscan_assets.core.index import search as api
from bioscan_assets.core.index.partition_rows import partition_summary
from bioscan_assets.core.index.tables import index_schema, open_table, table_name
from bioscan_assets.core.layout import split_partition_key
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions
from tests.helpers import python, random_dna, start, write_drop
from tests.index_helpers import GENERA, clustered_vectors, make_shards, write_embeddings

pytestmark = pytest.mark.integration
DIM = 32


class Env:
    def __init__(self, root: Path):
        self.root = root
        self.store = Store(str(root / "storage"))
        self.instance = DagsterInstance.ephemeral()
        self.resources = {
            "storage": StorageResource(landing=str(root / "landing"), storage=self.store.root),
            "vector_store": VectorStoreResource(min_rows=100, target_partition_rows=32),
        }

    def sample(self, tenant: str, sample_id: str, n: int, *, seed: int = 0, drop=()) -> list[str]:
        rng = np.random.default_rng(seed)
        names = [f"r{i}" for i in range(n) if i not in drop]
        seqs = {name: random_dna(rng, 80) for name in names}
        genus = {name: list(GENERA)[int(name[1:]) % 4] for name in names}
        taxonomy = {k: GENERA[g] for k, g in genus.items()}
        make_shards(self.root, self.store, tenant, sample_id, seqs, taxonomy)
        vectors = clustered_vectors([genus[k] for k in names], DIM, seed=seed)
        write_embeddings(
            self.store, "m1", tenant, sample_id, dict(zip(names, vectors, strict=True))
        )
        return names

    def materialise(self, key: str):
        self.instance.add_dynamic_partitions(samples_partitions.name, [key])
        return materialize(
            [vector_index, *index_checks],
            partition_key=key,
            instance=self.instance,
            resources=self.resources,
            raise_on_error=False,
        )


def _metadata(result) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def test_materialise_then_qc_change_removes_stale_rows(env) -> None:
    env.sample("acme", "S1", 80, seed=1)
    env.sample("acme", "S2", 60, seed=2)
    first = env.materialise("acme/S1")
    assert first.success
    md = _metadata(first)
    assert (md["rows"], md["inserted"], md["updated"], md["deleted"]) == (80, 80, 0, 0)
    assert md["model_id"] == "m1" and md["table"] == "sequences_m1"
    assert md["weights_hash"] == "w-test" and md["ann_index"].startswith("none")
    assert _checks(first) == {
        "index_rows_match_embeddings": True,
        "index_unique_keys": True,
        "index_vector_dimension": True,
    }
    second = env.materialise("acme/S2")
    assert second.success and _metadata(second)["ann_index"] == "IvfRq"  # 140 rows >= 100
    s2_before = partition_summary(env.store, "acme", "m1", "S2")

    names = env.sample("acme", "S1", 80, seed=1, drop=set(range(10, 30)))  # QC removes 20
    again = env.materialise("acme/S1")
    assert again.success and all(_checks(again).values())
    md = _metadata(again)
    assert (md["rows"], md["inserted"], md["updated"], md["deleted"]) == (60, 0, 60, 20)
    assert md["table_rows"] == 120 and md["ann_indexed_rows"] == 120
    table = open_table(env.store, "acme", "m1")
    keys = table.search().where("sample_id = 'S1'").select(["key"]).limit(None).to_arrow()
    assert set(keys.column("key").to_pylist()) == {f"S1/{n}" for n in names}
    s2_after = partition_summary(env.store, "acme", "m1", "S2")
    assert s2_after["rows"] == s2_before["rows"] == 60


def test_check_fails_when_the_table_disagrees_with_the_embeddings(env) -> None:
    env.sample("acme", "S1", 30, seed=1)
    assert env.materialise("acme/S1").success
    # someone deletes a row and duplicates another behind the asset's back
    table = open_table(env.store, "acme", "m1")
    dup = table.search().where("key = 'S1/r4'").limit(None).to_arrow()
    table.delete("key = 'S1/r3'")
    table.add(dup)
    checks = evaluate_checks(env.store, "acme", "S1", "m1")
    assert checks["index_rows_match_embeddings"].passed is True  # 29 + 1 duplicate = 30 rows
    assert checks["index_unique_keys"].passed is False
    assert checks["index_unique_keys"].metadata["duplicate_keys"].value == 1
    table.delete("key = 'S1/r4'")
    checks = evaluate_checks(env.store, "acme", "S1", "m1")
    assert checks["index_rows_match_embeddings"].passed is False
    assert checks["index_rows_match_embeddings"].metadata["index_rows"].value == 28
    assert checks["index_vector_dimension"].passed is True
    # re-materialising repairs it
    assert env.materialise("acme/S1").success
    assert all(c.passed for c in evaluate_checks(env.store, "acme", "S1", "m1").values())


def test_two_partitions_materialised_at_once_by_two_processes(env, tmp_path) -> None:
    names = {s: env.sample("acme", s, 150, seed=n) for n, s in enumerate(["P1", "P2", "P3"])}
    go = tmp_path / "go"
    cmd = python("-m", "tests.integration.index_worker", env.store.root)
    procs = [
        start([*cmd, f"acme/{s}", go], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for s in names
    ]
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line.removeprefix("RESULT ")))
    assert all(r["success"] and all(r["checks"]) for r in results), results
    assert sorted(r["inserted"] for r in results) == [150, 150, 150]
    table = open_table(env.store, "acme", "m1")
    keys = table.search().select(["key"]).limit(None).to_arrow().column("key")
    assert len(keys) == 450 and len(pc.unique(keys)) == 450
    assert set(keys.to_pylist()) == {f"{s}/{n}" for s, ns in names.items() for n in ns}


def test_tenant_isolation(env) -> None:
    env.sample("tenant-a", "S1", 40, seed=5)
    env.sample("tenant-b", "S1", 40, seed=5)  # the very same rows and vectors
    assert env.materialise("tenant-a/S1").success
    assert env.materialise("tenant-b/S1").success
    hits = api.search(env.store, "tenant-a", "m1", sequence_id="r1", k=100)
    assert len(hits) == 39
    a_table = open_table(env.store, "tenant-a", "m1")
    assert set(
        a_table.search().select(["tenant"]).limit(None).to_arrow()["tenant"].to_pylist()
    ) == {"tenant-a"}
    for crafted in ("../tenant-b", "tenant-a/../tenant-b", "tenant-b/", "TENANT-B", ""):
        with pytest.raises(api.InvalidTenantError):
            api.search(env.store, crafted, "m1", sequence_id="r1")
    with pytest.raises(ValueError, match="is not '<tenant>/<sample_id>'"):
        split_partition_key("../tenant-b/S1")
    with pytest.raises(api.UnknownTenantError):
        api.search(env.store, "tenant-c", "m1", sequence_id="r1")


def test_search_hits_say_how_many_reads_they_stand_for(env) -> None:
    rng = np.random.default_rng(8)
    pool = [random_dna(rng, 90) for _ in range(10)]
    vectors = dict(zip(pool, clustered_vectors(["x"] * 10, DIM, seed=8), strict=True))
    layout_ = {  # sample -> reads (pool index per read); pool[0] is read 5 + 2 times in tenant-a
        ("tenant-a", "S1"): [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0],
        ("tenant-a", "S2"): [0, 0, 1],
        ("tenant-b", "S1"): [0, 0, 0, 1],  # another tenant's copies never count
    }
    for (tenant, sample), picks in layout_.items():
        seqs = {f"r{i}": pool[j] for i, j in enumerate(picks)}
        make_shards(env.root, env.store, tenant, sample, seqs)
        by_id = {name: vectors[seq] for name, seq in seqs.items()}
        write_embeddings(env.store, "m1", tenant, sample, by_id)
    # a table made before shards carried the hash: the next upsert adds the column
    old = [f for f in index_schema(DIM, "m1") if f.name != "sequence_hash"]
    db = lancedb.connect(str(env.root / "storage" / "lancedb" / "tenant-a"))
    db.create_table(
        table_name("m1"), schema=pa.schema(old, metadata=index_schema(DIM, "m1").metadata)
    )
    for key in ("tenant-a/S1", "tenant-a/S2", "tenant-b/S1"):
        assert env.materialise(key).success
    assert "sequence_hash" in open_table(env.store, "tenant-a", "m1").schema.names
    hits = api.search(env.store, "tenant-a", "m1", vector=vectors[pool[0]], k=30, exact=True)
    reads = {(h.sample_id, h.sequence_id): h.reads for h in hits}
    assert len(reads) == 17
    for (sample, sequence_id), count in reads.items():
        pick = layout_[("tenant-a", sample)][int(sequence_id[1:])]
        assert count == {0: 7, 1: 2}.get(pick, 1), (sample, sequence_id)
    assert {
        h.reads for h in api.search(env.store, "tenant-b", "m1", vector=vectors[pool[0]], k=4)
    } == {3, 1}


@pytest.mark.slow
def test_whole_pipeline_with_the_tiny_model(tmp_path) -> None:
    """raw_sequences -> sequence_shards -> sequence_embeddings (JAX) -> vector_index, for real."""
    landing, storage = tmp_path / "landing", tmp_path / "storage"
    rng = np.random.default_rng(0)
    seqs = {f"s{i}": random_dna(rng, 100) for i in range(24)}
    seqs |= {f"d{i}": seqs["s3"] for i in range(3)}  # three more reads of s3
    taxonomy = dict.fromkeys(seqs, GENERA["Bacillus"])
    write_drop(landing, "acme", "REF", sequences=seqs, taxonomy=taxonomy)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(samples_partitions.name, ["acme/REF"])
    result = materialize(
        [*ingest_assets, sequence_embeddings, vector_index, *index_checks],
        partition_key="acme/REF",
        instance=instance,
        resources={
            "storage": StorageResource(landing=str(landing), storage=str(storage)),
            "accelerator": AcceleratorResource(
                model="tiny", compilation_cache=str(tmp_path / "jax")
            ),
            "vector_store": VectorStoreResource(),
        },
    )
    assert result.success and all(_checks(result).values())
    (event,) = result.asset_materializations_for_node("vector_index")
    md = {k: v.value for k, v in event.metadata.items()}
    assert md["model_id"] == "tiny" and md["rows"] == 27
    (event,) = result.asset_materializations_for_node("sequence_embeddings")
    emb = {k: v.value for k, v in event.metadata.items()}
    assert (emb["rows"], emb["distinct_sequences"], emb["computed_now"]) == (27, 24, 24)
    assert emb["reused_from_store"] == 0 and emb["effective_rows_per_s"] > 0
    hits = api.search(Store(str(storage)), "acme", "tiny", sequence=seqs["s3"], k=4)
    assert {h.sequence_id for h in hits} == {"s3", "d0", "d1", "d2"}
    assert all(h.distance < 1e-4 and h.reads == 4 for h in hits)
