"""`taxonomy_calls` and `taxonomic_profile` materialised by Dagster on a real (ephemeral) instance."""

from __future__ import annotations

import json

import pytest
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from dagster import DagsterInstance, materialize

from bioscan_assets.assets.taxonomy import taxonomic_profile, taxonomy_calls
from bioscan_assets.core.calls.calls_layout import read_calls_manifest
from bioscan_assets.core.layout import profile_dir
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions
from tests.index_helpers import make_shards
from tests.synthetic_taxa import make_reference, taxonomy_tsv

pytestmark = pytest.mark.integration
RUN_CONFIG = {"ops": {"taxonomy_calls": {"config": {"bootstrap": 20}}}}


def test_calls_and_profile_for_a_field_sample(tmp_path):
    store = Store(str(tmp_path / "storage"))
    ids, seqs, lineages = make_reference(seed=2)
    make_shards(
        tmp_path,
        store,
        "acme-lab",
        "REF",
        dict(zip(ids, seqs, strict=True)),
        taxonomy_tsv(ids, lineages),
    )
    field = {f"read{i}": seqs[i][30:300] for i in range(0, len(ids), 3)}
    make_shards(tmp_path, store, "acme-lab", "FIELD", field)
    make_shards(tmp_path, store, "nobody", "S1", {"x": seqs[0]})
    instance = DagsterInstance.ephemeral()
    keys = ["acme-lab/REF", "acme-lab/FIELD", "nobody/S1"]
    instance.add_dynamic_partitions(samples_partitions.name, keys)
    resources = {
        "storage": StorageResource(landing=str(tmp_path / "landing"), storage=store.root),
        "accelerator": AcceleratorResource(model="tiny"),  # only kNN and LoRA calls load it
    }
    for key in ("acme-lab/FIELD", "nobody/S1"):
        result = materialize(
            [taxonomy_calls, taxonomic_profile],
            partition_key=key,
            instance=instance,
            resources=resources,
            run_config=RUN_CONFIG,
        )
        assert result.success
    calls = result.asset_materializations_for_node("taxonomy_calls")[0].metadata
    assert calls["status"].value == {"no reference available": 1}
    events = instance.fetch_materializations(taxonomy_calls.key, limit=10).records
    field_meta = next(
        r.asset_materialization.metadata for r in events if r.partition_key == "acme-lab/FIELD"
    )
    assert field_meta["method"].value == "kmer_nb"
    assert field_meta["dagster/row_count"].value == len(field)
    assert field_meta["called_genus"].value >= len(field) - 1
    assert field_meta["evaluation"].value["evaluation"] == "none"
    assert field_meta["reference_partitions"].value == "acme-lab/REF"
    manifest = read_calls_manifest(store, "acme-lab", "FIELD")
    assert list(manifest["classifier"]["references"]["partitions"]) == ["acme-lab/REF"]
    profiles = instance.fetch_materializations(taxonomic_profile.key, limit=10).records
    meta = next(
        r.asset_materialization.metadata for r in profiles if r.partition_key == "acme-lab/FIELD"
    )
    assert "| Genus" in meta["top_taxa"].value
    assert meta["reads"].value == len(field)
    folder = profile_dir("acme-lab", "FIELD")
    assert store.read_bytes(f"{folder}/barplot.png").startswith(b"\x89PNG")
    rows = store.read_bytes(f"{folder}/profile.tsv").decode().splitlines()
    assert rows[0].split("\t") == ["rank", "taxon", "lineage", "reads", "fraction"]
    assert json.loads(json.dumps(manifest["summary"]))["status"]["assigned"] == len(field)
