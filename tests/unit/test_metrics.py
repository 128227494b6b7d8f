import json

import numpy as np
import pytest

from bioscan_assets.core.evaluation.metrics import (
    calibration,
    confusion,
    method_report,
    rank_metrics,
)
from bioscan_assets.core.evaluation.report import write_report
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS


def _lin(genus, kingdom="Bacteria"):
    return (kingdom, "P", "C", "O", "F", genus, None)


def test_rank_metrics_by_hand():
    truth = [_lin("A"), _lin("A"), _lin("B"), _lin("Z"), _lin(None)]
    pred = [_lin("A"), _lin("B"), _lin(None), _lin("A"), _lin("A")]
    train = [{"Bacteria"}, {"P"}, {"C"}, {"O"}, {"F"}, {"A", "B"}, set()]
    out = rank_metrics(truth, pred, train)["genus"]
    # seen: A->A (ok), A->B (wrong), B->abstain; unseen: Z->A (wrong call); None truth skipped
    assert out["seen"]["n"] == 3
    assert out["seen"]["accuracy"] == pytest.approx(1 / 3)
    assert out["seen"]["precision"] == pytest.approx(1 / 2)
    assert out["seen"]["coverage"] == pytest.approx(2 / 3)
    # F1(A): precision 1/1, recall 1/2 -> 2/3; F1(B): 0 -> macro 1/3
    assert out["seen"]["macro_f1"] == pytest.approx(1 / 3)
    assert out["unseen"]["n"] == 1
    assert out["unseen"]["accuracy"] == 0.0
    assert out["unseen"]["coverage"] == 1.0
    assert out["unseen"]["macro_f1"] is None
    assert out["all"]["n"] == 4
    # species unknown everywhere: nothing to count
    assert rank_metrics(truth, pred, train)["species"]["all"]["n"] == 0


def test_rank_metrics_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="predictions"):
        rank_metrics([_lin("A")], [], [set()] * 7)


def test_calibration_and_confusion():
    bins = calibration(["a", "a", "b", None], ["a", "b", "b", "a"], [0.95, 0.91, 0.15, 0.99], 10)
    top = bins[-1]
    assert top["n"] == 2 and top["accuracy"] == 0.5  # None truth left out
    assert bins[1]["n"] == 1 and bins[1]["accuracy"] == 1.0
    conf = confusion(["a", "a", "b", "c"], ["a", None, "a", "q"], top=2)
    assert conf["rows"] == ["a", "b"]
    assert conf["columns"] == ["a", "b", "other", "abstained"]
    assert conf["counts"] == [[1, 0, 0, 1], [1, 0, 0, 0]]


def _evaluation():
    truth = [_lin("A"), _lin("B"), _lin("Z")]
    train = [{"Bacteria"}, {"P"}, {"C"}, {"O"}, {"F"}, {"A", "B"}, set()]
    conf = np.full((3, 7), 0.9)
    methods = {
        name: method_report(name.upper(), "test method", truth, pred, pred, conf, train)
        for name, pred in (
            ("lora", [_lin("A"), _lin("A"), _lin(None)]),
            ("knn", [_lin("A"), _lin("B"), _lin("A")]),
        )
    }
    return {
        "title": "unit",
        "model": {"model_id": "tiny", "pretrained": False, "weights_hash": "ab" * 32},
        "adapter": {"version": "v1"},
        "test": {"n": 3, "seen_genus": 2, "unseen_genus": 1, "unseen_genera": 1},
        "train": {"n": 10},
        "methods": methods,
        "notes": ["a note"],
    }


def test_report_files_say_the_model_is_not_pretrained(tmp_path):
    store = Store(str(tmp_path))
    paths = write_report(store, "manifests/evaluation_report/_global/run1", _evaluation())
    html = store.read_bytes(paths["html"]).decode()
    summary = store.read_bytes(paths["summary"]).decode()
    metrics = json.loads(store.read_bytes(paths["metrics"]))
    assert "NOT pretrained" in html and "NOT pretrained" in summary
    assert html.count("<svg") >= 3  # accuracy, confusion, calibration
    assert metrics["methods"]["knn"]["metrics"]["genus"]["seen"]["accuracy"] == 1.0
    # the Markdown table has one line per rank with both methods' seen accuracy
    genus_line = next(line for line in summary.splitlines() if line.startswith("| genus"))
    assert "50.0" in genus_line and "100.0" in genus_line
    assert all(f"| {rank} |" in summary for rank in RANKS)


def test_report_of_a_pretrained_model_has_no_warning(tmp_path):
    evaluation = _evaluation()
    evaluation["model"]["pretrained"] = True
    paths = write_report(Store(str(tmp_path)), "r", evaluation)
    assert "NOT pretrained" not in (tmp_path / paths["html"]).read_text()
