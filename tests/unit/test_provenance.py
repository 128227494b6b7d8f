"""Run manifests, trigger/user derivation, data versions and reproducibility of outputs."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DynamicPartitionsDefinition,
    MaterializeResult,
    asset,
    materialize,
)

from bioscan_assets.assets.provenance import (
    bioscan_run_tags,
    embedding_data_version,
    model_code_version,
    record_provenance,
    run_trigger,
    run_user,
    shard_data_version,
)
from bioscan_assets.core.governance import provenance
from bioscan_assets.core.governance.costs import sum_costs
from bioscan_assets.core.governance.lineage import lineage_inputs
from bioscan_assets.core.governance.prices import Prices, estimate_cost
from bioscan_assets.core.storage import Store
from tests.helpers import random_dna, write_drop
from tests.pipeline_helpers import ingest

SHA = "ab" * 32


def _manifest(**overrides):
    kwargs = {
        "run_id": "run-1",
        "tags": {"dagster/partition": "acme-lab/S1"},
        "trigger": "sensor",
        "user": "alice",
        "inputs": {"seqs.fasta": SHA},
        "code_version": "shards-1",
        "config": {"min_length": 50, "max_n_fraction": 0.1},
        "rows": {"rows": 10, "records_read": 12},
        "model": {"model_id": "tiny", "weights_hash": "cd" * 32},
        "timing": provenance.make_timing(
            started_at=1_700_000_000.0,
            finished_at=1_700_000_360.0,
            device={"platform": "tpu", "device_kind": "TPU v5 lite", "device_count": 8},
        ),
        "outputs": {"bytes": 2_000_000_000},
        "prices": Prices(device_hour={"cpu": 0.1, "gpu": 3.0, "tpu": 1.2}),
    }
    kwargs |= overrides
    return provenance.build_run_manifest("sequence_shards", "acme-lab/S1", **kwargs)


def test_manifest_records_everything_the_issue_asks_for():
    doc = _manifest()
    assert doc["asset"] == "sequence_shards"
    assert (doc["tenant"], doc["sample_id"], doc["partition_key"]) == (
        "acme-lab",
        "S1",
        "acme-lab/S1",
    )
    assert doc["inputs"] == {"seqs.fasta": SHA}
    assert doc["code_version"] == "shards-1"
    assert doc["model"]["weights_hash"] == "cd" * 32
    assert doc["rows"] == {"records_read": 12, "rows": 10}
    assert doc["run"] == {
        "trigger": "sensor",
        "user": "alice",
        "tags": {"dagster/partition": "acme-lab/S1"},
    }
    libs = doc["libraries"]
    for name in (
        "dagster",
        "jax",
        "jaxlib",
        "flax",
        "optax",
        "pyarrow",
        "lancedb",
        "pysam",
        "numpy",
    ):
        assert libs[name] == importlib.metadata.version(name)
    assert libs["python"].count(".") == 2 and libs["bioscan"]
    # 8 TPU chips for 6 minutes: 0.8 chip-hours x 1.20 + the host's 0.1 h x 0.10
    timing = doc["timing"]
    assert (timing["device_kind"], timing["device_count"]) == ("tpu", 8)
    assert timing["wall_seconds"] == 360.0 and timing["device_seconds"] == 2880.0
    assert doc["cost"]["compute_usd"] == pytest.approx(0.8 * 1.2 + 0.1 * 0.1)
    assert doc["cost"]["storage_usd_per_month"] == pytest.approx(2 * 0.02)
    json.dumps(doc, allow_nan=False)  # JSON-able as is


def test_config_hash_is_canonical():
    a = provenance.config_hash({"b": 1, "a": [1.5, "x"], "c": {"z": None, "y": (1, 2)}})
    b = provenance.config_hash({"c": {"y": [1, 2], "z": None}, "a": [1.5, "x"], "b": 1})
    assert a == b and len(a) == 64
    assert a != provenance.config_hash({"b": 2, "a": [1.5, "x"], "c": {"z": None, "y": (1, 2)}})
    assert provenance.canonical_json({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    with pytest.raises(ValueError, match="not finite"):
        provenance.config_hash({"x": float("nan")})


def test_manifest_refuses_bad_scope():
    with pytest.raises(ValueError):
        _manifest(tenant="other-lab")  # tenant does not own the partition
    with pytest.raises(ValueError):
        provenance.build_run_manifest("a/../b", None, run_id="r")
    with pytest.raises(ValueError):
        provenance.build_run_manifest("x", None, run_id="../escape")
    with pytest.raises(ValueError, match="trigger"):
        _manifest(trigger="cron")


def test_write_read_latest_and_tenant_listing(tmp_path):
    store = Store(str(tmp_path))
    first = _manifest(run_id="run-1")
    second = _manifest(run_id="run-2", rows={"rows": 11})
    rel1 = provenance.write_run_manifest(store, first)
    rel2 = provenance.write_run_manifest(store, second)
    assert rel1 == "manifests/sequence_shards/tenant=acme-lab/sample=S1/run-1.json"
    assert json.loads(store.read_bytes(rel1)) == first
    assert provenance.read_latest_manifest(store, "sequence_shards", "acme-lab", "S1") == second
    found = dict(provenance.iter_run_manifests(store, "acme-lab"))
    assert set(found) == {rel1, rel2}  # latest.json is a pointer, not a third run
    assert list(provenance.iter_run_manifests(store, "other-lab")) == []
    glob_doc = provenance.build_run_manifest("lora_adapter", None, run_id="r9")
    assert (
        provenance.write_run_manifest(store, glob_doc) == "manifests/lora_adapter/_global/r9.json"
    )


def test_flat_metadata_is_scalar():
    flat = provenance.flat_metadata(_manifest(), "file:///x")
    assert flat["provenance/model_id"] == "tiny" and flat["provenance/trigger"] == "sensor"
    assert flat["provenance/rows/rows"] == 10 and flat["cost/device_kind"] == "tpu"
    assert all(isinstance(v, str | int | float) for v in flat.values())


@pytest.mark.parametrize(
    ("tags", "env", "trigger"),
    [
        ({"dagster/sensor_name": "lab_drop_sensor", "bioscan/trigger": "sensor"}, {}, "sensor"),
        ({"dagster/schedule_name": "retention_schedule"}, {}, "schedule"),
        ({"dagster/backfill": "abcd"}, {"CI": "true"}, "backfill"),
        ({"bioscan/trigger": "demo"}, {}, "demo"),
        ({"bioscan/trigger": "CI"}, {}, "ci"),
        ({}, {"CI": "true"}, "ci"),
        ({}, {}, "manual"),
        ({"bioscan/trigger": "rubbish"}, {}, "manual"),
    ],
)
def test_trigger_from_tags(tags, env, trigger):
    assert run_trigger(tags, env) == trigger


def test_user_from_tags_then_process():
    assert run_user({"dagster/user": "ann@lab.org", "bioscan/user": "bob"}, {}) == "ann@lab.org"
    assert run_user({"bioscan/user": "bob"}, {"USER": "ci"}) == "bob"
    assert run_user({}, {"USER": "carol"}) == "carol"
    assert bioscan_run_tags("CI", "dan") == {"bioscan/trigger": "ci", "bioscan/user": "dan"}
    with pytest.raises(ValueError):
        bioscan_run_tags("cron")


def test_costs_by_device_class():
    prices = Prices(device_hour={"cpu": 0.5, "gpu": 4.0, "tpu": 2.0}, storage_gb_month=0.1)
    cpu = estimate_cost(prices, device_kind="cpu", device_seconds=7200, wall_seconds=7200)
    gpu = estimate_cost(
        prices, device_kind="NVIDIA H100 80GB HBM3", device_seconds=3600, wall_seconds=3600
    )
    assert cpu["compute_usd"] == 1.0 and gpu["compute_usd"] == 4.5 and gpu["device_kind"] == "gpu"
    totals = sum_costs([_manifest(), _manifest(run_id="run-2")])
    assert totals["runs"] == 2 and totals["by_asset"]["sequence_shards"]["runs"] == 2
    assert totals["compute_usd"] == pytest.approx(2 * _manifest()["cost"]["compute_usd"])


# --- through Dagster -------------------------------------------------------------------------

samples = DynamicPartitionsDefinition(name="samples")


def test_record_provenance_from_a_real_run(tmp_path):
    store = Store(str(tmp_path / "storage"))

    @asset(key="sequence_shards", partitions_def=samples, code_version="shards-7")
    def shards(context) -> MaterializeResult:
        meta = record_provenance(
            context,
            store,
            inputs={"seqs.fasta": SHA},
            config={"min_length": 50},
            rows={"rows": 3},
        )
        return MaterializeResult(metadata=meta)

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("samples", ["acme-lab/S1"])
    result = materialize(
        [shards],
        partition_key="acme-lab/S1",
        instance=instance,
        tags={"bioscan/trigger": "demo", "dagster/user": "ann"},
    )
    doc = provenance.read_latest_manifest(store, "sequence_shards", "acme-lab", "S1")
    assert doc["run_id"] == result.run_id and doc["code_version"] == "shards-7"
    assert (doc["run"]["trigger"], doc["run"]["user"]) == ("demo", "ann")
    assert doc["run"]["tags"]["dagster/partition"] == "acme-lab/S1"
    # wall time from the step's STEP_START event to the manifest: a real, small number
    assert 0 < doc["timing"]["wall_seconds"] < 120 and doc["timing"]["device_kind"] == "cpu"
    event = instance.get_latest_materialization_event(AssetKey("sequence_shards"))
    metadata = event.asset_materialization.metadata
    assert metadata["provenance/config_hash"].value == provenance.config_hash({"min_length": 50})
    assert metadata["provenance/run_manifest"].value.endswith(f"{result.run_id}.json")
    assert metadata["provenance/trigger"].value == "demo"


def test_record_provenance_on_direct_invocation(tmp_path):
    from dagster import build_asset_context

    store = Store(str(tmp_path))

    @asset(key="lora_adapter")
    def adapter(context) -> MaterializeResult:
        return MaterializeResult(metadata=record_provenance(context, store, inputs={"x": SHA}))

    meta = adapter(build_asset_context()).metadata
    path = meta["provenance/run_manifest"].value
    assert "/manifests/lora_adapter/_global/direct-" in path
    assert json.loads(Path(path).read_text())["inputs"] == {"x": SHA}


# --- reproducibility -------------------------------------------------------------------------


def _drop(landing: Path, n: int = 300, alphabet: str = "ACGTN") -> dict[str, str]:
    rng = np.random.default_rng(5)
    weights = [0.24] * 4 + [0.04] if "N" in alphabet else None
    seqs = {f"r{i}": random_dna(rng, 120, alphabet=alphabet, p=weights) for i in range(n)}
    write_drop(landing, "acme-lab", "S1", sequences=seqs, taxonomy={"r1": "k__Bacteria; p__X"})
    return seqs


def _tree(store: Store, prefix: str) -> dict[str, bytes]:
    return {rel[len(prefix) :]: store.read_bytes(rel) for rel in store.list_files(prefix)}


def test_same_inputs_and_code_give_byte_identical_shards(tmp_path):
    _drop(tmp_path / "landing")
    landing = Store(str(tmp_path / "landing"))
    one, two = Store(str(tmp_path / "one")), Store(str(tmp_path / "two"))
    m1 = ingest(landing, one, "acme-lab", "S1")
    m2 = ingest(landing, two, "acme-lab", "S1")
    a, b = _tree(one, "shards/"), _tree(two, "shards/")
    assert a == b and len(a) >= 2  # every part and the manifest, byte for byte
    assert shard_data_version(m1) == shard_data_version(m2)


def test_same_shards_and_model_give_identical_vectors(tmp_path):
    from bioscan_assets.core.embedding.accelerator import Accelerator
    from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
    from bioscan_assets.core.model.presets import load_model

    _drop(tmp_path / "landing", n=80, alphabet="ACGT")  # one length: one compiled shape
    landing = Store(str(tmp_path / "landing"))
    stores = [Store(str(tmp_path / name)) for name in ("one", "two")]
    manifests = []
    # one executor: a second would only compile the same shapes again (same model, same code)
    executor = EmbeddingExecutor(load_model("tiny"), Accelerator.discover(), token_budget=2048)
    for store in stores:
        ingest(landing, store, "acme-lab", "S1")
        manifests.append(embed_partition(store, "acme-lab", "S1", executor, chunk_rows=32))
    vectors = []
    for store in stores:
        parts = sorted(r for r in store.list_files("embeddings/tiny") if r.endswith(".parquet"))
        table = [pq.read_table(store.url(r)) for r in parts]
        vectors.append(
            np.concatenate(
                [np.stack(t.column("vector").to_numpy(zero_copy_only=False)) for t in table]
            )
        )
    assert vectors[0].shape == (80, 64)
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert _tree(stores[0], "embeddings/") == _tree(stores[1], "embeddings/")
    assert embedding_data_version(manifests[0]) == embedding_data_version(manifests[1])
    assert lineage_inputs(stores[0], "acme-lab", "S1", "tiny") == lineage_inputs(
        stores[1], "acme-lab", "S1", "tiny"
    )


def test_model_code_version_changes_with_the_model():
    assert model_code_version("1", "demo") == model_code_version("1", "demo")
    assert model_code_version("1", "demo") != model_code_version("1", "tiny")
    assert model_code_version("1", "demo").startswith("1+model-")


# --- staleness in the UI --------------------------------------------------------------------


def _stale_graph(landing: Store, store: Store, settings: dict, model_spec: str):
    """sequence_shards (the real core writer) -> sequence_embeddings, with our data versions."""
    from dagster import DataVersion

    from bioscan_assets.core.ingest.shard_config import ShardConfig

    @asset(key="sequence_shards", partitions_def=samples, code_version="shards-1")
    def shards(context) -> MaterializeResult:
        manifest = ingest(landing, store, "acme-lab", "S1", ShardConfig(**settings))
        return MaterializeResult(data_version=shard_data_version(manifest))

    @asset(
        key="sequence_embeddings",
        partitions_def=samples,
        deps=[shards],
        code_version=model_code_version("1", model_spec),
    )
    def embeddings(context) -> MaterializeResult:
        return MaterializeResult(data_version=DataVersion("vectors"))

    return [shards, embeddings]


def test_new_shards_or_model_mark_the_downstream_partition_stale(tmp_path):
    from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    _drop(tmp_path / "landing", n=40)
    landing, store = Store(str(tmp_path / "landing")), Store(str(tmp_path / "storage"))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("samples", ["acme-lab/S1"])
    key, emb = "acme-lab/S1", AssetKey("sequence_embeddings")

    def status(graph):
        resolver = get_stale_status_resolver(instance, graph)
        return resolver.get_status(emb, key), resolver.get_stale_causes(emb, key)

    graph = _stale_graph(landing, store, {"min_length": 50}, "demo")
    materialize(graph, partition_key=key, instance=instance)
    assert status(graph)[0] == StaleStatus.FRESH
    # the same drop and config again: byte-identical shards, same data version, still fresh
    materialize(graph[:1], partition_key=key, instance=instance)
    assert status(graph)[0] == StaleStatus.FRESH
    # another QC config: a new shard version, the embeddings of that partition go stale
    graph = _stale_graph(landing, store, {"min_length": 60}, "demo")
    materialize(graph[:1], partition_key=key, instance=instance)
    state, causes = status(graph)
    assert state == StaleStatus.STALE
    assert causes[0].category == StaleCauseCategory.DATA
    assert causes[0].dependency.asset_key == AssetKey("sequence_shards")
    materialize(graph[1:], partition_key=key, instance=instance)
    assert status(graph)[0] == StaleStatus.FRESH
    # another model (BIOSCAN_MODEL): the embeddings' code version changes, stale again
    graph = _stale_graph(landing, store, {"min_length": 60}, "tiny")
    state, causes = status(graph)
    assert state == StaleStatus.STALE and causes[0].category == StaleCauseCategory.CODE


def test_costs_cli_sums_a_tenants_runs_and_storage(tmp_path, capsys):
    import argparse

    from bioscan_assets.commands import costs as costs_cli

    store = Store(str(tmp_path / "storage"))
    for run_id, finished in (("r1", 1_793_000_000.0), ("r2", 1_795_000_000.0)):  # Oct / Nov 2026
        doc = _manifest(
            run_id=run_id,
            timing=provenance.make_timing(
                started_at=finished - 3600, finished_at=finished, device={"platform": "cpu"}
            ),
        )
        provenance.write_run_manifest(store, doc)
    store.write_bytes("shards/tenant=acme-lab/sample=S1/part-0.parquet", b"x" * 1000)
    store.write_bytes("shards/tenant=other-lab/sample=S1/part-0.parquet", b"x" * 5000)
    parser = argparse.ArgumentParser()
    costs_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["costs", "--tenant", "acme-lab", "--storage", store.root, "--month", "2026-11", "--json"]
    )
    assert args.handler(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["compute"]["runs"] == 1  # only the November run
    assert summary["compute"]["compute_usd"] == pytest.approx(0.10)  # 1 CPU-hour at 0.10
    assert summary["storage_bytes"]["shards"] == 1000  # not the other tenant's 5000
    args = parser.parse_args(["costs", "--tenant", "acme-lab", "--storage", store.root])
    assert args.handler(args) == 0
    text = capsys.readouterr().out
    assert "sequence_shards" in text and "estimated total" in text
    with pytest.raises(ValueError, match="tenant"):
        costs_cli.run(
            parser.parse_args(["costs", "--tenant", "../other-lab", "--storage", store.root])
        )
