"""Taxonomy calls of a sample: every row called, abstention, layout, QIIME 2 export, tenants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bioscan_assets.core.calls.calls import NO_REFERENCE, qiime_taxon
from bioscan_assets.core.calls.calls_layout import iter_calls, read_calls_manifest, write_calls
from bioscan_assets.core.calls.profile import profile_from_calls
from bioscan_assets.core.calls.references import SHARED_TENANT, usable_reference_keys
from bioscan_assets.core.calls.sample_calls import CallSettings, call_sample, fit_tenant_classifier
from bioscan_assets.core.classify.kmer_nb import reverse_complement
from bioscan_assets.core.layout import taxonomy_dir
from bioscan_assets.core.manifests import MANIFEST_NAME
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from tests.helpers import random_dna
from tests.index_helpers import make_shards
from tests.synthetic_taxa import make_reference, taxonomy_tsv

FAST = CallSettings(bootstrap=30)


@pytest.fixture(scope="module")
def reference():
    ids, seqs, lineages = make_reference(seed=11, phyla=2, genera_per_phylum=3, per_genus=6)
    return ids, seqs, lineages


def _refs(tmp: Path, store: Store, tenant: str, sample: str, ids, seqs, lineages, keep):
    chosen = [i for i, lin in enumerate(lineages) if keep(lin)]
    make_shards(
        tmp,
        store,
        tenant,
        sample,
        {ids[i]: seqs[i] for i in chosen},
        taxonomy_tsv([ids[i] for i in chosen], [lineages[i] for i in chosen]),
    )


def _calls(store: Store, tenant: str, sample: str) -> list[dict]:
    return pa.Table.from_batches(list(iter_calls(store, tenant, sample))).to_pylist()


def test_every_row_gets_a_call_and_the_qiime_export(tmp_path, reference):
    ids, seqs, lineages = reference
    store = Store(str(tmp_path / "storage"))
    _refs(tmp_path, store, "acme-lab", "REF", ids, seqs, lineages, lambda lin: True)
    # the held-out reads as a field sample: forward, reverse-complemented, a duplicate, noise
    field = {f"f{i}": seqs[i][50:330] for i in range(0, len(ids), 6)}
    field |= {f"r{i}": reverse_complement(seqs[i][50:330]) for i in range(0, len(ids), 6)}
    field["dup"] = field["f0"]
    field["stranger"] = random_dna(np.random.default_rng(5), 200)
    make_shards(tmp_path, store, "acme-lab", "FIELD", field)
    fitted = fit_tenant_classifier(store, "acme-lab", ["acme-lab/REF", "acme-lab/FIELD"], FAST)
    assert len(fitted.references) == len(ids)
    manifest = call_sample(store, "acme-lab/FIELD", fitted)
    rows = {row["sequence_id"]: row for row in _calls(store, "acme-lab", "FIELD")}
    assert set(rows) == set(field) and manifest["rows"] == len(field)
    for i in range(0, len(ids), 6):
        fwd, rev = rows[f"f{i}"], rows[f"r{i}"]
        assert fwd["genus"] == lineages[i][5] and fwd["method"] == "kmer_nb"
        assert [rev[r] for r in RANKS] == [fwd[r] for r in RANKS]
        assert rev["reverse_strand"] and not fwd["reverse_strand"]
        assert rev["confidence"] == fwd["confidence"]
    assert rows["dup"] == rows["f0"] | {"sequence_id": "dup"}
    for row in rows.values():  # abstaining at a rank blanks every rank below it
        called = [row[r] is not None for r in RANKS]
        assert called == sorted(called, reverse=True)
    # committed like the shards: parts listed with sha256, manifest written last
    folder = taxonomy_dir("acme-lab", "FIELD")
    written = json.loads(store.read_bytes(f"{folder}/{MANIFEST_NAME}"))
    assert written["files"] and all(f["sha256"] for f in written["files"])
    assert written["classifier"]["references"]["partitions"].keys() == {"acme-lab/REF"}
    tsv = store.read_bytes(f"{folder}/taxonomy.tsv").decode().splitlines()
    assert tsv[0] == "Feature ID\tTaxon\tConfidence"
    lines = dict((line.split("\t")[0], line.split("\t")[1:]) for line in tsv[1:])
    assert set(lines) == set(field)
    assert lines["f0"][0] == qiime_taxon([rows["f0"][r] for r in RANKS])
    assert lines["f0"][0].startswith("k__Bacteria; p__Phylum0; c__Class0")
    assert 0.0 <= float(lines["f0"][1]) <= 1.0
    assert rows["stranger"]["genus"] is None and "g__" not in lines["stranger"][0]


def test_a_tenant_without_references_gets_unassigned_calls(tmp_path):
    store = Store(str(tmp_path / "storage"))
    make_shards(tmp_path, store, "lonely", "S1", {"a": "ACGT" * 60, "b": "TTGA" * 60})
    fitted = fit_tenant_classifier(store, "lonely", ["lonely/S1"], FAST)
    assert fitted.classifier is None
    call_sample(store, "lonely/S1", fitted)
    rows = _calls(store, "lonely", "S1")
    assert [r["status"] for r in rows] == [NO_REFERENCE] * 2
    assert all(r["taxon"] == "Unassigned" and r["genus"] is None for r in rows)
    assert read_calls_manifest(store, "lonely", "S1")["classifier"]["reason"] == NO_REFERENCE


def test_another_tenants_private_references_never_reach_the_calls(tmp_path, reference):
    ids, seqs, lineages = reference
    store = Store(str(tmp_path / "storage"))
    # tenant A knows phylum 0; B privately knows phylum 1; the shared tenant knows Genus0x0
    _refs(tmp_path, store, "tenant-a", "REF", ids, seqs, lineages, lambda lin: lin[1] == "Phylum0")
    make_shards(tmp_path, store, "tenant-a", "FIELD", {"p1": seqs[-1][20:300]})
    keys = ["tenant-a/REF", "tenant-a/FIELD"]
    before = fit_tenant_classifier(store, "tenant-a", keys, FAST)
    call_sample(store, "tenant-a/FIELD", before)
    alone = _calls(store, "tenant-a", "FIELD")
    _refs(tmp_path, store, "tenant-b", "REF", ids, seqs, lineages, lambda lin: lin[1] == "Phylum1")
    after = fit_tenant_classifier(store, "tenant-a", [*keys, "tenant-b/REF"], FAST)
    assert "tenant-b/REF" not in after.references.versions
    assert after.fingerprint == before.fingerprint
    call_sample(store, "tenant-a/FIELD", after)
    assert _calls(store, "tenant-a", "FIELD") == alone
    assert alone[0]["phylum"] != "Phylum1"  # B's phylum is never A's answer
    with pytest.raises(ValueError, match="tenant-a"):
        call_sample(store, "tenant-b/REF", after)
    # a shared reference is everyone's
    _refs(tmp_path, store, SHARED_TENANT, "DB", ids, seqs, lineages, lambda lin: True)
    shared = fit_tenant_classifier(
        store, "tenant-a", [*keys, "tenant-b/REF", f"{SHARED_TENANT}/DB"], FAST
    )
    assert set(shared.references.versions) == {"tenant-a/REF", f"{SHARED_TENANT}/DB"}
    call_sample(store, "tenant-a/FIELD", shared)
    assert _calls(store, "tenant-a", "FIELD")[0]["genus"] == lineages[-1][5]


def test_usable_reference_keys():
    keys = ["a/R1", "b/R2", "shared/DB", "c/PUBLIC"]
    assert usable_reference_keys("a", keys) == ["a/R1", "shared/DB"]
    assert usable_reference_keys("a", keys, shared_keys=["c/PUBLIC"]) == [
        "a/R1",
        "c/PUBLIC",
        "shared/DB",
    ]
    with pytest.raises(ValueError):
        usable_reference_keys("../x", keys)


def test_an_empty_sample_commits_an_empty_table(tmp_path):
    store = Store(str(tmp_path))
    manifest = write_calls(store, "t", "S", iter(()), version="v0", info={})
    assert manifest["rows"] == 0 and len(manifest["files"]) == 1
    assert sum(batch.num_rows for batch in iter_calls(store, "t", "S")) == 0
    tsv = store.read_bytes(f"{taxonomy_dir('t', 'S')}/taxonomy.tsv").decode()
    assert tsv == "Feature ID\tTaxon\tConfidence\n"
    profile = profile_from_calls(iter_calls(store, "t", "S"))
    assert profile.num_rows == 0
