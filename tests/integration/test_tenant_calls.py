"""Per-tenant tuning, evaluation and calls on a real Dagster instance (tiny model, real index):
each tenant's calls follow its own evaluation's choice of method, and its cohort report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.tracking import WandbResource
from dagster import AssetMaterialization, DagsterInstance, Definitions, MetadataValue, materialize

from bioscan_assets.assets.cohort import cohort_report
from bioscan_assets.assets.keys import REPORT_KEY
from bioscan_assets.assets.taxonomy import taxonomic_profile, taxonomy_calls
from bioscan_assets.assets.tune import tune_and_evaluate, tune_assets, tune_checks
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
from bioscan_assets.core.index.upsert import upsert_partition
from bioscan_assets.core.layout import cohort_report_dir
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions, tenants_partitions
from tests.helpers import write_drop
from tests.pipeline_helpers import ingest
from tests.synthetic_taxa import make_reference, taxonomy_tsv

pytestmark = [pytest.mark.integration]
KEYS = ["tenant-a/REF", "tenant-a/FIELD", "tenant-b/REF", "tenant-b/FIELD"]
TUNE = {"steps": 6, "batch_size": 8, "crop_tokens": 48, "learning_rate": 0.005}
CALLS = {"ops": {"taxonomy_calls": {"config": {"bootstrap": 20}}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("tenant-calls")
    landing, store = Store(str(tmp / "landing")), Store(str(tmp / "storage"))
    ids, seqs, lineages = make_reference(seed=21, phyla=2, genera_per_phylum=3, per_genus=6)
    executor = EmbeddingExecutor(load_model("tiny"), Accelerator.discover(), token_budget=2048)
    for tenant, phylum, place in (("tenant-a", "Phylum0", 10.5), ("tenant-b", "Phylum1", -18.3)):
        rows = [i for i, lin in enumerate(lineages) if lin[1] == phylum]
        labels = taxonomy_tsv([ids[i] for i in rows], [lineages[i] for i in rows])
        write_drop(
            landing,
            tenant,
            "REF",
            sequences={ids[i]: seqs[i] for i in rows},
            taxonomy=labels,
            extra={"latitude": None, "longitude": None},
        )
        field = {f"read{i}": seqs[i][20:300] for i in rows[::3]}
        write_drop(
            landing,
            tenant,
            "FIELD",
            sequences=field,
            extra={"latitude": place, "longitude": 20.0, "depth_m": 30.0},
        )
        for sample in ("REF", "FIELD"):
            ingest(landing, store, tenant, sample)
            embed_partition(store, tenant, sample, executor)
            upsert_partition(store, tenant, sample, "tiny")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(samples_partitions.name, KEYS)
    resources = {
        "storage": StorageResource(landing=landing.root, storage=store.root),
        "accelerator": AcceleratorResource(model="tiny", compilation_cache=str(tmp / "jax")),
        "tracking": WandbResource(directory=str(tmp / "wandb")),
    }
    return {"tmp": tmp, "store": store, "instance": instance, "resources": resources}


def _tune(world, tenant: str | None):
    defs = Definitions(
        assets=tune_assets,
        asset_checks=tune_checks,
        jobs=[tune_and_evaluate],
        resources=world["resources"],
    )
    scope = {"tenant": tenant} if tenant else {}
    run_config = {
        "ops": {
            "lora_adapter": {"config": TUNE | scope},
            "evaluation_report": {"config": {"nb_bootstrap": 20} | scope},
        }
    }
    return defs.resolve_job_def("tune_and_evaluate").execute_in_process(
        instance=world["instance"], run_config=run_config, raise_on_error=False
    )


def _calls(world, key: str):
    result = materialize(
        [taxonomy_calls, taxonomic_profile],
        partition_key=key,
        instance=world["instance"],
        resources=world["resources"],
        run_config=CALLS,
    )
    assert result.success
    return result.asset_materializations_for_node("taxonomy_calls")[0].metadata


def test_tuning_needs_a_tenant_when_several_hold_private_references(world):
    result = _tune(world, None)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "tenant-a, tenant-b" in message and "tenant" in message


def test_each_tenants_calls_follow_its_own_evaluation(world):
    store = world["store"]
    result = _tune(world, "tenant-a")
    assert result.success
    adapter = result.asset_materializations_for_node("lora_adapter")[0].metadata
    assert adapter["tenant"].value == "tenant-a"
    assert adapter["reference_partitions"].value == "tenant-a/REF"
    assert adapter["adapter_path"].value.startswith("adapters/tiny/tenant=tenant-a/")
    report = result.asset_materializations_for_node("evaluation_report")[0].metadata
    assert report["tenant"].value == "tenant-a"

    a = _calls(world, "tenant-a/FIELD")
    assert a["evaluation"].value["evaluation_run_id"] == result.run_id
    assert a["method"].value == a["classifier"].value["method"]
    assert a["method"].value in ("kmer_nb", "knn", "lora")
    assert a["reference_partitions"].value == "tenant-a/REF"
    b = _calls(world, "tenant-b/FIELD")  # tenant A's evaluation is not tenant B's
    assert b["evaluation"].value["evaluation"] == "none"
    assert b["method"].value == "kmer_nb" and b["reference_partitions"].value == "tenant-b/REF"

    # the evaluation ranks LoRA best (its no_regression passed): the evaluated adapter calls
    rel = str(report["metrics_json"].value).removeprefix(store.root).lstrip("/")
    metrics = json.loads(store.read_bytes(rel))
    for name, accuracy in (("lora", 1.0), ("knn", 0.1), ("kmer_nb", 0.1)):
        metrics["methods"][name]["metrics"]["genus"]["seen"]["accuracy"] = accuracy
    store.write_bytes(rel, json.dumps(metrics).encode())
    lora = _calls(world, "tenant-a/FIELD")
    assert lora["method"].value == "lora"
    assert lora["classifier"].value["adapter_path"] == adapter["adapter_path"].value


def test_a_tenants_evaluation_preferring_knn_gives_knn_calls(world):
    store = world["store"]
    metrics = {
        "adapter": {"path": "unused"},
        "methods": {
            name: {"metrics": {"genus": {"seen": {"accuracy": acc}, "unseen": {"coverage": 0.2}}}}
            for name, acc in (("knn", 0.95), ("kmer_nb", 0.5), ("lora", 0.99))
        },
    }
    store.write_bytes("reports/test/metrics.json", json.dumps(metrics).encode())
    world["instance"].report_runless_asset_event(
        AssetMaterialization(
            REPORT_KEY,
            metadata={
                "tenant": "tenant-b",
                "metrics_json": MetadataValue.path(store.url("reports/test/metrics.json")),
            },
        )
    )
    b = _calls(world, "tenant-b/FIELD")
    # LoRA ranks higher but no no_regression check passed for this evaluation: kNN calls
    assert (b["method"].value, b["method_preferred"].value) == ("knn", "knn")
    classifier = b["classifier"].value
    assert classifier["references"]["partitions"].keys() == {"tenant-b/REF"}
    assert classifier["reference_vectors"] == 18


def test_cohort_report_per_tenant(world):
    store, instance = world["store"], world["instance"]
    _calls(world, "tenant-a/FIELD")  # its profile registers the tenant's partition
    assert "tenant-a" in instance.get_dynamic_partitions(tenants_partitions.name)
    result = materialize(
        [cohort_report],
        partition_key="tenant-a",
        instance=instance,
        resources={"storage": world["resources"]["storage"]},
    )
    assert result.success
    meta = result.asset_materializations_for_node("cohort_report")[0].metadata
    assert set(meta["samples"].value.split(", ")) == {"REF", "FIELD"}
    assert meta["profiled"].value == 1 and meta["placed"].value == 1
    page = store.read_bytes(f"{cohort_report_dir('tenant-a')}/latest/index.html").decode()
    assert "Cohort report: tenant-a" in page and "Phylum1" not in page
    assert Path(str(meta["report"].value)).name == "index.html"
