"""build_novelty end to end on real shards and calls: planted genera, layout, stable ids,
unchanged inputs, tenant isolation, the embedding path and its k-mer fallback."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from bioscan_assets.core import layout
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches
from bioscan_assets.core.layout import novelty_dir
from bioscan_assets.core.manifests import MANIFEST_NAME
from bioscan_assets.core.novelty.build import NoveltySettings, build_novelty
from bioscan_assets.core.novelty.store import (
    CLUSTER_SCHEMA,
    read_clusters,
    read_novelty_manifest,
)
from bioscan_assets.core.storage import Store
from tests.index_helpers import clustered_vectors, make_shards, shard_ids, write_embeddings
from tests.novelty_data import (
    HELD_OUT,
    call_samples,
    cluster_members,
    planted_scenario,
    score,
)
from tests.synthetic_taxa import make_reference, taxonomy_tsv

KEYS = ["acme-lab/REF", "acme-lab/FIELD"]


@pytest.fixture
def planted(tmp_path):
    store = Store(str(tmp_path / "storage"))
    truth = planted_scenario(tmp_path, store)
    call_samples(store, "acme-lab", KEYS, ["FIELD"])
    return store, truth


def test_planted_genera_become_clusters(planted, tmp_path):
    store, truth = planted
    built = build_novelty(store, "acme-lab", KEYS, NoveltySettings(map_points=200))
    manifest = built.manifest
    assert not built.unchanged
    recall, false_novel = score(cluster_members(store, "acme-lab"), truth)
    assert recall >= 0.7, recall
    assert false_novel <= 0.05, false_novel
    assert manifest["representation"]["representation"] == "kmer"
    assert "no model has embeddings" in manifest["representation"]["reason"]
    assert manifest["threshold"]["quantile"] == 0.8
    assert 0.0 < manifest["threshold"]["value"] < 1.0
    assert manifest["inputs"]["references"].keys() == {"acme-lab/REF"}

    clusters = read_clusters(store, "acme-lab")
    assert clusters.schema.names == CLUSTER_SCHEMA.names
    assert clusters.num_rows == manifest["rows"] >= len(HELD_OUT)
    members = cluster_members(store, "acme-lab")
    for row in clusters.to_pylist():
        assert row["samples"] == ["FIELD"]
        assert row["dates"] == ["2026-11-01T10:00:00Z"] == [row["first_seen"]]
        assert row["reads"] >= row["distinct_sequences"] >= 1
        assert row["medoid_sequence_id"] in members[row["cluster_id"]]
        assert row["nearest_reference"].startswith("acme-lab/REF/")
        assert row["nearest_taxon"].startswith("k__Bacteria")
        assert row["agreed_rank"] != "genus"  # every member abstained there
        assert row["nearest_distance"] > manifest["threshold"]["value"]
    reads = clusters.column("reads").to_pylist()
    assert reads == sorted(reads, reverse=True)

    folder = novelty_dir("acme-lab")
    files = {rel.rsplit("/", 1)[-1] for rel in store.list_files(folder)}
    version = manifest["version"]
    assert files == {
        MANIFEST_NAME,
        f"clusters-{version}.parquet",
        f"members-{version}.parquet",
        f"map-{version}.png",
    }
    assert store.read_bytes(f"{folder}/map-{version}.png").startswith(b"\x89PNG")
    assert pq.read_schema(store.local_path(f"{folder}/members-{version}.parquet")).names[:3] == [
        "cluster_id",
        "sample_id",
        "sequence_id",
    ]
    text = store.read_bytes(f"{folder}/{MANIFEST_NAME}").decode()
    batch = next(iter_shard_batches(store, "acme-lab", "FIELD", columns=["dna_sequence"]))
    for sequence in batch.column(0).to_pylist()[:20]:
        assert sequence not in text  # ids and numbers only, never a read


def test_ids_survive_rebuilds_and_unchanged_inputs_are_not_rebuilt(planted, tmp_path):
    store, truth = planted
    settings = NoveltySettings(map_points=0)
    first = build_novelty(store, "acme-lab", KEYS, settings).manifest
    before = cluster_members(store, "acme-lab")
    again = build_novelty(store, "acme-lab", KEYS, settings)
    assert again.unchanged and again.manifest["version"] == first["version"]

    forced = build_novelty(store, "acme-lab", KEYS, settings, force=True).manifest
    assert forced["version"] != first["version"]
    assert set(forced["id_matching"]["kept"]) == set(before)
    assert all(score == 1.0 for score in forced["id_matching"]["kept"].values())
    assert cluster_members(store, "acme-lab") == before

    # a second, smaller field sample of the same genera: clusters grow, ids stay
    more = planted_scenario(tmp_path, store, seed=3, field_id="FIELD2", reads_per_source=3)
    keys = [*KEYS, "acme-lab/FIELD2"]
    call_samples(store, "acme-lab", keys, ["FIELD2"])
    grown = build_novelty(store, "acme-lab", keys, settings).manifest
    assert grown["inputs"]["calls"].keys() == {"FIELD", "FIELD2"}
    kept = set(grown["id_matching"]["kept"])
    assert len(kept) >= len(before) // 2, grown["id_matching"]
    assert grown["next_cluster_number"] >= first["next_cluster_number"]
    assert not set(grown["id_matching"]["new"]) & set(before)  # never a reused id
    recall, _ = score(cluster_members(store, "acme-lab"), truth | more)
    assert recall >= 0.6
    seen_in = {s for row in read_clusters(store, "acme-lab").to_pylist() for s in row["samples"]}
    assert seen_in == {"FIELD", "FIELD2"}


def test_tenant_isolation(planted, tmp_path):
    store, _truth = planted
    # another tenant's private reference holds the held-out genera: it must not explain ours
    ids, seqs, lineages = make_reference(seed=3, per_genus=8)
    make_shards(
        tmp_path,
        store,
        "other-lab",
        "REF",
        dict(zip(ids, seqs, strict=True)),
        taxonomy_tsv(ids, lineages),
    )
    make_shards(tmp_path, store, "other-lab", "FIELD", {"x1": seqs[0][:150]})
    call_samples(store, "other-lab", ["other-lab/REF", "other-lab/FIELD"], ["FIELD"])
    keys = [*KEYS, "other-lab/REF", "other-lab/FIELD"]
    manifest = build_novelty(store, "acme-lab", keys, NoveltySettings(map_points=0)).manifest
    assert manifest["inputs"]["references"].keys() == {"acme-lab/REF"}
    assert manifest["inputs"]["calls"].keys() == {"FIELD"}
    assert manifest["rows"] >= len(HELD_OUT)
    other = build_novelty(store, "other-lab", keys, NoveltySettings(map_points=0)).manifest
    assert other["inputs"]["references"].keys() == {"other-lab/REF"}
    assert other["inputs"]["calls"].keys() == {"FIELD"}
    clusters = read_clusters(store, "acme-lab").to_pylist()
    assert all(row["nearest_reference"].startswith("acme-lab/") for row in clusters)
    assert store.exists(f"{novelty_dir('other-lab')}/{MANIFEST_NAME}")


def test_without_references_or_calls_the_result_says_why(tmp_path):
    store = Store(str(tmp_path / "storage"))
    make_shards(tmp_path, store, "lonely", "FIELD", {"r1": "ACGT" * 40})
    manifest = build_novelty(store, "lonely", ["lonely/FIELD"]).manifest
    assert manifest["rows"] == 0
    assert manifest["samples_waiting_for_calls"] == ["FIELD"]
    assert "fewer than two reference" in manifest["reason"]
    with pytest.raises(ValueError):
        build_novelty(store, "Bad/Tenant", [])


def _embed(store: Store, tenant: str, sample_id: str, genus_of: dict[str, str], pretrained: bool):
    ids = shard_ids(store, tenant, sample_id)
    vectors = clustered_vectors([genus_of[i] for i in ids], dim=32, seed=len(ids))
    manifest = write_embeddings(
        store, "nt-test", tenant, sample_id, dict(zip(ids, vectors, strict=True))
    )
    manifest["pretrained"] = pretrained
    folder = layout.embedding_dir("nt-test", tenant, sample_id)
    store.write_bytes(f"{folder}/{MANIFEST_NAME}", json.dumps(manifest).encode())


@pytest.mark.parametrize("pretrained", [True, False])
def test_embedding_path_and_its_fallback(planted, pretrained):
    store, truth = planted
    ids, _seqs, lineages = make_reference(seed=3, per_genus=8)
    genus_of = {i: lin[5] for i, lin in zip(ids, lineages, strict=True)}
    _embed(store, "acme-lab", "REF", genus_of, pretrained)
    _embed(store, "acme-lab", "FIELD", {sid: g for sid, (g, _p) in truth.items()}, pretrained)
    manifest = build_novelty(store, "acme-lab", KEYS, NoveltySettings(map_points=100)).manifest
    rep = manifest["representation"]
    recall, false_novel = score(cluster_members(store, "acme-lab"), truth)
    if pretrained:
        assert rep["representation"] == "embedding" and rep["model_id"] == "nt-test"
        assert set(rep["weights"]) == {"acme-lab/REF", "acme-lab/FIELD"}
        clusters = read_clusters(store, "acme-lab").to_pylist()
        assert len(clusters) == len(HELD_OUT)  # one tight blob per held-out genus
    else:
        assert rep["representation"] == "kmer"
        assert "not pretrained" in rep["reason"]
    assert recall >= 0.7 and false_novel <= 0.05
    assert read_novelty_manifest(store, "acme-lab")["version"] == manifest["version"]
