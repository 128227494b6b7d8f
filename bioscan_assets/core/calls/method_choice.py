"""Which classifier makes the calls: the one the latest evaluation ranks best at genus.

Candidates are the methods of the evaluation's metrics.json; LoRA only counts when the
`no_regression` check passed on that evaluation (the check guards LoRA alone). Ranked by
accuracy on seen genera, then by the lower call rate on unseen genera. Without an
evaluation the naive Bayes is used. All three methods can call; a method the calls do not
know (a newer evaluation's) falls back to the naive Bayes, and the metadata says plainly
which method was preferred and which one was used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT = "kmer_nb"
CALLABLE = frozenset({"kmer_nb", "knn", "lora"})
GUARDED = frozenset({"lora"})  # methods that need a passing no_regression check


def choose_method(
    metrics: Mapping[str, Any] | None, no_regression_passed: bool | None
) -> dict[str, Any]:
    """{"preferred", "used", "reason", "ranking"} from an evaluation's metrics.json (or None)."""
    if not metrics or not metrics.get("methods"):
        return {"preferred": DEFAULT, "used": DEFAULT, "reason": "no evaluation yet", "ranking": []}
    ranking = []
    for name, method in metrics["methods"].items():
        if name in GUARDED and not no_regression_passed:
            continue
        genus = method["metrics"]["genus"]
        accuracy = genus["seen"].get("accuracy")
        unseen = genus["unseen"].get("coverage")
        if accuracy is None:
            continue
        ranking.append((name, float(accuracy), 1.0 if unseen is None else float(unseen)))
    ranking.sort(key=lambda item: (-item[1], item[2], item[0]))
    preferred = ranking[0][0] if ranking else DEFAULT
    used = preferred if preferred in CALLABLE else DEFAULT
    reason = (
        f"best genus accuracy on seen genera ({preferred})"
        if used == preferred
        else f"evaluation prefers {preferred}, whose calls are not implemented: {used} calls"
    )
    return {
        "preferred": preferred,
        "used": used,
        "reason": reason,
        "ranking": [
            {"method": n, "genus_accuracy_seen": a, "genus_coverage_unseen": u}
            for n, a, u in ranking
        ],
    }
