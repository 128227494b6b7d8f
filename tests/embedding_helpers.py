"""A stand-in for the embedding executor, for tests of what is computed rather than how.

`FakeExecutor.embed` gives each sequence a vector derived from its bytes (the same sequence
always gets the same vector, whatever batch it comes in) and records every sequence it was
asked for, so a test can count forward passes exactly without JAX.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from bioscan_assets.core.embedding.compute import EmbedStats
from bioscan_assets.core.storage import Store
from tests.helpers import write_drop
from tests.pipeline_helpers import ingest


def fake_vector(sequence: str, dim: int = 8) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(sequence.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


@dataclass
class FakeExecutor:
    model_id: str = "fake"
    weights_hash: str = "f0" * 32
    dim: int = 8
    delay_s: float = 0.0  # per embed() call: lets two runs overlap in time
    fail_after_calls: int | None = None  # raise on this call: a run killed mid-partition
    computed: list[str] = field(default_factory=list)
    stats: EmbedStats = field(default_factory=EmbedStats)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model(self) -> SimpleNamespace:
        return SimpleNamespace(
            model_id=self.model_id,
            weights_hash=self.weights_hash,
            pretrained=False,
            config=SimpleNamespace(hidden_size=self.dim),
        )

    def embed(self, sequences: list[str]) -> np.ndarray:
        with self._lock:
            calls = getattr(self, "_calls", 0) + 1
            self._calls = calls
        if self.fail_after_calls is not None and calls > self.fail_after_calls:
            raise KeyboardInterrupt("simulated kill")
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.computed.extend(sequences)
        self.stats.sequences += len(sequences)
        return np.stack([fake_vector(s, self.dim) for s in sequences])


def make_sample(root, store: Store, tenant: str, sample_id: str, sequences: dict[str, str]) -> dict:
    """A lab drop of these reads, copied and sharded into `store`; returns the shard manifest."""
    landing = root / "landing"
    write_drop(landing, tenant, sample_id, sequences=sequences)
    return ingest(Store(str(landing)), store, tenant, sample_id)
