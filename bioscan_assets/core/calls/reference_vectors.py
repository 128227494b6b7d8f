"""The labelled reference rows of the vector index that a tenant may use, and nothing else.

kNN calls and `bioscan search --assign` (`search_references`) vote only with these: rows of reference partitions
(`references.usable_reference_keys`: the tenant's own and the shared ones) that carry a
taxonomy. A sample's own unlabelled reads, another tenant's private references and rows of
another model never vote. Each partition is read from its owner's database (one LanceDB
database per tenant), whose weights hash must match the model that embeds the queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bioscan_assets.core.calls.references import (
    SHARED_TENANT,
    find_references,
    usable_reference_keys,
)
from bioscan_assets.core.classify.knn_baseline import check_indexed
from bioscan_assets.core.index.search import Hit, open_index, search_vector
from bioscan_assets.core.index.tables import META_WEIGHTS, open_table, sql_string
from bioscan_assets.core.layout import split_partition_key
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import split_taxon

Lineage = tuple[str | None, ...]
LABELLED = "taxonomy IS NOT NULL"


@dataclass
class ReferenceVectors:
    """Rows ordered by partition key then index key; ids are `<tenant>/<sample>/<sequence_id>`."""

    ids: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    lineages: list[Lineage] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # partition key -> labelled rows

    def __len__(self) -> int:
        return len(self.ids)

    def digest(self) -> str:
        """sha256 over ids, lineages and vectors: what the kNN calls were computed from."""
        h = hashlib.sha256()
        for sid, lineage in zip(self.ids, self.lineages, strict=True):
            h.update(f"{sid}\t{lineage}\n".encode())
        h.update(np.ascontiguousarray(self.vectors, np.float32).tobytes())
        return h.hexdigest()


def _table(store: Store, tenant: str, model_id: str, weights_hash: str | None) -> Any:
    table = open_table(store, tenant, model_id)
    found = ((table.schema.metadata or {}) if table is not None else {}).get(META_WEIGHTS, b"")
    if weights_hash and found and found.decode() != weights_hash:
        raise ValueError(
            f"tenant {tenant}'s index for model {model_id} holds vectors of weights "
            f"{found.decode()[:12]}, the model at hand has {weights_hash[:12]}: re-materialise "
            "sequence_embeddings and vector_index for its reference samples"
        )
    return table


def load_reference_vectors(
    store: Store, model_id: str, keys: Sequence[str], weights_hash: str | None = None
) -> ReferenceVectors:
    """Every labelled index row of the given reference partitions (IndexNotReady if absent)."""
    check_indexed(store, model_id, keys)
    out = ReferenceVectors()
    blocks = []
    for key in sorted(keys):
        tenant, sample_id = split_partition_key(key)
        table = _table(store, tenant, model_id, weights_hash)
        found = (
            table.search()
            .where(f"sample_id = {sql_string(sample_id)} AND {LABELLED}")
            .select(["key", "taxonomy", "vector"])
            .limit(None)
            .to_arrow()
            .sort_by("key")
        )
        kept = []
        for row, (index_key, taxon) in enumerate(
            zip(found.column("key").to_pylist(), found.column("taxonomy").to_pylist(), strict=True)
        ):
            lineage = split_taxon(taxon)
            if any(label is not None for label in lineage):
                out.ids.append(f"{tenant}/{index_key}")
                out.lineages.append(lineage)
                kept.append(row)
        vectors = found.column("vector").combine_chunks()
        dim = vectors.type.list_size
        flat = vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        blocks.append(flat[kept].astype(np.float32))
        out.rows[key] = len(kept)
    if blocks:
        out.vectors = np.concatenate(blocks)
    return out


def indexed_samples(store: Store, tenant: str, model_id: str) -> list[str]:
    """Partition keys of the samples in one tenant's index table for the model."""
    table = open_table(store, tenant, model_id)
    if table is None:
        return []
    found = table.search().select(["sample_id"]).limit(None).to_arrow().column("sample_id")
    return sorted({f"{tenant}/{sample}" for sample in found.to_pylist()})


def indexed_reference_keys(
    store: Store, tenant: str, model_id: str, shared_keys: Iterable[str] = ()
) -> list[str]:
    """The indexed reference partitions `tenant` may use: its own, the shared tenant's, `shared_keys`."""
    shared = sorted(set(shared_keys))
    owners = {tenant, SHARED_TENANT} | {split_partition_key(key)[0] for key in shared}
    keys = [key for owner in sorted(owners) for key in indexed_samples(store, owner, model_id)]
    return find_references(store, usable_reference_keys(tenant, keys, shared))


def labelled_rows(store: Store, key: str, model_id: str) -> int:
    tenant, sample_id = split_partition_key(key)
    table = open_table(store, tenant, model_id)
    if table is None:
        return 0
    return int(table.count_rows(f"sample_id = {sql_string(sample_id)} AND {LABELLED}"))


def search_references(
    store: Store,
    tenant: str,
    model_id: str,
    vector: np.ndarray,
    keys: Sequence[str],
    *,
    k: int = 10,
    filters: dict[str, str] | None = None,
    exclude_key: str | None = None,
    exact: bool = False,
) -> list[Hit]:
    """The k nearest labelled reference rows of one query: search each owner's database within its usable reference samples, labelled rows only,
    and merge by distance. Hits from another owner (the shared tenant) name it in
    `sample_id` as `<owner>/<sample>`; `exclude_key` (the query's own row) applies to the
    tenant's database."""
    by_owner: dict[str, list[str]] = {}
    for key in sorted(keys):
        owner, sample_id = split_partition_key(key)
        by_owner.setdefault(owner, []).append(sample_id)
    hits: list[Hit] = []
    for owner, samples in by_owner.items():
        found = search_vector(
            open_index(store, owner, model_id),
            vector,
            k=k,
            filters=filters,
            samples=samples,
            exact=exact,
            exclude_key=exclude_key if owner == tenant else None,
            labelled_only=True,
        )
        if owner != tenant:
            found = [replace(h, sample_id=f"{owner}/{h.sample_id}") for h in found]
        hits += found
    hits.sort(key=lambda h: (h.distance, h.sample_id, h.sequence_id))
    return hits[:k]
