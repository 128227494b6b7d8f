"""Tuning progress lines (step, loss per rank, learning rate, throughput, ETA), the loss history
kept beside the adapter, and the report's training curves drawn from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bioscan_assets.core.evaluation.metrics import method_report
from bioscan_assets.core.evaluation.report import render_html, write_report
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.core.tuning.progress import (
    LOSSES_FILE,
    ProgressLog,
    log_interval,
    loss_history,
    read_loss_history,
    write_loss_history,
)


def _record(step: int) -> dict[str, float]:
    return {
        "loss": 3.0 / step,
        "learning_rate": 1e-3,
        "grad_norm": 1.0,
        "sequences_per_s": 8.0,
        "tokens_per_s": 512.0,
        **{f"loss_{rank}": (i + 1) / step for i, rank in enumerate(RANKS)},
    }


class Clock:
    """The first step takes 10 s (compilation), every later one 1 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def step(self, first: bool) -> None:
        self.now += 10.0 if first else 1.0

    def __call__(self) -> float:
        return self.now


def _train(total: int, every: int = 0, start: int = 0) -> list[str]:
    lines: list[str] = []
    clock = Clock()
    progress = ProgressLog(total, every, lines.append, clock=clock)
    for done in range(start + 1, total + 1):
        clock.step(first=done == start + 1)
        progress(_record(done), done)
    assert progress.lines == len(lines)
    return lines


def test_interval_gives_about_ten_lines_unless_set():
    assert log_interval(16) == 2 and log_interval(1000) == 100
    assert log_interval(5) == 1 and log_interval(1) == 1
    assert log_interval(16, every=5) == 5


def test_the_demo_run_logs_about_ten_lines_with_every_field():
    lines = _train(16)  # the demo's 16 steps
    assert 8 <= len(lines) <= 12
    assert [line.split(":")[0] for line in lines[:3]] == [
        "step 1/16 (6%)",
        "step 2/16 (12%)",
        "step 4/16 (25%)",
    ]
    assert "first step (includes compilation)" in lines[0]
    assert lines[-1].startswith("step 16/16 (100%)") and lines[-1].endswith("done")
    fourth = lines[2]
    assert "loss 0.7500" in fourth and "lr 1.00e-03" in fourth
    assert all(f"{rank} " in fourth for rank in RANKS)
    assert "genus 1.500" in fourth  # the per-rank loss of that step
    assert "8.0 seq/s, 512 tok/s" in fourth
    # 3 timed steps took 3 s (the compiling first one left out): 12 steps to go
    assert fourth.endswith("ETA 0:00:12")


def test_a_configured_interval_and_a_resumed_run():
    assert len(_train(30, every=10)) == 4  # 1 (first), 10, 20, 30
    resumed = _train(16, start=10)
    assert resumed[0].startswith("step 11/16") and "compilation" in resumed[0]
    assert [line.split(" ")[1] for line in resumed] == ["11/16", "12/16", "14/16", "16/16"]


def test_chain_logs_then_forwards():
    lines, forwarded = [], []
    callback = ProgressLog(4, say=lines.append).chain(lambda r, s: forwarded.append(s))
    for step in range(1, 5):
        callback(_record(step), step)
    assert forwarded == [1, 2, 3, 4] and len(lines) == 4


def test_loss_history_round_trip(tmp_path):
    store = Store(str(tmp_path))
    history = [_record(step) for step in (1, 2, 3)]
    history[1]["loss_species"] = float("nan")
    doc = loss_history(history, first_step=5)
    assert doc["steps"] == [5, 6, 7]
    assert doc["loss"] == pytest.approx([3.0, 1.5, 1.0])
    assert doc["loss_per_rank"]["species"][1] is None  # NaN is not JSON
    path = write_loss_history(store, "adapters/tiny/v1", doc)
    assert path == f"adapters/tiny/v1/{LOSSES_FILE}"
    json.loads((tmp_path / path).read_text())  # strict JSON
    assert read_loss_history(store, "adapters/tiny/v1") == doc
    assert read_loss_history(store, "adapters/tiny/none") is None
    store.write_bytes(f"adapters/tiny/v2/{LOSSES_FILE}", b'{"format": "other"}')
    assert read_loss_history(store, "adapters/tiny/v2") is None


def _evaluation(adapter_path: str | None = None) -> dict:
    lineage = ("Bacteria", "P", "C", "O", "F", "A", None)
    train = [{v} if v else set() for v in lineage]
    conf = np.full((1, 7), 0.9)
    report = method_report("LoRA", "unit", [lineage], [lineage], [lineage], conf, train)
    return {
        "title": "unit",
        "model": {"model_id": "tiny", "pretrained": True, "weights_hash": "0" * 64},
        "adapter": {"version": "v1", **({"path": adapter_path} if adapter_path else {})},
        "test": {"n": 1, "seen_genus": 1, "unseen_genus": 0, "unseen_genera": 0},
        "train": {"n": 1},
        "methods": {"lora": report},
    }


def test_the_report_shows_the_adapters_loss_curves(tmp_path):
    store = Store(str(tmp_path))
    history = [_record(step) for step in range(1, 11)]
    write_loss_history(store, "adapters/tiny/v1", loss_history(history))
    with_curves = store.read_bytes(
        write_report(store, "report", _evaluation("adapters/tiny/v1"))["html"]
    ).decode()
    without = render_html(_evaluation(), "summary")

    assert "<h2>Training curves</h2>" in with_curves and "Steps 1 to 10" in with_curves
    assert with_curves.count("<svg") == without.count("<svg") + 1
    section = with_curves[with_curves.index("Training curves") :]
    assert "<td>weighted total</td><td>3.0000</td><td>0.3000</td><td>0.3000</td>" in section
    assert all(f"<td>{rank}</td>" in section for rank in RANKS)
    assert "resumed" not in section
    assert "kept no loss history" in without


def test_a_resumed_run_says_where_its_curve_starts():
    doc = loss_history([_record(step) for step in range(11, 17)], first_step=11)
    page = render_html(_evaluation(), "summary", doc)
    assert "Steps 11 to 16" in page and "resumed from a checkpoint at step 10" in page
