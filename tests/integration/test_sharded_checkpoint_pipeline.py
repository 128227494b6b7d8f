"""A sharded PyTorch `.bin` and a sharded safetensors checkpoint, each named by BIOSCAN_MODEL,
run through `sample_pipeline` (raw_sequences -> vector_index) on a real Dagster instance.

The graph and resources are wired as `bioscan_assets.definitions` wires them (the accelerator's
model comes from BIOSCAN_MODEL through `env_or`), with a small random NT-v1 checkpoint so the
run is quick; the vectors must be the ones the checkpoint gives outside the pipeline.
"""

from __future__ import annotations

import numpy as np
import pytest
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.env import env_or
from bioscan_resources.storage import StorageResource
from bioscan_resources.vector_store import VectorStoreResource
from dagster import DagsterInstance, Definitions

from bioscan_assets.assets.embed import embed_checks, sequence_embeddings
from bioscan_assets.assets.index import index_assets, index_checks
from bioscan_assets.assets.ingest import ingest_assets, ingest_checks
from bioscan_assets.core.embedding.compute import embed_sequences
from bioscan_assets.core.embedding.reader import iter_embedding_batches
from bioscan_assets.core.index.tables import open_table
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from bioscan_assets.jobs import sample_pipeline
from bioscan_assets.partitions import samples_partitions
from tests.checkpoint_helpers import random_esm, save_layout
from tests.helpers import random_dna, write_drop

pytestmark = [pytest.mark.integration]
TENANT, SAMPLE = "acme-lab", "S001"


def _definitions(tmp_path) -> Definitions:
    return Definitions(
        assets=[*ingest_assets, sequence_embeddings, *index_assets],
        asset_checks=[*ingest_checks, *embed_checks, *index_checks],
        jobs=[sample_pipeline],
        resources={
            "storage": StorageResource(
                landing=env_or("BIOSCAN_LANDING", ""), storage=env_or("BIOSCAN_STORAGE", "")
            ),
            "accelerator": AcceleratorResource(
                model=env_or("BIOSCAN_MODEL", "demo"), compilation_cache=str(tmp_path / "jit")
            ),
            "vector_store": VectorStoreResource(),
        },
    )


@pytest.mark.parametrize("layout", ["sharded-bin", "sharded-safetensors"])
def test_sample_pipeline_runs_a_sharded_checkpoint(tmp_path, monkeypatch, layout) -> None:
    checkpoint = save_layout(random_esm(seed=7), tmp_path / "nt-small", layout)
    index = (
        "pytorch_model.bin.index.json"
        if layout == "sharded-bin"
        else ("model.safetensors.index.json")
    )
    assert (checkpoint / index).exists()
    rng = np.random.default_rng(11)
    lengths = (80, 150, 301, 700, 1400)  # the longest is windowed (more than 256 tokens)
    sequences = {f"read-{n}": random_dna(rng, n) for n in lengths}
    write_drop(tmp_path / "landing", TENANT, SAMPLE, sequences=sequences)
    monkeypatch.setenv("BIOSCAN_LANDING", str(tmp_path / "landing"))
    monkeypatch.setenv("BIOSCAN_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("BIOSCAN_MODEL", str(checkpoint))

    instance = DagsterInstance.ephemeral()
    key = f"{TENANT}/{SAMPLE}"
    instance.add_dynamic_partitions(samples_partitions.name, [key])
    job = _definitions(tmp_path).resolve_job_def("sample_pipeline")
    result = job.execute_in_process(instance=instance, partition_key=key)
    assert result.success

    model = load_model(str(checkpoint))
    metadata = result.asset_materializations_for_node("sequence_embeddings")[0].metadata
    assert metadata["model_id"].value == model.model_id == f"nt-small-{model.weights_hash[:8]}"
    assert metadata["weights_hash"].value == model.weights_hash
    assert metadata["pretrained"].value is True and metadata["dim"].value == 64
    store = Store(str(tmp_path / "storage"))
    rows = [b.to_pydict() for b in iter_embedding_batches(store, model.model_id, TENANT, SAMPLE)]
    ids = [i for row in rows for i in row["sequence_id"]]
    vectors = np.array([v for row in rows for v in row["vector"]], np.float32)
    assert sorted(ids) == sorted(sequences)
    expected = embed_sequences([sequences[i] for i in ids], model)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert open_table(store, TENANT, model.model_id).count_rows() == len(sequences)
