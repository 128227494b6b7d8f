"""Retention on real shards, real tiny-model embeddings, a real LanceDB table and real files."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from bioscan_resources.retention import RetentionResource
from bioscan_resources.storage import StorageResource
from dagster import AssetKey, DagsterInstance

from bioscan_assets.assets.retention import RETENTION_OP, retention_job
from bioscan_assets.core.governance import provenance
from bioscan_assets.core.governance.apply import apply_retention
from bioscan_assets.core.governance.audit import AuditLog, read_audit
from bioscan_assets.core.governance.deletion import Deletion, ProtectedPathError, format_plan
from bioscan_assets.core.governance.lineage import lineage_inputs
from bioscan_assets.core.governance.listing import modified_at
from bioscan_assets.core.governance.partition_state import clear_tombstone, partition_state
from bioscan_assets.core.governance.planners import plan_retention
from bioscan_assets.core.governance.policy import load_policies
from bioscan_assets.core.governance.record import record_run
from bioscan_assets.core.ingest.shard_config import ShardConfig
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches
from bioscan_assets.core.storage import Store
from tests.helpers import random_dna, write_drop
from tests.pipeline_helpers import ingest

TENANT = "acme-lab"
SMALL_PARTS = ShardConfig(rows_per_part=8)  # several parts per sample
PROTECTED_FILES = {
    "raw/tenant=acme-lab/sample=S9/manifest.json": b"{}",
    "manifests/sequence_shards/tenant=acme-lab/sample=S1/old.json": b"{}",
    "audit/retention/2026-01-01/r0.jsonl": b"{}\n",
    "quarantine/acme-lab/BAD.json": b"{}",
    "sensor_state/lab_drop_sensor/abc.json.gz": b"x",
    "adapters/tiny/adapter.safetensors": b"x",
    "reports/evaluation/report.json": b"{}",
}


def _sequences(seed: int, n: int = 24) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    return {f"read{i}": random_dna(rng, 120) for i in range(n)}


def _files(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _lance_versions(storage: Path) -> list[int]:
    table = lancedb.connect(str(storage / "lancedb" / TENANT)).open_table("tiny")
    return sorted(int(v["version"]) for v in table.list_versions())


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A deployment after a few weeks of work, built once and copied per test.

    S1: shards -> embeddings (tiny) -> indexed from exactly those embeddings.
    S2: embedded, then re-sharded with another config (embeddings are from the old version).
    S3: shards only.
    """
    from bioscan_assets.core.embedding.accelerator import Accelerator
    from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
    from bioscan_assets.core.model.presets import load_model

    root = tmp_path_factory.mktemp("retention")
    landing_dir, storage_dir, home_dir = root / "landing", root / "storage", root / "home"
    for i, sample in enumerate(("S1", "S2", "S3")):
        write_drop(landing_dir, TENANT, sample, sequences=_sequences(i))
    landing, store = Store(str(landing_dir)), Store(str(storage_dir))
    executor = EmbeddingExecutor(load_model("tiny"), Accelerator.discover(), token_budget=1024)
    for sample in ("S1", "S2", "S3"):
        ingest(landing, store, TENANT, sample, SMALL_PARTS)
    for sample in ("S1", "S2"):
        embed_partition(store, TENANT, sample, executor, chunk_rows=8)
    ingest(
        landing, store, TENANT, "S2", ShardConfig(min_length=60, rows_per_part=8)
    )  # a new shard version
    index_doc = provenance.build_run_manifest(
        "vector_index",
        f"{TENANT}/S1",
        run_id="index-run-1",
        inputs=lineage_inputs(store, TENANT, "S1", "tiny"),
        timing=provenance.make_timing(started_at=time.time() - 5),
    )
    provenance.write_run_manifest(store, index_doc)

    for rel, data in PROTECTED_FILES.items():
        store.write_bytes(rel, data)
    run = "tune/checkpoints/0123456789abcdef"
    for step in (1, 2, 3, 4, 5):
        store.write_bytes(f"{run}/{step}/default/d/0a1b", b"w" * 100)
        store.write_bytes(f"{run}/{step}/_COMMITTED", b'{"step": %d}' % step)
    store.write_bytes(f"{run}/6/default/d/0a1b", b"u")  # being uploaded: no marker yet
    home_store = Store(str(home_dir))
    for step in (1, 2, 3):
        home_store.write_bytes(f"tune/{run[-16:]}/checkpoints/{step}/_CHECKPOINT_METADATA", b"{}")
        home_store.write_bytes(f"tune/{run[-16:]}/checkpoints/{step}/default/x", b"s" * 10)
    home_store.write_bytes(f"tune/{run[-16:]}/checkpoints/4.orbax-checkpoint-tmp-7/x", b"t")

    db = lancedb.connect(str(storage_dir / "lancedb" / TENANT))
    table = db.create_table("tiny", pa.table({"sequence_id": ["a"], "v": [0]}))
    for i in range(4):
        table.add(pa.table({"sequence_id": [f"x{i}"], "v": [i]}))
        time.sleep(0.3)  # versions well apart: the cleanup cut falls between two of them
    table.tags.create("release-1", 3)  # versions 1, 2 are older than the tag; 4, 5 newer

    home = Store(str(home_dir))
    now_ns = time.time_ns()
    for key, age_days, size in (("k1", 60, 400), ("k2", 3, 300), ("k3", 2, 300), ("k4", 1, 300)):
        home.write_bytes(f"jax_cache/{key}-cache", b"c" * size)
        used = now_ns - age_days * 86_400 * 10**9
        home.write_bytes(f"jax_cache/{key}-atime", used.to_bytes(8, "little"))
    for name, synced in (
        ("offline-run-20261001_000000-aaa", True),
        ("offline-run-20261002_000000-bbb", False),
        ("run-20261003_000000-ccc", True),
    ):
        home.write_bytes(f"wandb/{name}/files/output.log", b"log")
        home.write_bytes(f"wandb/{name}/run-{name[-3:]}.wandb", b"data")
        if synced and name.startswith("offline"):
            home.write_bytes(f"wandb/{name}/run-{name[-3:]}.wandb.synced", b"")
    return root


@pytest.fixture
def env(template, tmp_path):
    root = tmp_path / "deployment"
    shutil.copytree(template, root)
    return root, Store(str(root / "storage")), Store(str(root / "home"))


POLICIES = load_policies(
    overrides={
        "policies": {
            "lancedb": {"cleanup_older_than_days": 0},
        }
    }
)
LATER = timedelta(days=31)


def _plan(store, home, after=LATER, policies=POLICIES):
    return plan_retention(store, policies, datetime.now(UTC) + after, home=home)


def test_plan_follows_lineage_and_policies(env):
    _root, store, home = env
    plan = _plan(store, home)
    by_policy = {}
    for item in plan:
        by_policy.setdefault(item.policy, []).append(item)
    # Only S1's shards: S2's embeddings come from an older shard version, S3 has none.
    assert [d.partition_key for d in by_policy["sequence_shards"]] == [f"{TENANT}/S1"]
    # Only S1's embeddings: S2's were never indexed.
    assert [(d.partition_key, d.model_id) for d in by_policy["sequence_embeddings"]] == [
        (f"{TENANT}/S1", "tiny")
    ]
    shards = by_policy["sequence_shards"][0]
    assert shards.files[0].endswith("/_manifest.json")  # readers see "gone" first
    assert all(f.endswith(".parquet") for f in shards.files[1:]) and len(shards.files) >= 2
    steps = [(d.root, d.details[0][1]) for d in by_policy["checkpoints"]]
    assert steps == [("storage", 1), ("storage", 2), ("storage", 3), ("home", 1)]
    assert by_policy["checkpoints"][0].files[0].endswith("/1/_COMMITTED")  # marker first
    assert by_policy["checkpoints"][3].files[0].endswith("/1/_CHECKPOINT_METADATA")
    (lance,) = by_policy["lancedb"]
    assert lance.versions == (1, 2)  # the tag on 3 keeps 3 and newer; latest always kept
    # JAX caps its compilation cache itself: retention never looks inside it
    assert not [d for d in plan if any("jax_cache/" in f for f in d.files)]
    wandb_targets = [d.target for d in by_policy["wandb"]]
    assert wandb_targets == [
        "wandb/offline-run-20261001_000000-aaa",
        "wandb/run-20261003_000000-ccc",
    ]
    assert by_policy["wandb"][0].files[-1].endswith(".wandb.synced")  # marker last

    # 29 days on: consumed less than 30 days ago, nothing partitioned expires yet
    early = _plan(store, home, timedelta(days=29))
    assert not [d for d in early if d.policy.startswith("sequence_")]


def test_dry_run_lists_exactly_what_the_real_run_deletes(env):
    root, store, home = env
    plan = _plan(store, home)
    dry_run = format_plan(plan)
    before = {
        **{f"storage:{k}": v for k, v in _files(root / "storage").items()},
        **{f"home:{k}": v for k, v in _files(root / "home").items()},
    }
    versions_before = _lance_versions(root / "storage")
    result = apply_retention(store, plan, AuditLog(store, "run-1"), policies=POLICIES, home=home)
    after = {
        **{f"storage:{k}": v for k, v in _files(root / "storage").items()},
        **{f"home:{k}": v for k, v in _files(root / "home").items()},
    }
    gone = sorted(set(before) - set(after))
    gone_versions = sorted(set(versions_before) - set(_lance_versions(root / "storage")))
    lance_prefix = "storage:lancedb/"
    assert sorted(line for line in dry_run if "@version=" not in line) == sorted(
        f for f in gone if not f.startswith(lance_prefix)
    )
    assert [line for line in dry_run if "@version=" in line] == [
        f"storage:lancedb/{TENANT}/tiny@version={v}" for v in gone_versions
    ]
    assert result.deleted_lines == dry_run
    # nothing else changed: every surviving file keeps its bytes (LanceDB and the new
    # tombstones/audit aside)
    for name, digest in before.items():
        if name in after and not name.startswith(lance_prefix):
            assert after[name] == digest, name
    for rel in PROTECTED_FILES:
        assert f"storage:{rel}" in after
    # the latest index version and the tagged one are still there, and readable
    table = lancedb.connect(str(root / "storage" / "lancedb" / TENANT)).open_table("tiny")
    assert table.count_rows() == 5 and table.tags.list()["release-1"]["version"] == 3
    # a second plan finds nothing more of what was just done
    again = _plan(store, home)
    assert not [
        d
        for d in again
        if d.policy in ("sequence_shards", "sequence_embeddings", "checkpoints", "wandb")
    ]


def test_expired_partition_shows_as_such_and_rematerialising_restores_it(env):
    root, store, home = env
    plan = [d for d in _plan(store, home) if d.policy == "sequence_shards"]
    apply_retention(store, plan, AuditLog(store, "run-2"), policies=POLICIES, home=home)
    assert partition_state(store, "sequence_shards", TENANT, "S1") == "expired"
    tomb = json.loads(store.read_bytes(f"shards/tenant={TENANT}/sample=S1/_expired.json"))
    assert tomb["expired"] and tomb["run_id"] == "run-2" and tomb["manifest"]["rows"] == 24
    with pytest.raises(FileNotFoundError, match="materialise sequence_shards"):
        list(iter_shard_batches(store, TENANT, "S1"))
    # materialising again (same drop, same config) restores byte-identical shards
    ingest(Store(str(root / "landing")), store, TENANT, "S1", SMALL_PARTS)
    assert partition_state(store, "sequence_shards", TENANT, "S1") == "live"
    assert sum(b.num_rows for b in iter_shard_batches(store, TENANT, "S1")) == 24
    assert clear_tombstone(store, "sequence_shards", TENANT, "S1")
    assert not store.exists(f"shards/tenant={TENANT}/sample=S1/_expired.json")


class FailingStore(Store):
    """The real local store, except that deletes start failing after `allowed` of them."""

    def __init__(self, root: str, allowed: int):
        super().__init__(root)
        self.allowed = allowed

    def delete(self, rel: str) -> None:
        if self.allowed <= 0:
            raise OSError(f"injected failure deleting {rel}")
        self.allowed -= 1
        super().delete(rel)


def test_failure_half_way_leaves_the_rest_and_a_rerun_finishes(env):
    root, store, home = env
    plan = [d for d in _plan(store, home) if d.policy == "sequence_shards"]
    (item,) = plan
    assert len(item.files) >= 3
    flaky = FailingStore(store.root, allowed=2)
    before = _files(root / "storage")
    with pytest.raises(OSError, match="injected"):
        apply_retention(flaky, plan, AuditLog(store, "run-3"), policies=POLICIES, home=home)
    after = _files(root / "storage")
    assert sorted(set(before) - set(after)) == sorted(item.files[:2])
    for rel in item.files[2:]:
        assert after[rel] == before[rel]  # untouched, byte for byte
    assert partition_state(store, "sequence_shards", TENANT, "S1") == "expired"
    failed = [r for r in read_audit(store) if r.get("run_id") == "run-3"]
    assert [r["status"] for r in failed] == ["failed"] and failed[0]["files"] == list(
        item.files[:2]
    )

    replan = [d for d in _plan(store, home) if d.policy == "sequence_shards"]
    assert [d.files for d in replan] == [item.files[2:]]
    assert "interrupted" in replan[0].reason
    apply_retention(store, replan, AuditLog(store, "run-4"), policies=POLICIES, home=home)
    left = store.list_files(f"shards/tenant={TENANT}/sample=S1")
    assert left == [f"shards/tenant={TENANT}/sample=S1/_expired.json"]


def test_partition_rematerialised_after_the_plan_is_skipped(env):
    root, store, home = env
    plan = [d for d in _plan(store, home) if d.policy == "sequence_shards"]
    ingest(
        Store(str(root / "landing")),
        store,
        TENANT,
        "S1",
        ShardConfig(min_length=70, rows_per_part=8),
    )
    result = apply_retention(store, plan, AuditLog(store, "run-5"), policies=POLICIES, home=home)
    assert result.applied == [] and len(result.skipped) == 1
    assert partition_state(store, "sequence_shards", TENANT, "S1") == "live"
    assert sum(b.num_rows for b in iter_shard_batches(store, TENANT, "S1")) == 24


def test_protected_paths_are_refused(env):
    _root, store, home = env
    plan = _plan(store, home)
    every_line = format_plan(plan)
    for rel in PROTECTED_FILES:
        assert not any(rel in line for line in every_line)
    bad = [
        Deletion(
            "sequence_shards",
            "storage",
            "raw/tenant=acme-lab/sample=S9",
            ("raw/tenant=acme-lab/sample=S9/manifest.json",),
            2,
            "x",
        ),
        Deletion(
            "sequence_shards",
            "storage",
            "shards/tenant=acme-lab/sample=S1",
            ("manifests/sequence_shards/tenant=acme-lab/sample=S1/old.json",),
            2,
            "x",
        ),
        Deletion(
            "sequence_shards",
            "storage",
            "shards/tenant=acme-lab/sample=S1",
            ("shards/tenant=acme-lab/sample=S1/../../raw/x",),
            2,
            "x",
        ),
        Deletion(
            "lancedb",
            "storage",
            "lancedb/acme-lab/tiny",
            ("lancedb/acme-lab/tiny.lance/_versions/1.manifest",),
            2,
            "x",
        ),
        Deletion(
            "sequence_shards",
            "storage",
            "shards/tenant=acme-lab/sample=S1",
            ("shards/tenant=acme-lab/sample=S1/_expired.json",),
            2,
            "x",
        ),
    ]
    for item in bad:
        with pytest.raises(ProtectedPathError):
            apply_retention(store, [item], AuditLog(store, "run-6"), policies=POLICIES, home=home)
    for rel, data in PROTECTED_FILES.items():
        assert store.read_bytes(rel) == data
    # a policy file cannot shrink the built-in protected set
    assert "raw/" in load_policies(overrides={"protected": []}).protected


def test_audit_log_is_append_only(env):
    _root, store, home = env
    plan = _plan(store, home)
    now = datetime(2026, 11, 23, tzinfo=UTC)
    first = AuditLog(store, "run-7", now)
    apply_retention(store, plan[:2], first, policies=POLICIES, home=home)
    path = Path(first.location)
    written = path.read_bytes()
    apply_retention(store, plan[2:4], first, policies=POLICIES, home=home)
    assert path.read_bytes().startswith(written)  # appended, never rewritten
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [r["target"] for r in records] == [d.target for d in plan[:4]]
    assert all(r["status"] == "deleted" and r["run_id"] == "run-7" for r in records)
    assert records[0]["files"] == list(plan[0].files) and records[0]["bytes"] == plan[0].bytes
    assert path.name == "run-7.jsonl" and path.parent.name == "2026-11-23"


def test_policies_load_and_validate(tmp_path):
    policies = load_policies(overrides="policies: {sequence_shards: {expire_after_days: 7}}")
    assert policies.get("sequence_shards")["expire_after_days"] == 7
    assert policies.get("sequence_embeddings")["expire_after_days"] == 30
    assert load_policies(overrides={"policies": {"wandb": {"enabled": False}}}).get("wandb") is None
    with pytest.raises(ValueError, match="unknown retention policy"):
        load_policies(overrides={"policies": {"raw_sequences": {"expire_after_days": 1}}})
    with pytest.raises(ValueError, match="expire_after_days"):
        load_policies(overrides={"policies": {"sequence_shards": {"expire_after_days": None}}})
    with pytest.raises(ValueError, match="tags"):
        load_policies(overrides={"policies": {"lancedb": {"tags": "ignore"}}})
    other = tmp_path / "r.yaml"
    other.write_text("policies: {}\nprices: {storage_gb_month: 1.5}\n")
    assert load_policies(other).prices == {"storage_gb_month": 1.5}


@pytest.mark.parametrize("mode", ["move", "delete"])
def test_lancedb_tags_move_or_delete(env, mode):
    root, store, home = env
    policies = load_policies(
        overrides={"policies": {"lancedb": {"cleanup_older_than_days": 0, "tags": mode}}}
    )
    plan = [d for d in _plan(store, home, policies=policies) if d.policy == "lancedb"]
    assert plan[0].versions == (1, 2, 3, 4) and plan[0].tag_actions == ((mode, "release-1", 3),)
    apply_retention(store, plan, AuditLog(store, "run-8"), policies=policies, home=home)
    table = lancedb.connect(str(root / "storage" / "lancedb" / TENANT)).open_table("tiny")
    tags = table.tags.list()
    assert tags["release-1"]["version"] >= 5 if mode == "move" else "release-1" not in tags
    assert not {1, 2, 3, 4} & set(_lance_versions(root / "storage"))
    assert table.count_rows() == 5


def test_retention_job_reports_observations(env):
    root, store, home = env
    instance = DagsterInstance.ephemeral()
    resources = {
        "storage": StorageResource(landing=str(root / "landing"), storage=store.root),
        "retention": RetentionResource(
            home=home.root,
            overrides_yaml=(
                "policies: {sequence_shards: {expire_after_days: 0}, "
                "sequence_embeddings: {expire_after_days: 0}, "
                "checkpoints: {idle_hours: 0}, lancedb: {enabled: false}, "
                "wandb: {enabled: false}}"
            ),
        ),
    }
    before = _files(root / "storage")
    dry = retention_job.execute_in_process(
        instance=instance,
        resources=resources,
        run_config={"ops": {RETENTION_OP: {"config": {"dry_run": True}}}},
    )
    assert dry.success and _files(root / "storage") == before
    # S1 shards + embeddings, 3 checkpoint steps in storage and 1 under $BIOSCAN_HOME
    assert dry.output_for_node(RETENTION_OP)["units"] == 6
    real = retention_job.execute_in_process(
        instance=instance,
        resources=resources,
        run_config={"ops": {RETENTION_OP: {"config": {"dry_run": False}}}},
    )
    assert real.success and real.output_for_node(RETENTION_OP)["applied"] == 6
    (record,) = instance.fetch_observations(AssetKey("sequence_shards"), limit=10).records
    observation = record.asset_observation
    assert record.partition_key == f"{TENANT}/S1"
    assert observation.metadata["expired"].value is True
    assert observation.metadata["retention/files"].value >= 2
    assert partition_state(store, "sequence_embeddings", TENANT, "S1", "tiny") == "expired"
    assert [r.get("run_id") for r in read_audit(store) if r] == [real.run_id] * 6


@pytest.mark.integration
def test_audit_log_on_gcs_writes_one_object_per_record(gcs_bucket):
    store = Store(f"gs://{gcs_bucket}/bioscan")
    audit = AuditLog(store, "run-9", datetime(2026, 11, 23, tzinfo=UTC))
    audit.append({"n": 1})
    audit.append({"n": 2})
    again = AuditLog(store, "run-9", datetime(2026, 11, 23, tzinfo=UTC))  # a re-run, same id
    again.append({"n": 3})
    assert store.list_files("audit") == [
        f"audit/retention/2026-11-23/run-9/{i:06d}.jsonl" for i in (1, 2, 3)
    ]
    assert [r["n"] for r in read_audit(store)] == [1, 2, 3]
    store.write_bytes("x/y.json", b"{}")
    stamp = modified_at(store, "x/y.json")
    assert stamp is not None and abs((datetime.now(UTC) - stamp).total_seconds()) < 600


def test_recording_a_rematerialised_partition_clears_its_tombstone(env):
    root, store, home = env
    plan = [d for d in _plan(store, home) if d.policy.startswith("sequence_")]
    apply_retention(store, plan, AuditLog(store, "run-10"), policies=POLICIES, home=home)
    shard_stone = f"shards/tenant={TENANT}/sample=S1/_expired.json"
    emb_folder = f"embeddings/tiny/tenant={TENANT}/sample=S1"
    assert store.exists(shard_stone) and store.exists(f"{emb_folder}/_expired.json")

    def manifest(asset, run_id, model=None):
        return provenance.build_run_manifest(asset, f"{TENANT}/S1", run_id=run_id, model=model)

    # a run manifest alone (no new partition manifest) keeps the tombstone
    record_run(store, manifest("sequence_shards", "r-0"))
    assert partition_state(store, "sequence_shards", TENANT, "S1") == "expired"
    ingest(Store(str(root / "landing")), store, TENANT, "S1", SMALL_PARTS)
    rel = record_run(store, manifest("sequence_shards", "r-1"))
    assert rel == f"manifests/sequence_shards/tenant={TENANT}/sample=S1/r-1.json"
    assert store.exists(rel) and not store.exists(shard_stone)
    assert partition_state(store, "sequence_embeddings", TENANT, "S1", "tiny") == "expired"
    # embeddings materialised again: cleared only when the manifest names the model
    stone = json.loads(store.read_bytes(f"{emb_folder}/_expired.json"))
    store.write_bytes(f"{emb_folder}/_manifest.json", json.dumps(stone["manifest"]).encode())
    record_run(store, manifest("sequence_embeddings", "r-2"))
    assert store.exists(f"{emb_folder}/_expired.json")
    record_run(store, manifest("sequence_embeddings", "r-3", model={"model_id": "tiny"}))
    assert not store.exists(f"{emb_folder}/_expired.json")
    assert partition_state(store, "sequence_embeddings", TENANT, "S1", "tiny") == "live"
