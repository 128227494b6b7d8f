"""What one tenant's novelty build reads: its samples' calls, its usable references, the
candidate rows (abstaining at a rank), sample dates, and which representation to use.

Tenant isolation: samples are only the tenant's own partitions; references follow the calls'
rule (`core.calls.references`: own + shared, never another tenant's private ones).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bioscan_assets.core.calls.calls_layout import iter_calls, read_calls_manifest
from bioscan_assets.core.calls.references import (
    References,
    find_references,
    load_references,
    shard_manifest,
    usable_reference_keys,
)
from bioscan_assets.core.embedding.reader import (
    embedding_models,
    iter_embedding_batches,
    read_embedding_manifest,
)
from bioscan_assets.core.ingest.raw import read_raw_manifest
from bioscan_assets.core.layout import check_tenant, shard_dir, split_partition_key
from bioscan_assets.core.manifests import iter_parts
from bioscan_assets.core.novelty.spaces import EMBEDDING, KMER
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS

Lineage = tuple[str | None, ...]


@dataclass
class TenantSamples:
    """The tenant's non-reference samples with committed calls, and those still without."""

    calls_versions: dict[str, str] = field(default_factory=dict)  # sample_id -> calls version
    waiting: list[str] = field(default_factory=list)  # sample ids without calls yet


def tenant_references(
    store: Store, tenant: str, partition_keys: Iterable[str], shared_keys: Iterable[str] = ()
) -> tuple[list[str], References]:
    """(reference partition keys, their labelled rows) that `tenant` may use."""
    keys = find_references(store, usable_reference_keys(tenant, partition_keys, shared_keys))
    return keys, load_references(store, keys)


def tenant_samples(
    store: Store, tenant: str, partition_keys: Iterable[str], reference_keys: Sequence[str]
) -> TenantSamples:
    check_tenant(tenant)
    out = TenantSamples()
    references = set(reference_keys)
    for key in sorted(set(partition_keys)):
        owner, sample_id = split_partition_key(key)
        if owner != tenant or key in references:
            continue
        try:
            out.calls_versions[sample_id] = str(
                read_calls_manifest(store, tenant, sample_id)["version"]
            )
        except FileNotFoundError:
            out.waiting.append(sample_id)
    return out


@dataclass
class Candidates:
    """Rows that abstain at the rank, and their distinct sequences (clustering works on those)."""

    sample_ids: list[str] = field(default_factory=list)
    sequence_ids: list[str] = field(default_factory=list)
    calls: list[Lineage] = field(default_factory=list)
    distinct_of_row: list[int] = field(default_factory=list)
    distinct: list[str] = field(default_factory=list)
    rows_read: int = 0

    def __len__(self) -> int:
        return len(self.sequence_ids)

    def reads_per_distinct(self) -> np.ndarray:
        return np.bincount(
            np.asarray(self.distinct_of_row, dtype=np.int64), minlength=len(self.distinct)
        )


def load_candidates(
    store: Store, tenant: str, sample_ids: Iterable[str], rank: str = "genus"
) -> Candidates:
    """Every row of the samples whose call is empty at `rank`, with its sequence from the shards."""
    if rank not in RANKS:
        raise ValueError(f"rank {rank!r} is not one of {', '.join(RANKS)}")
    out = Candidates()
    index: dict[str, int] = {}
    for sample_id in sorted(sample_ids):
        wanted: dict[str, Lineage] = {}
        for batch in iter_calls(store, tenant, sample_id, ["sequence_id", *RANKS]):
            ids = batch.column("sequence_id").to_pylist()
            labels = [batch.column(r).to_pylist() for r in RANKS]
            at_rank = labels[RANKS.index(rank)]
            out.rows_read += len(ids)
            for row, sid in enumerate(ids):
                if at_rank[row] is None:
                    wanted[sid] = tuple(column[row] for column in labels)
        if not wanted:
            continue
        manifest = shard_manifest(store, f"{tenant}/{sample_id}")
        columns = ["sequence_id", "dna_sequence"]
        for batch in iter_parts(store, shard_dir(tenant, sample_id), manifest, columns):
            for sid, sequence in zip(*(batch.column(c).to_pylist() for c in columns), strict=True):
                if sid not in wanted:
                    continue
                out.sample_ids.append(sample_id)
                out.sequence_ids.append(sid)
                out.calls.append(wanted[sid])
                out.distinct_of_row.append(index.setdefault(sequence, len(index)))
    out.distinct = list(index)
    return out


def sample_dates(store: Store, tenant: str, sample_ids: Iterable[str]) -> dict[str, str | None]:
    """`collected_at` of each sample's sample.json (kept in its raw manifest); None if unknown."""
    out: dict[str, str | None] = {}
    for sample_id in sorted(set(sample_ids)):
        try:
            doc = json.loads(read_raw_manifest(store, tenant, sample_id)["sample_json"])
        except (FileNotFoundError, ValueError, KeyError):
            out[sample_id] = None
            continue
        value = doc.get("collected_at") if isinstance(doc, dict) else None
        out[sample_id] = str(value) if value else None
    return out


def choose_representation(
    store: Store, partitions: Sequence[tuple[str, str]], configured_model: str = ""
) -> dict[str, Any]:
    """Embeddings of one pretrained model held by every partition involved, else k-mer profiles.

    `partitions` are (tenant, sample_id) of the references and the candidate samples. The
    answer says which was used and why (a model whose manifest does not say it is pretrained
    has random weights: its vectors carry no sequence similarity).
    """
    if not partitions:
        return {"representation": KMER, "reason": "no partitions"}
    if configured_model:
        models = [configured_model]
    else:
        common: set[str] | None = None
        for tenant, sample_id in partitions:
            found = set(embedding_models(store, tenant, sample_id))
            common = found if common is None else common & found
        models = sorted(common or ())
    if not models:
        return {
            "representation": KMER,
            "reason": "no model has embeddings for every sample involved",
        }
    tried = []
    for model_id in models:
        weights: dict[str, str] = {}
        pretrained = True
        for tenant, sample_id in partitions:
            try:
                manifest = read_embedding_manifest(store, model_id, tenant, sample_id)
            except FileNotFoundError:
                pretrained = False
                break
            pretrained &= manifest.get("pretrained") is True
            weights[f"{tenant}/{sample_id}"] = str(manifest.get("weights_hash") or "")
        if pretrained:
            return {"representation": EMBEDDING, "model_id": model_id, "weights": weights}
        tried.append(model_id)
    return {
        "representation": KMER,
        "reason": f"model {', '.join(tried)} is not pretrained (random weights) or lacks "
        "embeddings for some sample: k-mer profiles carry the sequence similarity instead",
        "models_seen": tried,
    }


def embedding_vectors(
    store: Store, model_id: str, tenant: str, sample_id: str, wanted: set[str]
) -> dict[str, np.ndarray]:
    """The vectors of the `wanted` sequence ids of one partition."""
    out: dict[str, np.ndarray] = {}
    for batch in iter_embedding_batches(
        store, model_id, tenant, sample_id, columns=["sequence_id", "vector"]
    ):
        ids = batch.column(0).to_pylist()
        flat = batch.column(1).flatten().to_numpy(zero_copy_only=False)
        matrix = flat.reshape(len(ids), -1) if ids else flat.reshape(0, 0)
        for row, sid in enumerate(ids):
            if sid in wanted:
                out[sid] = matrix[row]
    return out
