"""One taxonomy call per shard row: a label and a confidence at each of the seven ranks.

Abstaining at a rank leaves it and every rank below it empty (null). Each distinct sequence is
classified once per sample and its call reused for its duplicates: the classifiers' calls do
not depend on the batch (see `kmer_nb`), so this changes nothing but the time taken. A tenant
without references still gets a row per read, with status "no reference available".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from bioscan_assets.core.taxonomy import RANK_PREFIXES, RANKS

ASSIGNED = "assigned"
UNASSIGNED = "unassigned"
NO_REFERENCE = "no reference available"
NO_METHOD = "none"

CALLS_SCHEMA = pa.schema(
    [pa.field("sequence_id", pa.string(), nullable=False)]
    + [pa.field(rank, pa.string()) for rank in RANKS]
    + [pa.field(f"{rank}_confidence", pa.float32()) for rank in RANKS]
    + [
        pa.field("taxon", pa.string(), nullable=False),  # QIIME 2 form, or "Unassigned"
        pa.field("confidence", pa.float32(), nullable=False),  # at the deepest called rank
        pa.field("deepest_rank", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("reverse_strand", pa.bool_(), nullable=False),
    ]
)


class Prediction(Protocol):
    labels: list[tuple[str | None, ...]]
    confidence: np.ndarray
    reversed: np.ndarray


class Classifier(Protocol):
    """What the calls need of a fitted classifier (`classify.calibrated.CalibratedNB` is one)."""

    method: str

    def predict(self, sequences: Sequence[str]) -> Prediction: ...

    def describe(self) -> dict[str, Any]: ...


def qiime_taxon(labels: Sequence[str | None]) -> str:
    """`k__A; p__B; ...` down to the deepest called rank; "Unassigned" when none is."""
    called = []
    for prefix, label in zip(RANK_PREFIXES, labels, strict=False):
        if label is None:
            break
        called.append(f"{prefix}__{label}")
    return "; ".join(called) if called else "Unassigned"


def _row(labels: Sequence[str | None], confidence: Sequence[float], reverse: bool) -> tuple:
    kept: list[str | None] = []
    for label in labels:
        if label is None or (kept and kept[-1] is None):
            kept.append(None)
        else:
            kept.append(label)
    depth = sum(label is not None for label in kept)
    conf = [float(c) for c in confidence]
    deepest = conf[depth - 1] if depth else conf[0]
    status = ASSIGNED if depth else UNASSIGNED
    return (
        tuple(kept),
        tuple(conf),
        qiime_taxon(kept),
        deepest,
        RANKS[depth - 1] if depth else None,
        status,
        bool(reverse),
    )


class CallCache:
    """Calls of the distinct sequences seen so far in a sample (bounded; only speed depends on it)."""

    def __init__(self, classifier: Classifier | None, max_entries: int = 500_000):
        self.classifier = classifier
        self.max_entries = max_entries
        self._calls: dict[str, tuple] = {}
        self.classified = 0

    def calls(self, sequences: Sequence[str]) -> list[tuple]:
        if self.classifier is None:
            empty = (None,) * len(RANKS)
            zeros = (0.0,) * len(RANKS)
            return [(empty, zeros, "Unassigned", 0.0, None, NO_REFERENCE, False)] * len(sequences)
        todo = sorted({s for s in sequences if s not in self._calls})
        if todo:
            prediction = self.classifier.predict(todo)
            self.classified += len(todo)
            if len(self._calls) + len(todo) > self.max_entries:
                self._calls.clear()
            for q, sequence in enumerate(todo):
                self._calls[sequence] = _row(
                    prediction.labels[q], prediction.confidence[q], prediction.reversed[q]
                )
            fresh = {s: self._calls[s] for s in todo}
        else:
            fresh = {}
        return [fresh.get(s) or self._calls[s] for s in sequences]


def call_table(sequence_ids: Sequence[str], sequences: Sequence[str], cache: CallCache) -> pa.Table:
    """The calls of one batch of shard rows, as a table of `CALLS_SCHEMA`."""
    rows = cache.calls(sequences)
    method = cache.classifier.method if cache.classifier is not None else NO_METHOD
    columns: dict[str, list] = {"sequence_id": list(sequence_ids)}
    for r, rank in enumerate(RANKS):
        columns[rank] = [row[0][r] for row in rows]
    for r, rank in enumerate(RANKS):
        columns[f"{rank}_confidence"] = [row[1][r] for row in rows]
    for position, name in enumerate(
        ("taxon", "confidence", "deepest_rank", "status", "reverse_strand"), start=2
    ):
        columns[name] = [row[position] for row in rows]
    columns["method"] = [method] * len(rows)
    return pa.Table.from_pydict(columns, schema=CALLS_SCHEMA)
