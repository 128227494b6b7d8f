"""`bioscan search --assign` votes only with labelled reference rows the tenant may use, and
says which classifier and references it used (real tiny-model index)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bioscan_assets.cli import main
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
from bioscan_assets.core.index.upsert import upsert_partition
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from tests.helpers import random_dna
from tests.index_helpers import GENERA, make_shards


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> dict:
    """acme: REF (labelled) and FIELD (unlabelled copies of REF reads); shared: DB (labelled);
    other: OTH (private, labelled Vibrio, the same reads as FIELD); lonely: S (no own reference)."""
    tmp = tmp_path_factory.mktemp("assign")
    store = Store(str(tmp / "storage"))
    executor = EmbeddingExecutor(load_model("tiny"), Accelerator.discover(), token_budget=2048)
    rng = np.random.default_rng(5)
    ref = {f"r{i}": random_dna(rng, 120) for i in range(12)}
    genus = {name: ["Bacillus", "Listeria", "Escherichia"][i % 3] for i, name in enumerate(ref)}
    field = {f"f{i}": ref[f"r{i}"] for i in range(4)}
    shared = {f"d{i}": random_dna(rng, 120) for i in range(4)}
    drops = [
        ("acme", "REF", ref, {k: GENERA[g] for k, g in genus.items()}),
        ("acme", "FIELD", field, None),
        ("shared", "DB", shared, {k: GENERA["Escherichia"] for k in shared}),
        ("other", "OTH", field, {k: GENERA["Vibrio"] for k in field}),
        ("lonely", "S", field, None),
    ]
    for tenant, sample, seqs, taxonomy in drops:
        make_shards(tmp, store, tenant, sample, seqs, taxonomy)
        embed_partition(store, tenant, sample, executor)
        upsert_partition(store, tenant, sample, "tiny")
    return {"root": store.root, "genus": genus}


def _run(capsys, index, *args: str) -> tuple[int, str, str]:
    code = main(["search", "--storage", index["root"], "--model", "tiny", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_assign_votes_with_references_only_and_names_them(capsys, index):
    args = ["--tenant", "acme", "--sequence-id", "f1", "--k", "20"]
    code, out, err = _run(capsys, index, *args, "--json")
    assert code == 0, err
    plain = json.loads(out)["queries"][0]["hits"]
    assert "assignment" not in json.loads(out)["queries"][0]
    code, out, err = _run(
        capsys,
        index,
        "--tenant",
        "acme",
        "--sequence-id",
        "f1",
        "--query-sample",
        "FIELD",
        "--k",
        "20",
        "--assign",
        "--json",
    )
    assert code == 0, err
    doc = json.loads(out)
    hits = doc["queries"][0]["hits"]
    # never FIELD's own (unlabelled) reads, never tenant other's private references
    assert {h["sample_id"] for h in hits} == {"REF", "shared/DB"}
    assert all(h["taxonomy"] for h in hits)
    assert hits[0]["sequence_id"] == "r1" and hits[0]["distance"] == pytest.approx(0, abs=1e-4)
    assert doc["classifier"]["method"] == "knn"
    assert doc["classifier"]["references"] == {"acme/REF": 12, "shared/DB": 4}
    assert doc["queries"][0]["assignment"]["neighbours"] == len(hits)
    # without --assign the neighbours are every row of the tenant, unlabelled reads included
    assert {h["sample_id"] for h in plain} == {"FIELD", "REF"}
    code, out, _ = _run(
        capsys,
        index,
        "--tenant",
        "acme",
        "--sequence-id",
        "f1",
        "--query-sample",
        "FIELD",
        "--k",
        "1",
        "--assign",
    )
    assert code == 0
    assert "classifier: kNN" in out and "references: acme/REF (12 labelled rows)" in out
    assert "shared/DB (4 labelled rows)" in out and "other/" not in out
    assert f"genus    {index['genus']['r1']}" in out


def test_assign_refuses_a_non_reference_sample_and_uses_shared_references(capsys, index):
    code, _, err = _run(
        capsys, index, "--tenant", "acme", "--sequence-id", "f1", "--sample", "FIELD", "--assign"
    )
    assert code == 1 and "votes only with reference samples" in err and "FIELD" in err
    code, out, err = _run(capsys, index, "--tenant", "lonely", "--sequence-id", "f1", "--assign")
    assert code == 0, err
    assert "references: shared/DB (4 labelled rows)" in out and "acme/" not in out
    code, out, err = _run(
        capsys,
        index,
        "--tenant",
        "lonely",
        "--sequence-id",
        "f1",
        "--assign",
        "--shared-reference",
        "acme/REF",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["classifier"]["references"] == {"acme/REF": 12, "shared/DB": 4}


def test_assign_without_any_reference_says_so(capsys, tmp_path):
    store = Store(str(tmp_path / "storage"))
    executor = EmbeddingExecutor(load_model("tiny"), Accelerator.discover(), token_budget=2048)
    make_shards(tmp_path, store, "lonely", "S", {"a": "ACGTTGCA" * 12, "b": "TTGACCAG" * 12})
    embed_partition(store, "lonely", "S", executor)
    upsert_partition(store, "lonely", "S", "tiny")
    code, out, err = _run(
        capsys, {"root": store.root}, "--tenant", "lonely", "--sequence-id", "a", "--assign"
    )
    assert code == 0, err
    assert "no reference available" in out and "references: none" in out
