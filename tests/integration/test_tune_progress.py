"""`tune_and_evaluate` as an operator follows it: progress lines in the Dagster event log while
lora_adapter trains, its loss history beside the adapter, and the curves in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.tracking import WandbResource
from dagster import DagsterInstance, Definitions

from bioscan_assets.assets.tune import tune_and_evaluate, tune_assets, tune_checks
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.progress import LOSSES_FILE
from tests.pipeline_helpers import embedded_reference

pytestmark = [pytest.mark.integration]
REF = "lab-a/REF-1"
STEPS, EVERY = 6, 2


@pytest.mark.slow
def test_training_progress_is_logged_and_plotted(tmp_path):
    landing, store = embedded_reference(tmp_path, per_genus=4)
    defs = Definitions(
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
    run_config = {
        "ops": {
            "lora_adapter": {
                "config": {"steps": STEPS, "crop_tokens": 32, "log_every_steps": EVERY}
            },
            "evaluation_report": {"config": {"nb_bootstrap": 10}},
        }
    }
    with DagsterInstance.local_temp() as instance:
        instance.add_dynamic_partitions("samples", [REF])
        result = defs.resolve_job_def("tune_and_evaluate").execute_in_process(
            instance=instance, run_config=run_config
        )
        assert result.success
        # what the UI's event log shows for the step, read back from the instance
        lines = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.step_key == "lora_adapter" and entry.user_message.startswith("step ")
        ]
    assert [line.split(" ")[1] for line in lines] == ["1/6", "2/6", "4/6", "6/6"]
    for line in lines:
        assert "loss " in line and " lr " in line and " seq/s" in line and " tok/s" in line
        assert all(f"{rank} " in line for rank in RANKS)
    assert "ETA " in lines[1] and lines[-1].endswith("done")

    adapter = result.asset_materializations_for_node("lora_adapter")[0].metadata
    folder = adapter["adapter_path"].value
    assert adapter["loss_history"].value == store.url(f"{folder}/{LOSSES_FILE}")
    losses = json.loads(store.read_bytes(f"{folder}/{LOSSES_FILE}"))
    assert losses["steps"] == list(range(1, STEPS + 1))
    assert set(losses["loss_per_rank"]) == set(RANKS)
    assert losses["loss"][-1] == pytest.approx(adapter["final_loss"].value)

    report = result.asset_materializations_for_node("evaluation_report")[0].metadata
    html = Path(report["report"].value).read_text()
    section = html[html.index("<h2>Training curves</h2>") :]
    assert f"Steps 1 to {STEPS}" in section and "<svg" in section
    assert f"<td>{losses['loss'][-1]:.4f}</td>" in section
