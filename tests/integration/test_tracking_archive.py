"""W&B runs outlive their pod: an offline run folder is copied to `<storage>/wandb/<run>/` (so
`wandb sync` can upload it later) and an online run's page is linked from the materialisation.
Both run W&B in offline mode; the online case only pretends to W&B's client to be online."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wandb
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.tracking import WandbResource
from dagster import DagsterInstance, Definitions

from bioscan_assets.assets.tune import tune_and_evaluate, tune_assets, tune_checks
from bioscan_assets.core.layout import wandb_run_archive
from bioscan_assets.core.storage import Store
from tests.pipeline_helpers import embedded_reference
from tests.wandb_offline import read_offline_run

pytestmark = [pytest.mark.integration]
ONLINE_URL = "https://wandb.ai/acme/bioscan/runs/abc123"


@pytest.fixture
def offline_env(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


class _OnlineLooking:
    """A real offline run that answers like an online one (W&B has no local online server)."""

    def __init__(self, run):
        self._run = run
        self.url = ONLINE_URL

    def __getattr__(self, name):
        return getattr(self._run, name)


@pytest.fixture
def online_env(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    real_init = wandb.init
    seen = []

    def init(*args, **kwargs):
        seen.append(kwargs["mode"])
        return _OnlineLooking(real_init(*args, **{**kwargs, "mode": "offline"}))

    monkeypatch.setattr(wandb, "init", init)
    return seen


def _stored_runs(store: Store) -> list[str]:
    return sorted({rel.split("/")[1] for rel in store.list_files("wandb")})


def test_offline_run_is_copied_to_storage(tmp_path, offline_env):
    store = Store(str(tmp_path / "storage"))
    tracking = WandbResource(directory=str(tmp_path / "home" / "wandb"))
    with tracking.start("tune-x", "tune", {"lr": 0.1}, archive=store) as run:
        for step in range(3):
            run.log({"train/loss": 1.0 / (step + 1)}, step=step)
    name = Path(run.dir).name
    assert name.startswith("offline-run-")
    assert _stored_runs(store) == [name]
    assert run.archived == store.url(wandb_run_archive(name))

    # the stored copy is a complete run folder: what `wandb sync` uploads
    copy = read_offline_run(store.local_path(wandb_run_archive(name)))
    assert [row["train/loss"] for row in copy["history"]] == pytest.approx([1.0, 0.5, 1 / 3])
    assert copy["config"]["lr"] == 0.1

    meta = run.metadata()
    assert "wandb_url" not in meta
    assert meta["wandb_offline_run"].value == run.archived
    assert meta["wandb_sync"].value == f"wandb sync {run.archived}"


def test_failed_offline_run_is_copied_too(tmp_path, offline_env):
    store = Store(str(tmp_path / "storage"))
    tracking = WandbResource(directory=str(tmp_path / "home" / "wandb"))
    with (
        pytest.raises(RuntimeError, match="diverged"),
        tracking.start("tune-x", "tune", {}, archive=store) as run,
    ):
        run.log({"train/loss": 9.0}, step=0)
        raise RuntimeError("loss diverged")
    name = Path(run.dir).name
    assert _stored_runs(store) == [name]
    assert read_offline_run(store.local_path(wandb_run_archive(name)))["history"]


def test_offline_run_is_copied_to_gcs(tmp_path, offline_env, gcs_bucket):
    store = Store(f"gs://{gcs_bucket}/storage")
    tracking = WandbResource(directory=str(tmp_path / "home" / "wandb"))
    with tracking.start("tune-x", "tune", {}, archive=store) as run:
        run.log({"train/loss": 1.0}, step=0)
    name = Path(run.dir).name
    local = sorted(  # debug-core.log links to W&B's service log outside the run: not copied
        p.relative_to(run.dir).as_posix()
        for p in Path(run.dir).rglob("*")
        if p.is_file() and not p.is_symlink()
    )
    stored = store.list_files(wandb_run_archive(name))
    assert [rel.split(f"{name}/", 1)[1] for rel in sorted(stored)] == local
    assert f"run-{run.id}.wandb" in local
    command = run.metadata()["wandb_sync"].value
    assert command == f"gcloud storage cp -r {run.archived} . && wandb sync {name}"


def test_online_run_links_its_page_and_copies_nothing(tmp_path, online_env):
    store = Store(str(tmp_path / "storage"))
    tracking = WandbResource(directory=str(tmp_path / "home" / "wandb"))
    with tracking.start("tune-x", "tune", {}, archive=store) as run:
        run.log({"train/loss": 1.0}, step=0)
    assert online_env == ["online"]  # the key made it online
    assert run.mode == "online" and run.archived is None
    assert store.list_files("wandb") == []
    meta = run.metadata()
    assert meta["wandb_url"].value == ONLINE_URL and type(meta["wandb_url"]).__name__ == (
        "UrlMetadataValue"
    )
    assert "wandb_offline_run" not in meta


def test_online_without_key_falls_back_to_a_stored_offline_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    store = Store(str(tmp_path / "storage"))
    tracking = WandbResource(directory=str(tmp_path / "home" / "wandb"))
    with tracking.start("tune-x", "tune", {}, archive=store) as run:
        run.log({"train/loss": 1.0}, step=0)
    assert run.mode == "offline"
    assert _stored_runs(store) == [Path(run.dir).name]


def test_archive_path_refuses_other_names():
    assert wandb_run_archive("offline-run-20260101_120000-ab12") == (
        "wandb/offline-run-20260101_120000-ab12"
    )
    for bad in ("..", "offline-run-x/../../etc", "latest-run", ""):
        with pytest.raises(ValueError):
            wandb_run_archive(bad)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["offline", "online"])
def test_lora_adapter_materialisation_says_where_its_run_is(tmp_path, mode, request):
    request.getfixturevalue(f"{mode}_env")
    landing, store = embedded_reference(tmp_path, per_genus=3)
    defs = Definitions(
        assets=tune_assets,
        asset_checks=tune_checks,
        jobs=[tune_and_evaluate],
        resources={
            "storage": StorageResource(landing=landing.root, storage=store.root),
            "accelerator": AcceleratorResource(
                model="tiny", compilation_cache=str(tmp_path / "jax-cache")
            ),
            "tracking": WandbResource(directory=str(tmp_path / "home" / "wandb")),
        },
    )
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("samples", ["lab-a/REF-1"])
        result = defs.resolve_job_def("tune_and_evaluate").execute_in_process(
            instance=instance,
            asset_selection=[tune_assets[0].key],
            run_config={"ops": {"lora_adapter": {"config": {"steps": 2, "crop_tokens": 32}}}},
        )
    assert result.success
    meta = result.asset_materializations_for_node("lora_adapter")[0].metadata
    if mode == "online":
        assert meta["wandb_url"].value == ONLINE_URL
        assert "wandb_offline_run" not in meta and store.list_files("wandb") == []
        return
    assert "wandb_url" not in meta
    stored = meta["wandb_offline_run"].value
    name = stored.rsplit("/", 1)[-1]
    assert stored == store.url(wandb_run_archive(name))
    copy = read_offline_run(store.local_path(wandb_run_archive(name)))
    assert copy["run"]["job_type"] == "tune"
    assert len([row for row in copy["history"] if "train/loss" in row]) == 2
    assert json.dumps(copy["artifacts"][0]["files"])  # the adapter artefact went with it
