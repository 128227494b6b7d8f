"""The LanceDB writer: upsert counts, stale-row removal, isolation of partitions, indexes, locks."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pyarrow.compute as pc
import pytest

from bioscan_assets.core import layout
from bioscan_assets.core.index import ann, partition_rows, tables, upsert
from bioscan_assets.core.index.writer_lock import writer_lock
from bioscan_assets.core.manifests import CorruptArtefactError
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from tests.helpers import random_dna
from tests.index_helpers import (
    GENERA,
    clustered_vectors,
    make_shards,
    shard_ids,
    write_embeddings,
)

DIM = 16
SMALL = ann.AnnParams(min_rows=40, target_partition_rows=16, nprobes=8)


def _sample(tmp_path, storage, tenant, sample_id, n, *, seed=0, start=0, model="m1", drop=()):
    rng = np.random.default_rng(seed)
    names = [f"r{i}" for i in range(start, start + n) if i not in drop]
    seqs = {name: random_dna(rng, 80) for name in names}
    genus = {name: list(GENERA)[int(name[1:]) % 4] for name in names}
    make_shards(
        tmp_path, storage, tenant, sample_id, seqs, {k: GENERA[g] for k, g in genus.items()}
    )
    vectors = clustered_vectors([genus[k] for k in names], DIM, seed=seed)
    write_embeddings(storage, model, tenant, sample_id, dict(zip(names, vectors, strict=True)))
    return names, dict(zip(names, vectors, strict=True))


def _rows(storage, tenant="lab", model="m1", where=None):
    table = tables.open_table(storage, tenant, model)
    query = table.search().select(["key", "sample_id", "vector", "genus"]).limit(None)
    if where:
        query = query.where(where)
    return query.to_arrow()


@pytest.fixture
def storage(tmp_path) -> Store:
    return Store(str(tmp_path / "storage"))


def test_first_upsert_creates_table_with_contract_columns(tmp_path, storage) -> None:
    _, vectors = _sample(tmp_path, storage, "lab", "S1", 30)
    result = upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    assert (result.inserted, result.updated, result.deleted, result.rows) == (30, 0, 0, 30)
    assert result.table == "sequences_m1" and result.table_rows == 30
    table = tables.open_table(storage, "lab", "m1")
    assert table.schema.names == [
        "key",
        "sequence_id",
        "dna_sequence",
        "taxonomy",
        "depth",
        "latitude",
        "longitude",
        "vector",
        "tenant",
        "sample_id",
        "model_id",
        "kingdom",
        "phylum",
        "class",
        "order",
        "family",
        "genus",
        "species",
        "sequence_hash",
    ]
    meta = table.schema.metadata
    assert meta[tables.META_MODEL_ID] == b"m1" and meta[tables.META_WEIGHTS] == b"w-test"
    assert tables.table_dim(table) == DIM
    rows = table.search().where("key = 'S1/r5'").limit(None).to_arrow().to_pylist()
    assert len(rows) == 1
    row = rows[0]
    assert row["sequence_id"] == "r5" and row["tenant"] == "lab" and row["model_id"] == "m1"
    assert row["genus"] == "Listeria" and row["family"] == "Listeriaceae" and row["species"] is None
    np.testing.assert_allclose(row["vector"], vectors["r5"], rtol=1e-6)
    assert str(layout.lancedb_dir("lab")) in table.uri


def test_reupsert_is_idempotent(tmp_path, storage) -> None:
    _sample(tmp_path, storage, "lab", "S1", 30)
    upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    again = upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    assert (again.inserted, again.updated, again.deleted, again.rows) == (0, 30, 0, 30)
    assert partition_rows.partition_summary(storage, "lab", "m1", "S1")["duplicate_keys"] == 0
    assert again.table_rows == 30


def test_qc_change_removes_stale_rows_and_leaves_other_samples(tmp_path, storage) -> None:
    _sample(tmp_path, storage, "lab", "S1", 30, seed=1)
    _sample(tmp_path, storage, "lab", "S2", 25, seed=2)
    upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    upsert.upsert_partition(storage, "lab", "S2", "m1", params=SMALL)
    before_s2 = _rows(storage, where="sample_id = 'S2'").sort_by("key")
    # QC now drops r3..r9 and the drop gained r30, r31
    names, _ = _sample(tmp_path, storage, "lab", "S1", 32, seed=1, drop=set(range(3, 10)))
    result = upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    assert (result.inserted, result.updated, result.deleted) == (2, 23, 7)
    assert result.rows == 25 and result.table_rows == 50
    keys = set(_rows(storage, where="sample_id = 'S1'").column("key").to_pylist())
    assert keys == {f"S1/{n}" for n in names}
    after_s2 = _rows(storage, where="sample_id = 'S2'").sort_by("key")
    assert after_s2.equals(before_s2)


def test_a_sample_whose_reads_all_fail_qc_leaves_no_rows(tmp_path, storage) -> None:
    _sample(tmp_path, storage, "lab", "S1", 20, seed=1)
    _sample(tmp_path, storage, "lab", "S2", 20, seed=2)
    upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    upsert.upsert_partition(storage, "lab", "S2", "m1", params=SMALL)
    short = {f"r{i}": "ACGT" for i in range(5)}  # below the shards' min_length: all dropped
    assert make_shards(tmp_path, storage, "lab", "S1", short)["rows"] == 0
    write_embeddings(storage, "m1", "lab", "S1", {}, dim=DIM)
    result = upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    assert (result.rows, result.inserted, result.deleted, result.table_rows) == (0, 0, 20, 20)
    assert partition_rows.partition_summary(storage, "lab", "m1", "S2")["rows"] == 20


def test_ann_index_created_at_min_rows_and_kept_current(tmp_path, storage) -> None:
    _sample(tmp_path, storage, "lab", "S1", 30, seed=1)
    first = upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    assert first.index["ann"] is None  # 30 rows < min_rows: exact search only
    assert set(first.index["scalar"]) == {"key", "sample_id", *RANKS}
    _sample(tmp_path, storage, "lab", "S2", 30, seed=2)
    second = upsert.upsert_partition(storage, "lab", "S2", "m1", params=SMALL)
    assert second.index["ann"]["type"] == "IvfRq"
    assert second.index["ann"]["indexed_rows"] == 60
    _, vectors = _sample(tmp_path, storage, "lab", "S3", 30, seed=3)
    third = upsert.upsert_partition(storage, "lab", "S3", "m1", params=SMALL)
    assert any("delta" in action for action in third.index["actions"])
    ann = third.index["ann"]
    assert ann["indexed_rows"] == 90 and ann["unindexed_rows"] == 0
    assert all(s["unindexed_rows"] == 0 for s in third.index["scalar"].values())
    # the new rows are reachable through the index
    table = tables.open_table(storage, "lab", "m1")
    hit = (
        table.search(vectors["r7"], vector_column_name="vector")
        .distance_type("cosine")
        .nprobes(SMALL.nprobes)
        .limit(1)
        .select(["key"])
        .to_arrow()
    )
    assert hit.column("key").to_pylist() == ["S3/r7"]


def test_delta_segments_are_merged_beyond_the_limit(tmp_path, storage) -> None:
    params = ann.AnnParams(min_rows=10, target_partition_rows=8, max_delta_segments=2)
    for n in range(4):
        _sample(tmp_path, storage, "lab", f"S{n}", 12, seed=n)
        result = upsert.upsert_partition(storage, "lab", f"S{n}", "m1", params=params)
    assert result.index["ann"]["segments"] <= 2
    assert result.index["ann"]["indexed_rows"] == 48


def test_without_pylance_optimize_keeps_old_versions(tmp_path, storage, monkeypatch) -> None:
    _sample(tmp_path, storage, "lab", "S1", 30, seed=1)
    upsert.upsert_partition(storage, "lab", "S1", "m1", params=ann.AnnParams(min_rows=10))
    table = tables.open_table(storage, "lab", "m1")
    first_version = table.version
    monkeypatch.setattr(ann, "_lance_dataset", lambda table: None)
    _sample(tmp_path, storage, "lab", "S2", 30, seed=2)
    result = upsert.upsert_partition(storage, "lab", "S2", "m1", params=ann.AnnParams(min_rows=10))
    assert any("optimize()" in action for action in result.index["actions"])
    assert result.index["ann"]["unindexed_rows"] == 0
    table = tables.open_table(storage, "lab", "m1")
    versions = [v["version"] for v in table.list_versions()]
    assert versions == list(range(1, result.version + 1))  # nothing pruned
    table.checkout(first_version)
    assert table.count_rows() == 30


def test_retrains_when_partitions_outgrow_target(tmp_path, storage) -> None:
    params = ann.AnnParams(min_rows=10, target_partition_rows=10, retrain_growth=2.0)
    _sample(tmp_path, storage, "lab", "S1", 20, seed=1)
    first = upsert.upsert_partition(storage, "lab", "S1", "m1", params=params)
    assert any("created IVF_RQ (2 partitions)" in a for a in first.index["actions"])
    _sample(tmp_path, storage, "lab", "S2", 40, seed=2)
    second = upsert.upsert_partition(storage, "lab", "S2", "m1", params=params)
    assert any(a.startswith("retrained IVF_RQ: 2 -> 6") for a in second.index["actions"])


def test_embeddings_out_of_shard_order_are_refused(tmp_path, storage) -> None:
    _, vectors = _sample(tmp_path, storage, "lab", "S1", 12)
    folder = layout.embedding_dir("m1", "lab", "S1")
    swapped = shard_ids(storage, "lab", "S1")
    swapped[4], swapped[5] = swapped[5], swapped[4]
    write_embeddings(storage, "m1", "lab", "S1", vectors, ids=swapped)
    with pytest.raises(tables.VectorIndexError, match=r"shard row 4 has sequence_id 'r4'.*'r5'"):
        upsert.upsert_partition(storage, "lab", "S1", "m1", params=SMALL)
    assert storage.exists(f"{folder}/_manifest.json")
    # nothing was written: the merge is one transaction
    assert tables.open_table(storage, "lab", "m1").count_rows() == 0


def test_row_count_and_checksum_mismatches_are_refused(tmp_path, storage) -> None:
    _sample(tmp_path, storage, "lab", "S1", 12)
    folder = layout.embedding_dir("m1", "lab", "S1")
    manifest = json.loads(storage.read_bytes(f"{folder}/_manifest.json"))
    bad = {**manifest, "rows": 11}
    storage.write_bytes(f"{folder}/_manifest.json", json.dumps(bad).encode())
    with pytest.raises(tables.VectorIndexError, match="11 embedding rows for 12 shard rows"):
        upsert.upsert_partition(storage, "lab", "S1", "m1")
    bad = json.loads(json.dumps(manifest))
    bad["files"][0]["sha256"] = "0" * 64
    storage.write_bytes(f"{folder}/_manifest.json", json.dumps(bad).encode())
    with pytest.raises(CorruptArtefactError, match=r"part-00000\.parquet: sha256 differs"):
        upsert.upsert_partition(storage, "lab", "S1", "m1")
    stale = {**manifest, "shard_version": "not-the-shards"}
    storage.write_bytes(f"{folder}/_manifest.json", json.dumps(stale).encode())
    with pytest.raises(tables.VectorIndexError, match="re-materialise sequence_embeddings"):
        upsert.upsert_partition(storage, "lab", "S1", "m1")


def test_models_never_share_a_table(tmp_path, storage) -> None:
    _sample(tmp_path, storage, "lab", "S1", 12, model="m1")
    upsert.upsert_partition(storage, "lab", "S1", "m1")
    # same model id, other weights: refused
    write_embeddings(
        storage,
        "m1",
        "lab",
        "S1",
        dict(zip([f"r{i}" for i in range(12)], np.eye(DIM, dtype=np.float32)[:12], strict=True)),
        weights_hash="other",
    )
    with pytest.raises(tables.VectorIndexError, match="must not share a table"):
        upsert.upsert_partition(storage, "lab", "S1", "m1")
    # another model: its own table, its own dimension
    vectors = np.random.default_rng(0).standard_normal((12, 8)).astype(np.float32)
    write_embeddings(
        storage, "m2.v1", "lab", "S1", dict(zip([f"r{i}" for i in range(12)], vectors, strict=True))
    )
    result = upsert.upsert_partition(storage, "lab", "S1", "m2.v1")
    assert result.table == "sequences_m2.v1"
    assert tables.list_model_tables(storage, "lab") == {
        "m1": "sequences_m1",
        "m2.v1": "sequences_m2.v1",
    }


def test_table_names_are_safe_and_distinct() -> None:
    assert tables.table_name("nt-2.5b-multi-species") == "sequences_nt-2.5b-multi-species"
    odd = tables.table_name("a b")
    assert odd.startswith("sequences_a_b_") and odd != tables.table_name("a_b")
    with pytest.raises(tables.VectorIndexError):
        tables.table_name("")


@pytest.mark.parametrize("tenant", ["../b", "A", "a/b", "", "a" * 64, "-a"])
def test_crafted_tenants_never_reach_a_path(storage, tenant) -> None:
    with pytest.raises(tables.VectorIndexError, match="not a valid tenant name"):
        tables.database_uri(storage, tenant)


def test_sql_literals_escape_quotes() -> None:
    assert tables.sql_string("it's") == "'it''s'"
    with pytest.raises(tables.VectorIndexError):
        tables.sql_string("a\nb")
    assert tables.rank_column("order") == "`order`"
    with pytest.raises(tables.VectorIndexError, match="unknown rank"):
        tables.rank_column("genre")


def test_writer_lock_excludes_threads_and_times_out(storage) -> None:
    events = []
    holding = threading.Event()

    def holder() -> None:
        with writer_lock(storage, "lab", "sequences_m1"):
            holding.set()
            events.append("a-in")
            time.sleep(0.5)
            events.append("a-out")

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(5)
    with (
        pytest.raises(TimeoutError, match=r"sequences_m1\.lock"),
        writer_lock(storage, "lab", "sequences_m1", timeout_s=0.1),
    ):
        pass
    with writer_lock(storage, "lab", "sequences_m1", timeout_s=10):
        events.append("b-in")
    thread.join()
    assert events == ["a-in", "a-out", "b-in"]


def test_concurrent_partitions_into_one_table(tmp_path, storage) -> None:
    samples = {f"S{n}": _sample(tmp_path, storage, "lab", f"S{n}", 20, seed=n)[0] for n in range(4)}
    errors = []

    def run(sample_id: str) -> None:
        try:
            upsert.upsert_partition(storage, "lab", sample_id, "m1", params=SMALL)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(s,)) for s in samples]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    keys = _rows(storage).column("key")
    assert len(keys) == 80 and len(pc.unique(keys)) == 80
    assert set(keys.to_pylist()) == {f"{s}/{n}" for s, names in samples.items() for n in names}


def test_choose_model_id(tmp_path, storage) -> None:
    _sample(tmp_path, storage, "lab", "S1", 5, model="m1")
    assert partition_rows.choose_model_id(storage, "lab", "S1") == "m1"
    assert partition_rows.choose_model_id(storage, "lab", "S1", "m9") == "m9"
    with pytest.raises(FileNotFoundError, match="materialise sequence_embeddings"):
        partition_rows.choose_model_id(storage, "lab", "S2")
    write_embeddings(
        storage, "m2", "lab", "S1", {f"r{i}": np.ones(4, np.float32) for i in range(5)}
    )
    with pytest.raises(tables.VectorIndexError, match="several models"):
        partition_rows.choose_model_id(storage, "lab", "S1")
