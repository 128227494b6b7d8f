"""The kNN baseline of the evaluation: neighbours from the vector index, votes from
`taxonomy_assign`.

Query vectors are the held-out sequences' own base embeddings, read back from the index.
Neighbours are searched exactly (the ANN index is bypassed, so recall is not what is measured)
within the reference samples and kept only when they are training sequences: no held-out
sequence, and so no unseen genus, can vote.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from bioscan_assets.core.classify.knn_vote import AssignConfig, assign
from bioscan_assets.core.index import partition_rows as vi
from bioscan_assets.core.index import search as search_mod
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS


class IndexNotReady(RuntimeError):
    """The reference partitions are not (all) in the vector index for this model."""


def _parts(global_id: str) -> tuple[str, str, str]:
    tenant, sample_id, sequence_id = global_id.split("/", 2)
    return tenant, sample_id, sequence_id


def check_indexed(store: Store, model_id: str, partitions: Sequence[str]) -> None:
    missing = []
    for key in sorted(partitions):
        tenant, sample_id = key.split("/", 1)
        if vi.partition_summary(store, tenant, model_id, sample_id)["rows"] == 0:
            missing.append(key)
    if missing:
        raise IndexNotReady(
            f"the vector index for model {model_id} has no rows for reference partition(s) "
            f"{', '.join(missing)}: materialise vector_index for them first, e.g. "
            f"dagster asset materialize -m bioscan_assets.definitions --select "
            f"sequence_embeddings,vector_index --partition {missing[0]}"
        )


def predict(
    store: Store,
    model_id: str,
    test_ids: Sequence[str],
    train_ids: Sequence[str],
    *,
    k: int = 5,
    threshold: float = 0.5,
) -> tuple[list[tuple], list[tuple], np.ndarray, dict[str, Any]]:
    """(called lineages, un-thresholded lineages, confidence [N, 7], info)."""
    partitions = {"/".join(_parts(i)[:2]) for i in [*train_ids, *test_ids]}
    check_indexed(store, model_id, partitions)
    samples: dict[str, set[str]] = defaultdict(set)
    train_keys: dict[str, set[str]] = defaultdict(set)
    for gid in train_ids:
        tenant, sample_id, sequence_id = _parts(gid)
        samples[tenant].add(sample_id)
        train_keys[tenant].add(f"{sample_id}{vi.KEY_SEPARATOR}{sequence_id}")
    for gid in test_ids:
        tenant, sample_id, _ = _parts(gid)
        samples[tenant].add(sample_id)
    tables = {tenant: search_mod.open_index(store, tenant, model_id) for tenant in samples}
    # rows of those samples that must not vote (held out or unlabelled): search past them
    excluded = {
        tenant: sum(
            vi.partition_summary(store, tenant, model_id, s)["rows"] for s in samples[tenant]
        )
        - len(train_keys[tenant])
        for tenant in samples
    }
    strict = AssignConfig(threshold=threshold, k=k)
    loose = AssignConfig(threshold=0.0, k=k)
    called, raw = [], []
    confidence = np.zeros((len(test_ids), len(RANKS)))
    short = 0
    for row, gid in enumerate(test_ids):
        tenant, sample_id, sequence_id = _parts(gid)
        _key, vector = search_mod.lookup_vector(tables[tenant], sequence_id, [sample_id])
        hits = []
        for other, table in tables.items():
            if not train_keys[other]:
                continue
            limit = min(search_mod.MAX_K, k + max(excluded[other], 0))
            found = search_mod.search_vector(
                table, vector, k=limit, samples=sorted(samples[other]), exact=True
            )
            hits += [
                h
                for h in found
                if f"{h.sample_id}{vi.KEY_SEPARATOR}{h.sequence_id}" in train_keys[other]
            ]
        hits.sort(key=lambda h: h.distance)
        hits = hits[:k]
        short += len(hits) < k
        best = assign(hits, loose)
        call = assign(hits, strict)
        raw.append(tuple(c.label for c in best.calls))
        called.append(tuple(c.label for c in call.calls))
        confidence[row] = [c.confidence for c in best.calls]
    info = {
        "k": k,
        "threshold": threshold,
        "search": "exact cosine (ANN bypassed), training sequences only",
        "tenants": sorted(samples),
        "queries_with_fewer_than_k_neighbours": short,
    }
    return called, raw, confidence, info
