"""`tune_and_evaluate` materialised for real: Dagster instance, shards, tiny-model embeddings,
LanceDB index, Orbax checkpoints, W&B in offline mode (read back from its run folder), and the
blocking `no_regression` check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.tracking import WandbResource, resolve_mode
from dagster import AssetMaterialization, DagsterInstance, Definitions

from bioscan_assets.assets.evaluate import GENUS_METRIC
from bioscan_assets.assets.keys import REPORT_KEY
from bioscan_assets.assets.tune import tune_and_evaluate, tune_assets, tune_checks
from bioscan_assets.core.classify.knn_baseline import IndexNotReady, check_indexed
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
from bioscan_assets.core.index import upsert as vi
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from tests.helpers import write_drop
from tests.pipeline_helpers import ingest
from tests.synthetic_taxa import make_reference, taxonomy_tsv
from tests.wandb_offline import read_offline_run

pytestmark = [pytest.mark.integration]
REF, FIELD = "lab-a/REF-1", "lab-a/FIELD-1"
RUN_CONFIG = {
    "ops": {
        "lora_adapter": {
            "config": {"steps": 30, "batch_size": 8, "crop_tokens": 48, "learning_rate": 0.005}
        },
        "evaluation_report": {"config": {"nb_bootstrap": 50}},
    }
}


def _pipeline(tmp_path: Path, index: bool = True) -> tuple[Store, Store]:
    """A reference drop and a field drop through shards, embeddings and the index (core code)."""
    landing = tmp_path / "landing"
    ids, seqs, lineages = make_reference(seed=21)
    reference = dict(zip(ids, seqs, strict=True))
    write_drop(landing, "lab-a", "REF-1", sequences=reference, taxonomy=taxonomy_tsv(ids, lineages))
    field = {"read-1": seqs[0][:300], "read-2": seqs[7]}
    write_drop(landing, "lab-a", "FIELD-1", sequences=field)
    landing_store, store = Store(str(landing)), Store(str(tmp_path / "storage"))
    executor = EmbeddingExecutor(load_model("tiny"), Accelerator.discover())
    for key in (REF, FIELD):
        tenant, sample_id = key.split("/")
        ingest(landing_store, store, tenant, sample_id)
        embed_partition(store, tenant, sample_id, executor)
        if index:
            vi.upsert_partition(store, tenant, sample_id, "tiny")
    return landing_store, store


def _defs(tmp_path: Path, landing: Store, store: Store) -> Definitions:
    return Definitions(
        assets=tune_assets,
        asset_checks=tune_checks,
        jobs=[tune_and_evaluate],
        resources={
            "storage": StorageResource(landing=landing.root, storage=store.root),
            "accelerator": AcceleratorResource(
                model="tiny", compilation_cache=str(tmp_path / "jax-cache")
            ),
            "tracking": WandbResource(directory=str(tmp_path / "wandb")),
        },
    )


def _check_passed(result, name: str = "no_regression") -> bool:
    evaluations = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == name
    ]
    assert len(evaluations) == 1
    return evaluations[0].passed


@pytest.mark.slow
def test_tune_and_evaluate_end_to_end(tmp_path):
    landing, store = _pipeline(tmp_path)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("samples", [REF, FIELD])
    job = _defs(tmp_path, landing, store).resolve_job_def("tune_and_evaluate")

    result = job.execute_in_process(instance=instance, run_config=RUN_CONFIG)
    assert result.success
    adapter_meta = result.asset_materializations_for_node("lora_adapter")[0].metadata
    assert adapter_meta["reference_partitions"].value == REF
    assert "no taxonomy.tsv" in json.dumps(adapter_meta["skipped_partitions"].value)
    assert adapter_meta["steps"].value == 30 and adapter_meta["pretrained"].value is False
    assert 0 < adapter_meta["trainable_fraction"].value < 0.1
    assert adapter_meta["nt_2_5b_adapter_fraction"].value == pytest.approx(0.00207, abs=2e-5)

    # the artefact: adapter + head + vocabularies + base id/hash, never the base weights
    folder = adapter_meta["adapter_path"].value
    doc = json.loads(store.read_bytes(f"{folder}/adapter.json"))
    assert doc["base_model"]["model_id"] == "tiny"
    assert doc["base_model"]["weights_hash"] == load_model("tiny").weights_hash
    assert "Genus0x0" in doc["vocab"]["genus"] or "Genus0x0" in json.dumps(
        json.loads(store.read_bytes(f"{folder}/split.json"))["unseen_genera"]
    )
    assert store.size(f"{folder}/adapter.safetensors") < 200_000

    # report files under reports/ (this run's folder, the newest also under latest/), linked
    # from the materialisation; the run manifest stays under manifests/
    report_meta = result.asset_materializations_for_node("evaluation_report")[0].metadata
    manifest = f"manifests/evaluation_report/_global/{result.run_id}.json"
    assert store.exists(manifest)
    reports = f"reports/evaluation/tenant=lab-a/{result.run_id}"
    assert report_meta["report"].value == store.url(f"{reports}/report.html")
    assert report_meta["latest_report"].value == store.url(
        "reports/evaluation/tenant=lab-a/latest/report.html"
    )
    html = store.read_bytes(f"{reports}/report.html")
    assert html == store.read_bytes("reports/evaluation/tenant=lab-a/latest/report.html")
    assert b"NOT pretrained" in html and html.count(b"<svg") >= 3
    metrics = json.loads(store.read_bytes(f"{reports}/metrics.json"))
    assert report_meta["metrics_json"].value == store.url(f"{reports}/metrics.json")
    assert set(metrics["methods"]) == {"lora", "knn", "kmer_nb"}
    assert metrics["test"]["unseen_genus"] > 0 and metrics["test"]["seen_genus"] > 0
    # on these well-separated synthetic genera the k-mer baseline is reliable
    assert metrics["methods"]["kmer_nb"]["metrics"]["genus"]["seen"]["accuracy"] >= 0.75
    assert "| genus |" in report_meta["summary"].value
    genus = report_meta[GENUS_METRIC].value
    assert 0.0 <= genus <= 1.0
    assert _check_passed(result)  # first evaluation: nothing to regress from

    # W&B offline runs under the configured folder, read back from disk
    runs = {}
    for run_dir in sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*")):
        data = read_offline_run(run_dir)
        runs[data["run"]["job_type"]] = data
    tune = runs["tune"]
    steps = [row for row in tune["history"] if "train/loss" in row]
    assert len(steps) == 30
    assert {"train/loss_genus", "train/learning_rate", "train/tokens_per_s"} <= set(steps[0])
    assert tune["config"]["lora_rank"] == 16
    artifact = tune["artifacts"][0]
    assert artifact["name"] == "lora-adapter-tiny"
    assert set(artifact["files"]) == {"adapter.safetensors", "adapter.json", "split.json"}
    assert runs["evaluate"]["summary"]["eval/lora/genus_accuracy_seen"] == pytest.approx(genus)

    # a previous evaluation 20 points better: the same adapter now counts as a regression
    instance.report_runless_asset_event(
        AssetMaterialization(REPORT_KEY, metadata={GENUS_METRIC: genus + 0.2})
    )
    again = job.execute_in_process(
        instance=instance,
        run_config={"ops": {"evaluation_report": RUN_CONFIG["ops"]["evaluation_report"]}},
        asset_selection=[REPORT_KEY],
        raise_on_error=False,
    )
    assert not _check_passed(again)
    assert not again.success  # the check is blocking


def test_no_reference_sample_is_a_clear_failure(tmp_path):
    landing, store = Store(str(tmp_path / "landing")), Store(str(tmp_path / "storage"))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("samples", [FIELD])
    job = _defs(tmp_path, landing, store).resolve_job_def("tune_and_evaluate")
    result = job.execute_in_process(
        instance=instance, asset_selection=[tune_assets[0].key], raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "no reference sample" in message


def test_missing_index_names_the_partitions_to_materialise(tmp_path):
    _landing, store = _pipeline(tmp_path, index=False)
    with pytest.raises(IndexNotReady, match=f"vector_index.*{REF}"):
        check_indexed(store, "tiny", [REF])


def test_wandb_mode_resolution():
    assert resolve_mode(None, None) == ("offline", None)
    mode, warning = resolve_mode("online", None)
    assert mode == "offline" and "WANDB_API_KEY" in warning
    assert resolve_mode("online", "key")[0] == "online"
    assert resolve_mode("disabled", None)[0] == "disabled"
