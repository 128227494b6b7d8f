"""Training progress people can follow: a line every N steps (step, loss per rank, learning rate,
throughput, ETA) and the loss history kept beside the adapter, which the report plots.

`ProgressLog` has the `on_metrics(record, step)` signature of `train_classifier`, so the caller
decides where lines go (the Dagster event log, a terminal) and the loop stays unaware of them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS

LOSSES_FILE = "losses.json"  # beside adapter.json in the adapter's folder
LOSSES_FORMAT = "bioscan-loss-history/1"
TARGET_LINES = 10  # lines per run when no interval is configured

OnMetrics = Callable[[dict[str, float], int], None]


def log_interval(total_steps: int, every: int = 0) -> int:
    """`every` when set (> 0), else the interval that gives about TARGET_LINES lines."""
    return every if every > 0 else max(1, round(total_steps / TARGET_LINES))


def _duration(seconds: float) -> str:
    return str(dt.timedelta(seconds=round(max(seconds, 0.0))))


class ProgressLog:
    """Says one line at the first step, every `every` steps, and at the last step.

    Throughput is the mean of the steps since the previous line; the ETA is the remaining steps
    times the mean step time so far, leaving out the first step (it includes compilation).
    """

    def __init__(
        self,
        total_steps: int,
        every: int = 0,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total = total_steps
        self.every = log_interval(total_steps, every)
        self.say = say
        self.clock = clock
        self.lines = 0
        self._first_at: float | None = None  # when the first step seen finished
        self._first_step = 0
        self._window: list[Mapping[str, float]] = []

    def __call__(self, record: Mapping[str, float], step: int) -> None:
        now = self.clock()
        self._window.append(record)
        if self._first_at is None:
            self._first_at, self._first_step = now, step
            self._line(record, step, eta=None)
            return
        if step % self.every == 0 or step >= self.total:
            timed = step - self._first_step
            eta = (now - self._first_at) / timed * (self.total - step) if timed else None
            self._line(record, step, eta)

    def chain(self, then: OnMetrics) -> OnMetrics:
        """One `on_metrics` callback that logs progress, then calls `then` (e.g. W&B)."""

        def both(record: dict[str, float], step: int) -> None:
            self(record, step)
            then(record, step)

        return both

    def _line(self, record: Mapping[str, float], step: int, eta: float | None) -> None:
        window, self._window = self._window, []
        seqs = sum(r.get("sequences_per_s", 0.0) for r in window) / len(window)
        tokens = sum(r.get("tokens_per_s", 0.0) for r in window) / len(window)
        ranks = " ".join(
            f"{rank} {record[f'loss_{rank}']:.3f}" for rank in RANKS if f"loss_{rank}" in record
        )
        if eta is None:
            when = "first step (includes compilation)"
        elif step >= self.total:
            when = "done"
        else:
            when = f"ETA {_duration(eta)}"
        self.say(
            f"step {step}/{self.total} ({100 * step / max(self.total, 1):.0f}%): "
            f"loss {record.get('loss', math.nan):.4f} [{ranks}] | "
            f"lr {record.get('learning_rate', math.nan):.2e} | "
            f"{seqs:.1f} seq/s, {tokens:,.0f} tok/s | {when}"
        )
        self.lines += 1


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def loss_history(history: Sequence[Mapping[str, float]], first_step: int = 1) -> dict[str, Any]:
    """The curves of a run's steps; `first_step` is the step of `history[0]` (1 unless resumed)."""

    def column(name: str) -> list[float | None]:
        return [_finite(r[name]) if name in r else None for r in history]

    return {
        "format": LOSSES_FORMAT,
        "first_step": first_step,
        "steps": list(range(first_step, first_step + len(history))),
        "loss": column("loss"),
        "learning_rate": column("learning_rate"),
        "loss_per_rank": {rank: column(f"loss_{rank}") for rank in RANKS},
    }


def write_loss_history(store: Store, folder: str, doc: Mapping[str, Any]) -> str:
    """Write `losses.json` into the adapter's folder; its path."""
    path = f"{folder.rstrip('/')}/{LOSSES_FILE}"
    store.write_bytes(path, json.dumps(doc, sort_keys=True).encode())
    return path


def read_loss_history(store: Store, folder: str) -> dict[str, Any] | None:
    """The adapter's loss history, or None for adapters saved before it was kept."""
    try:
        doc = json.loads(store.read_bytes(f"{folder.rstrip('/')}/{LOSSES_FILE}"))
    except FileNotFoundError:
        return None
    return doc if doc.get("format") == LOSSES_FORMAT else None
