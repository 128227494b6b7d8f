"""The code location loads and exposes the names other parts depend on (DESIGN.md)."""

from __future__ import annotations

import json

from dagster import AssetKey

from bioscan_assets.definitions import defs

SAMPLE_ASSETS = {
    "raw_sequences": "ingest",
    "sequence_shards": "ingest",
    "sequence_embeddings": "embed",
    "vector_index": "index",
}


def test_sample_assets_are_partitioned_by_samples_with_groups_and_owners() -> None:
    graph = defs.resolve_asset_graph()
    for key, group in SAMPLE_ASSETS.items():
        node = graph.get(AssetKey(key))
        assert node.group_name == group, key
        assert node.partitions_def is not None and node.partitions_def.name == "samples", key
        assert node.owners == ["team:bioscan"], key
        assert node.code_version, key


def test_lineage() -> None:
    graph = defs.resolve_asset_graph()
    parents = {
        "sequence_shards": {AssetKey("raw_sequences")},
        "sequence_embeddings": {AssetKey("sequence_shards")},
        "vector_index": {AssetKey("sequence_shards"), AssetKey("sequence_embeddings")},
    }
    for key, expected in parents.items():
        assert graph.get(AssetKey(key)).parent_keys == expected


def test_unpartitioned_assets_and_groups() -> None:
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey("lora_adapter")).group_name == "tune"
    assert graph.get(AssetKey("evaluation_report")).group_name == "evaluate"
    assert AssetKey("lora_adapter") in graph.get(AssetKey("evaluation_report")).parent_keys


def test_jobs_sensor_and_embedding_step_config() -> None:
    for name in ("sample_pipeline", "tune_and_evaluate", "retention", "demo"):
        assert defs.resolve_job_def(name) is not None
    assert defs.resolve_schedule_def("retention_schedule").job_name == "retention"
    sample_job = defs.resolve_job_def("sample_pipeline")
    assert {k.to_user_string() for k in sample_job.asset_layer.executable_asset_keys} == set(
        SAMPLE_ASSETS
    )
    assert defs.resolve_sensor_def("lab_drop_sensor").job_name == "sample_pipeline"
    embed = defs.resolve_assets_def("sequence_embeddings")
    tags = json.loads(embed.op.tags["dagster-k8s/config"])
    assert tags["pod_spec_config"]["node_selector"]["cloud.google.com/gke-tpu-topology"]
    assert embed.op.pool == "tpu"
