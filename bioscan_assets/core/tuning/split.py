"""The train / test split: whole genera held out (unseen) plus a share of the rest (seen).

The split is recorded beside the adapter (`split.json`) so evaluation tests on exactly the
sequences the adapter never trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS

UNSEEN_GENUS_FRACTION = 0.15
TEST_FRACTION = 0.15


@dataclass
class Split:
    """Which ids train and which test; unseen-genus test ids belong to genera held out entirely."""

    seed: int
    train: list[str]
    test_seen: list[str]
    test_unseen: list[str]
    unseen_genera: list[str]

    @property
    def test(self) -> list[str]:
        return self.test_seen + self.test_unseen

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"digest": self.digest()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Split:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def digest(self) -> str:
        text = json.dumps(
            [self.seed, self.train, self.test_seen, self.test_unseen], separators=(",", ":")
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "test_seen_genus": len(self.test_seen),
            "test_unseen_genus": len(self.test_unseen),
            "unseen_genera": len(self.unseen_genera),
        }


def make_split(
    ids: Sequence[str],
    lineages: Sequence[Sequence[str | None]],
    seed: int,
    *,
    unseen_genus_fraction: float = UNSEEN_GENUS_FRACTION,
    test_fraction: float = TEST_FRACTION,
    max_test: int | None = None,
) -> Split:
    """Deterministic in (ids, labels, seed), whatever the input order.

    A share of the genera goes to test whole (unseen genera); of the other sequences, a share
    goes to test as long as each genus keeps at least one training sequence (seen genera).
    Sequences without a genus label train. `max_test` caps each test group (benchmarks).
    """
    if len(ids) != len(lineages):
        raise ValueError(f"{len(ids)} ids but {len(lineages)} lineages")
    if len(set(ids)) != len(ids):
        raise ValueError("sequence ids must be unique across the reference samples")
    genus_rank = RANKS.index("genus")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    genus_of = {ids[i]: lineages[i][genus_rank] for i in order}
    genera = sorted({g for g in genus_of.values() if g is not None})
    rng = np.random.default_rng([seed, 0x5B17])
    n_unseen = round(unseen_genus_fraction * len(genera))
    if unseen_genus_fraction > 0 and len(genera) >= 2:
        n_unseen = min(max(n_unseen, 1), len(genera) - 1)
    else:
        n_unseen = 0
    unseen = set(rng.choice(genera, size=n_unseen, replace=False).tolist()) if n_unseen else set()
    ordered = [ids[i] for i in order]
    test_unseen = [i for i in ordered if genus_of[i] in unseen]
    rest = [i for i in ordered if genus_of[i] not in unseen]
    remaining: dict[str | None, int] = {}
    for i in rest:
        remaining[genus_of[i]] = remaining.get(genus_of[i], 0) + 1
    want = round(test_fraction * len(rest))
    if max_test is not None:
        want = min(want, max_test)
        if len(test_unseen) > max_test:
            test_unseen = sorted(rng.choice(test_unseen, size=max_test, replace=False).tolist())
    test_seen = []
    for position in rng.permutation(len(rest)):
        if len(test_seen) >= want:
            break
        candidate = rest[position]
        genus = genus_of[candidate]
        if genus is not None and remaining[genus] > 1:
            test_seen.append(candidate)
            remaining[genus] -= 1
    chosen = set(test_seen) | set(test_unseen)
    train = [i for i in ordered if i not in chosen and genus_of[i] not in unseen]
    return Split(seed, train, sorted(test_seen), sorted(test_unseen), sorted(unseen))


def read_split(store: Store, folder: str) -> Split:
    """The split recorded beside an adapter (`<folder>/split.json`)."""
    return Split.from_json(json.loads(store.read_bytes(f"{folder}/split.json")))
