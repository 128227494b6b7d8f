"""kNN and LoRA calls (real tiny model, real LanceDB index): references only, both strands,
batch-independent, and blind to another tenant's private references."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bioscan_assets.core.calls.calls_layout import iter_calls
from bioscan_assets.core.calls.model_calls import AdapterNotUsable
from bioscan_assets.core.calls.reference_vectors import (
    indexed_reference_keys,
    load_reference_vectors,
    search_references,
)
from bioscan_assets.core.calls.references import SHARED_TENANT, tenant_scope
from bioscan_assets.core.calls.sample_calls import (
    CallSettings,
    ModelContext,
    call_sample,
    fit_tenant_classifier,
)
from bioscan_assets.core.calls.strand_embedding import StrandEmbedder
from bioscan_assets.core.classify.kmer_nb import reverse_complement
from bioscan_assets.core.classify.knn_references import ReferenceKNN
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
from bioscan_assets.core.index.upsert import upsert_partition
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.adapter import load_adapter, save_adapter
from bioscan_assets.core.tuning.config import TrainConfig
from bioscan_assets.core.tuning.run import prepare_tuning, tune_adapter
from tests.index_helpers import make_shards
from tests.synthetic_taxa import make_reference, taxonomy_tsv

A_KEYS = ["tenant-a/REF", "tenant-a/FIELD"]
TRAIN = TrainConfig(steps=8, batch_size=8, crop_tokens=48, learning_rate=5e-3, seed=0)


def _index(tmp: Path, store: Store, executor, tenant: str, sample: str, seqs, taxonomy=None):
    make_shards(tmp, store, tenant, sample, seqs, taxonomy)
    embed_partition(store, tenant, sample, executor)
    upsert_partition(store, tenant, sample, "tiny")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """tenant-a: REF (phylum 0 genera) + FIELD; tenant-b: REF (phylum 1), private; all indexed."""
    tmp = tmp_path_factory.mktemp("model-calls")
    store = Store(str(tmp / "storage"))
    model, accelerator = load_model("tiny"), Accelerator.discover()
    executor = EmbeddingExecutor(model, accelerator, token_budget=2048)
    ids, seqs, lineages = make_reference(seed=11, phyla=2, genera_per_phylum=3, per_genus=6)
    mine = [i for i, lin in enumerate(lineages) if lin[1] == "Phylum0"]
    theirs = [i for i, lin in enumerate(lineages) if lin[1] == "Phylum1"]

    def refs(rows):
        return {ids[i]: seqs[i] for i in rows}, taxonomy_tsv(
            [ids[i] for i in rows], [lineages[i] for i in rows]
        )

    _index(tmp, store, executor, "tenant-a", "REF", *refs(mine))
    # field reads: whole references (exact copies), their reverse complements, partial reads
    field = {f"copy{i}": seqs[i] for i in mine[::4]}
    field |= {f"rc{i}": reverse_complement(seqs[i]) for i in mine[::4]}
    field |= {f"part{i}": seqs[i][40:340] for i in mine[1::4]}
    field |= {f"rcpart{i}": reverse_complement(seqs[i][40:340]) for i in mine[1::4]}
    field["dup"] = field[f"part{mine[1]}"]
    _index(tmp, store, executor, "tenant-a", "FIELD", field)
    return {
        "tmp": tmp,
        "store": store,
        "model": model,
        "accelerator": accelerator,
        "executor": executor,
        "ids": ids,
        "seqs": seqs,
        "lineages": lineages,
        "mine": mine,
        "theirs": theirs,
        "field": field,
        "refs": refs,
    }


def _calls(store: Store, tenant: str, sample: str) -> dict[str, dict]:
    rows = pa.Table.from_batches(list(iter_calls(store, tenant, sample))).to_pylist()
    return {row["sequence_id"]: row for row in rows}


def _add_tenant_b(world) -> None:
    if not world["store"].exists("shards/tenant=tenant-b/sample=REF/_manifest.json"):
        sequences, labels = world["refs"](world["theirs"])
        _index(
            world["tmp"], world["store"], world["executor"], "tenant-b", "REF", sequences, labels
        )


def test_reference_knn_orientation_and_batch_independence():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((40, 16)).astype(np.float32)
    lineages = [("K", f"P{i % 2}", None, None, None, None, None) for i in range(40)]
    knn = ReferenceKNN(k=3, threshold=0.5, chunk=8).fit(refs, lineages)
    fwd = refs[:5] + 0.01 * rng.standard_normal((5, 16)).astype(np.float32)
    rev = rng.standard_normal((5, 16)).astype(np.float32)
    texts, rc_texts = [f"A{i}" for i in range(5)], [f"T{i}" for i in range(5)]
    one = knn.predict(fwd, rev, texts, rc_texts)
    assert [lab[1] for lab in one.labels] == [f"P{i % 2}" for i in range(5)]
    assert not one.reversed.any()
    # the reverse complement of a read: strands swapped, same call and confidence
    swapped = knn.predict(rev, fwd, rc_texts, texts)
    assert swapped.labels == one.labels and swapped.reversed.all()
    np.testing.assert_array_equal(swapped.confidence, one.confidence)
    # alone or among 20 other queries: bit-identical
    crowd = np.concatenate([rng.standard_normal((20, 16)).astype(np.float32), fwd[2:3]])
    alone = knn.predict(fwd[2:3], rev[2:3], texts[2:3], rc_texts[2:3])
    among = knn.predict(crowd, crowd[::-1], ["x"] * 21, ["y"] * 21)
    assert among.labels[-1] == alone.labels[0]
    np.testing.assert_array_equal(among.confidence[-1], alone.confidence[0])


def test_strand_embedder_vectors_do_not_depend_on_the_batch(world):
    embedder = StrandEmbedder(world["model"], world["accelerator"], rows_per_device=4)
    seqs = world["seqs"]
    alone = embedder.embed([seqs[3][:200]])
    batch = embedder.embed([seqs[0], seqs[5][:150], seqs[3][:200], seqs[7][:210], seqs[9]])
    np.testing.assert_array_equal(batch[2], alone[0])


def test_knn_calls_vote_only_with_labelled_references_on_both_strands(world):
    store, lineages, mine = world["store"], world["lineages"], world["mine"]
    models = ModelContext(world["model"], world["accelerator"])
    nearest = fit_tenant_classifier(
        store, "tenant-a", A_KEYS, CallSettings(knn_k=1), method="knn", models=models
    )
    # FIELD is indexed (and holds exact copies of the references), yet never a reference
    assert {i.split("/")[1] for i in nearest.references.ids} == {"REF"}
    assert len(nearest.references) == len(mine)
    manifest = call_sample(store, "tenant-a/FIELD", nearest)
    rows = _calls(store, "tenant-a", "FIELD")
    assert manifest["rows"] == len(world["field"])
    for i in mine[::4]:  # an exact copy's nearest labelled row is its reference
        copy, rc = rows[f"copy{i}"], rows[f"rc{i}"]
        assert copy["genus"] == lineages[i][5] and copy["method"] == "knn"
        assert [rc[r] for r in RANKS] == [copy[r] for r in RANKS]
        assert rc["reverse_strand"] and not copy["reverse_strand"]
    fitted = fit_tenant_classifier(store, "tenant-a", A_KEYS, method="knn", models=models)
    call_sample(store, "tenant-a/FIELD", fitted)
    rows = _calls(store, "tenant-a", "FIELD")
    for i in mine[1::4]:
        fwd, rev = rows[f"part{i}"], rows[f"rcpart{i}"]
        assert [rev[r] for r in RANKS] == [fwd[r] for r in RANKS]
        assert [rev[f"{r}_confidence"] for r in RANKS] == [fwd[f"{r}_confidence"] for r in RANKS]
        assert rev["reverse_strand"] != fwd["reverse_strand"]
    assert rows["dup"] | {"sequence_id": ""} == rows[f"part{mine[1]}"] | {"sequence_id": ""}
    for row in rows.values():
        called = [row[r] is not None for r in RANKS]
        assert called == sorted(called, reverse=True)


def test_knn_calls_ignore_another_tenants_private_references(world):
    store = world["store"]
    models = ModelContext(world["model"], world["accelerator"])
    before = fit_tenant_classifier(store, "tenant-a", A_KEYS, method="knn", models=models)
    call_sample(store, "tenant-a/FIELD", before)
    alone = _calls(store, "tenant-a", "FIELD")
    _add_tenant_b(world)
    keys = [*A_KEYS, "tenant-b/REF"]
    after = fit_tenant_classifier(store, "tenant-a", keys, method="knn", models=models)
    assert after.fingerprint == before.fingerprint
    assert "tenant-b/REF" not in after.references.versions
    call_sample(store, "tenant-a/FIELD", after)
    assert _calls(store, "tenant-a", "FIELD") == alone
    assert all(row["phylum"] in (None, "Phylum0") for row in alone.values())
    # tenant B's own kNN sees only its references
    theirs = load_reference_vectors(store, "tiny", ["tenant-b/REF"])
    assert {lin[1] for lin in theirs.lineages} == {"Phylum1"}
    # the search command's rule: tenant A's usable indexed references, B's never
    assert indexed_reference_keys(store, "tenant-a", "tiny") == ["tenant-a/REF"]
    vector = load_reference_vectors(store, "tiny", ["tenant-a/REF"]).vectors[0]
    hits = search_references(store, "tenant-a", "tiny", vector, ["tenant-a/REF"], k=50)
    assert hits and {h.sample_id for h in hits} == {"REF"}
    assert all(h.taxonomy for h in hits)


def test_knn_without_an_index_for_the_references_says_what_to_run(world, tmp_path):
    store = Store(str(tmp_path / "storage"))
    ids, seqs, lineages = make_reference(seed=3, phyla=1, genera_per_phylum=2, per_genus=3)
    labels = taxonomy_tsv(ids, lineages)
    make_shards(tmp_path, store, "lab", "REF", dict(zip(ids, seqs, strict=True)), labels)
    models = ModelContext(world["model"], world["accelerator"])
    with pytest.raises(RuntimeError, match=r"materialise vector_index.*lab/REF"):
        fit_tenant_classifier(store, "lab", ["lab/REF"], method="knn", models=models)


def _train(world, workdir: Path, references: list[str], tenant: str) -> dict:
    store = world["store"]
    inputs = prepare_tuning(store, references, TRAIN.seed)
    tuned = tune_adapter(
        store,
        inputs,
        world["model"],
        TRAIN,
        workdir=workdir,
        accelerator=world["accelerator"],
        tenant=tenant,
    )
    return tuned.doc


@pytest.fixture(scope="module")
def adapter(world) -> dict:
    """Tenant A's adapter, trained before tenant B's references exist."""
    tenant, usable = tenant_scope(None, indexed_reference_keys(world["store"], "tenant-a", "tiny"))
    assert (tenant, usable) == ("tenant-a", ["tenant-a/REF"])
    return _train(world, world["tmp"] / "work-1", usable, tenant)


def test_tuning_for_a_tenant_ignores_another_tenants_private_references(world, adapter):
    tmp, store = world["tmp"], world["store"]
    _add_tenant_b(world)
    with pytest.raises(ValueError, match="tenant-a, tenant-b"):
        tenant_scope(None, ["tenant-a/REF", "tenant-b/REF"])
    tenant, usable = tenant_scope("tenant-a", ["tenant-a/REF", "tenant-b/REF"])
    assert (tenant, usable) == ("tenant-a", ["tenant-a/REF"])
    after = _train(world, tmp / "work-2", usable, "tenant-a")  # a fresh run, not a resume
    assert after["version"] == adapter["version"]
    assert after["path"].startswith("adapters/tiny/tenant=tenant-a/")
    assert store.exists("adapters/tiny/tenant=tenant-a/latest.json")
    assert after["extra"]["reference_partitions"] == ["tenant-a/REF"]
    assert tenant_scope(None, ["tenant-a/REF", f"{SHARED_TENANT}/DB"])[0] == "tenant-a"
    assert tenant_scope(None, [f"{SHARED_TENANT}/DB"]) == (SHARED_TENANT, [f"{SHARED_TENANT}/DB"])


def test_lora_calls_on_both_strands_batch_independent_and_tenant_bound(world, adapter):
    store, mine = world["store"], world["mine"]
    models = ModelContext(world["model"], world["accelerator"], adapter["path"])
    fitted = fit_tenant_classifier(store, "tenant-a", A_KEYS, method="lora", models=models)
    assert fitted.description["method"] == "lora"
    assert set(fitted.references.versions) == {"tenant-a/REF"}
    call_sample(store, "tenant-a/FIELD", fitted)
    rows = _calls(store, "tenant-a", "FIELD")
    assert {row["method"] for row in rows.values()} == {"lora"}
    for i in mine[1::4]:
        fwd, rev = rows[f"part{i}"], rows[f"rcpart{i}"]
        assert [rev[r] for r in RANKS] == [fwd[r] for r in RANKS]
        assert rev["confidence"] == fwd["confidence"]
    read = world["seqs"][mine[2]][30:260]
    alone = fitted.classifier.predict([read])
    among = fitted.classifier.predict([world["seqs"][0], read, world["seqs"][5][:100]])
    assert among.labels[1] == alone.labels[0]
    np.testing.assert_array_equal(among.confidence[1], alone.confidence[0])
    # an adapter that learnt from tenant B's references never calls tenant A's samples
    loaded, _doc = load_adapter(store, adapter["path"])
    foreign = replace(loaded, extra=loaded.extra | {"reference_partitions": ["tenant-b/REF"]})
    doc = save_adapter(store, foreign, tenant="tenant-b")
    models = ModelContext(world["model"], world["accelerator"], doc["path"])
    with pytest.raises(AdapterNotUsable, match="tenant-b/REF"):
        fit_tenant_classifier(store, "tenant-a", A_KEYS, method="lora", models=models)
