"""`novelty_clusters` materialised by Dagster on a real (ephemeral) instance, and its automation."""

from __future__ import annotations

import pytest
from bioscan_resources.storage import StorageResource
from dagster import (
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    Definitions,
    evaluate_automation_conditions,
    materialize,
)

from bioscan_assets.assets.keys import CALLS_KEY, NOVELTY_KEY
from bioscan_assets.assets.novelty import novelty_clusters
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches
from bioscan_assets.core.layout import run_manifest_dir
from bioscan_assets.core.novelty.store import read_novelty_manifest
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions, tenants_partitions
from tests.novelty_data import HELD_OUT, call_samples, planted_scenario

pytestmark = pytest.mark.integration
KEYS = ["acme-lab/REF", "acme-lab/FIELD"]


@pytest.fixture
def world(tmp_path):
    store = Store(str(tmp_path / "storage"))
    planted_scenario(tmp_path, store)
    call_samples(store, "acme-lab", KEYS, ["FIELD"])
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(samples_partitions.name, KEYS)
    instance.add_dynamic_partitions(tenants_partitions.name, ["acme-lab"])
    resources = {"storage": StorageResource(landing=str(tmp_path / "landing"), storage=store.root)}
    return store, instance, resources


def _materialize(world, config: dict | None = None):
    _store, instance, resources = world
    result = materialize(
        [novelty_clusters],
        partition_key="acme-lab",
        instance=instance,
        resources=resources,
        run_config={"ops": {"novelty_clusters": {"config": config or {}}}},
    )
    assert result.success
    return result, result.asset_materializations_for_node("novelty_clusters")[0].metadata


def test_materialise_then_unchanged(world, caplog):
    store, instance, _resources = world
    result, meta = _materialize(world)
    manifest = read_novelty_manifest(store, "acme-lab")
    assert meta["dagster/row_count"].value == manifest["rows"] >= len(HELD_OUT)
    assert meta["unchanged"].value is False
    assert meta["representation"].value == "kmer"
    assert "no model has embeddings" in meta["representation_detail"].value["reason"]
    assert meta["threshold"].value["quantile"] == 0.8
    assert meta["threshold_value"].value == pytest.approx(manifest["threshold"]["value"])
    assert "| N0001 |" in meta["clusters"].value
    assert meta["novelty_map"].value.endswith(f"map-{manifest['version']}.png")
    assert "![novelty map]" in meta["novelty_map_preview"].value
    assert meta["provenance/run_manifest"].value.startswith(
        store.url(run_manifest_dir("novelty_clusters", "acme-lab"))
    )
    assert "taxonomy_calls/acme-lab/FIELD" in meta["provenance/input_sha256s"].value

    # no read in any log line or metadata value
    sequences = [
        s
        for batch in iter_shard_batches(store, "acme-lab", "FIELD", columns=["dna_sequence"])
        for s in batch.column(0).to_pylist()
    ]
    logs = [
        str(record.event_log_entry.user_message)
        for record in instance.get_records_for_run(result.run_id).records
    ]
    text = "\n".join([*logs, caplog.text, *(str(v.value) for v in meta.values())])
    assert not any(sequence in text for sequence in sequences)

    _again, again = _materialize(world)
    assert again["unchanged"].value is True
    assert again["version"].value == meta["version"].value
    records = instance.fetch_materializations(NOVELTY_KEY, limit=5).records
    assert {r.asset_materialization.tags.get("dagster/data_version") for r in records} == {
        manifest["version"]
    }
    _forced, forced = _materialize(world, {"force": True})
    assert forced["unchanged"].value is False
    assert set(forced["id_matching"].value["kept"]) == {
        row.split(" | ")[0].strip("| ") for row in meta["clusters"].value.splitlines()[2:]
    }


def test_new_calls_and_new_tenants_request_novelty(world):
    _store, instance, resources = world
    calls = AssetSpec(CALLS_KEY, partitions_def=samples_partitions)  # stands in for the asset
    defs = Definitions(assets=[calls, novelty_clusters], resources=resources)
    first = evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.get_requested_partitions(NOVELTY_KEY) == set()  # eager: no history on tick one
    _materialize(world)
    instance.add_dynamic_partitions(tenants_partitions.name, ["new-lab"])
    added = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert added.get_requested_partitions(NOVELTY_KEY) == {"new-lab"}  # newly missing
    quiet = evaluate_automation_conditions(defs=defs, instance=instance, cursor=added.cursor)
    assert quiet.get_requested_partitions(NOVELTY_KEY) == set()
    instance.report_runless_asset_event(AssetMaterialization(CALLS_KEY, partition="acme-lab/FIELD"))
    after = evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
    # every tenant depends on every calls partition (see assets/novelty.py); the others'
    # builds find their inputs unchanged and keep their committed result
    assert "acme-lab" in after.get_requested_partitions(NOVELTY_KEY)
