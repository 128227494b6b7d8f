"""Per-rank taxonomy metrics with abstention, split by whether the true label was seen in training.

A test sequence counts at a rank only when its true label there is known. "Seen" means the true
label occurs at that rank in the training data; "unseen" labels can never be predicted correctly,
so for them the right answer is to abstain and the report shows how often a method did.

- accuracy: correct calls / all sequences in the group (an abstention is not correct)
- precision: correct calls / calls made (accuracy where the method committed)
- coverage: calls made / all sequences (share not abstained)
- macro_f1: mean over the group's true classes of F1, where a call of class c on a sequence of
  another class is a false positive for c (only calls within the same group count)
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from bioscan_assets.core.taxonomy import RANKS

Label = str | None


def _group_metrics(truth: list[str], pred: list[Label]) -> dict[str, Any]:
    n = len(truth)
    if n == 0:
        return {"n": 0, "accuracy": None, "precision": None, "coverage": None, "macro_f1": None}
    called = [p is not None for p in pred]
    correct = [p == t for p, t in zip(pred, truth, strict=True)]
    n_called = sum(called)
    tp = Counter(t for t, ok in zip(truth, correct, strict=True) if ok)
    support = Counter(truth)
    predicted = Counter(p for p in pred if p is not None)
    f1s = []
    for label, count in support.items():
        precision = tp[label] / predicted[label] if predicted[label] else 0.0
        recall = tp[label] / count
        f1s.append(
            0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        )
    return {
        "n": n,
        "accuracy": sum(correct) / n,
        "precision": sum(correct) / n_called if n_called else None,
        "coverage": n_called / n,
        "macro_f1": float(np.mean(f1s)),
    }


def rank_metrics(
    truth: Sequence[Sequence[Label]],
    predicted: Sequence[Sequence[Label]],
    train_labels: Sequence[set[str]],
    ranks: Sequence[str] = RANKS,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{rank: {"all"|"seen"|"unseen": metrics}} for one method."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true lineages but {len(predicted)} predictions")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r, rank in enumerate(ranks):
        groups: dict[str, tuple[list[str], list[Label]]] = {
            "all": ([], []),
            "seen": ([], []),
            "unseen": ([], []),
        }
        for true, pred in zip(truth, predicted, strict=True):
            label = true[r]
            if label is None:
                continue
            group = "seen" if label in train_labels[r] else "unseen"
            for name in ("all", group):
                groups[name][0].append(label)
                groups[name][1].append(pred[r])
        out[rank] = {name: _group_metrics(t, p) for name, (t, p) in groups.items()}
        unseen = out[rank]["unseen"]
        # for unseen labels the F1 of the true classes is 0 by construction: not informative
        unseen["macro_f1"] = None
    return out


def calibration(
    truth: Sequence[Label],
    raw_predicted: Sequence[Label],
    confidence: Sequence[float],
    bins: int = 10,
) -> list[dict[str, Any]]:
    """Accuracy of the un-thresholded call per confidence bin, for sequences with a known label."""
    rows = [
        (float(c), p == t)
        for t, p, c in zip(truth, raw_predicted, confidence, strict=True)
        if t is not None and np.isfinite(c)
    ]
    out = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    for lo, hi in itertools.pairwise(edges):
        inside = [ok for c, ok in rows if lo <= c < hi or (hi == 1.0 and c == 1.0)]
        out.append(
            {
                "lo": round(float(lo), 3),
                "hi": round(float(hi), 3),
                "n": len(inside),
                "accuracy": (sum(inside) / len(inside)) if inside else None,
            }
        )
    return out


def confusion(truth: Sequence[Label], predicted: Sequence[Label], top: int = 12) -> dict[str, Any]:
    """Counts among the `top` most frequent true labels; other calls go to 'other', none to 'abstained'."""
    known = [(t, p) for t, p in zip(truth, predicted, strict=True) if t is not None]
    labels = [label for label, _ in Counter(t for t, _ in known).most_common(top)]
    columns = [*labels, "other", "abstained"]
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(columns)), dtype=int)
    for t, p in known:
        if t not in index:
            continue
        col = len(columns) - 1 if p is None else index.get(p, len(labels))
        matrix[index[t], col] += 1
    return {"rows": labels, "columns": columns, "counts": matrix.tolist()}


def method_report(
    label: str,
    description: str,
    truth: Sequence[Sequence[Label]],
    predicted: Sequence[Sequence[Label]],
    raw_predicted: Sequence[Sequence[Label]],
    confidence: np.ndarray,
    train_labels: Sequence[set[str]],
    ranks: Sequence[str] = RANKS,
) -> dict[str, Any]:
    """Everything the report shows for one method, JSON-able."""
    confidence = np.asarray(confidence, dtype=float)
    genus = list(ranks).index("genus") if "genus" in ranks else len(ranks) - 1
    return {
        "label": label,
        "description": description,
        "metrics": rank_metrics(truth, predicted, train_labels, ranks),
        "calibration": {
            rank: calibration(
                [t[r] for t in truth], [p[r] for p in raw_predicted], confidence[:, r]
            )
            for r, rank in enumerate(ranks)
        },
        "confusion_genus": confusion([t[genus] for t in truth], [p[genus] for p in predicted]),
    }
