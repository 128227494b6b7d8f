"""The code location loads and exposes the names other parts depend on (DESIGN.md)."""

from __future__ import annotations

import json

from dagster import AssetKey

from bioscan_assets.definitions import defs

SAMPLE_ASSETS = {
    "raw_sequences": "ingest",
    "sequence_shards": "ingest",
    "sequence_embeddings": "embed",
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
    }
    for key, expected in parents.items():
        assert graph.get(AssetKey(key)).parent_keys == expected


def test_jobs_sensor_and_embedding_step_config() -> None:
    assert defs.resolve_job_def("sample_pipeline") is not None
    assert defs.resolve_job_def("demo") is not None
    assert defs.resolve_sensor_def("lab_drop_sensor").job_name == "sample_pipeline"
    embed = defs.resolve_assets_def("sequence_embeddings")
    tags = json.loads(embed.op.tags["dagster-k8s/config"])
    assert tags["pod_spec_config"]["node_selector"]["cloud.google.com/gke-tpu-topology"]
    assert embed.op.pool == "tpu"
