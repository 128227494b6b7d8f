"""The references a tenant's calls may learn from, and loading them from the shards.

Rule (tenant isolation): a tenant's classifier is fitted on
- that tenant's own reference samples (partitions whose drop had a taxonomy.tsv that matched
  reads), and
- the deployment's shared references: every reference sample of the tenant named
  `SHARED_TENANT` ("shared": e.g. a public 16S database dropped once as `shared/<sample>`),
  plus any partition keys the deployment lists in `shared_keys` (configuration).
Another tenant's private references are never read: the keys are filtered before a byte of
shard is opened, so they cannot influence the calls, the calibration or the metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bioscan_assets.core.layout import check_tenant, shard_dir, split_partition_key
from bioscan_assets.core.manifests import iter_parts, read_manifest
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import split_taxon

SHARED_TENANT = "shared"
Lineage = tuple[str | None, ...]


def usable_reference_keys(
    tenant: str, reference_keys: Iterable[str], shared_keys: Iterable[str] = ()
) -> list[str]:
    """The reference partitions `tenant` may use: its own, the shared tenant's, and `shared_keys`."""
    check_tenant(tenant)
    shared = set(shared_keys)
    out = []
    for key in reference_keys:
        owner, _sample = split_partition_key(key)
        if owner in (tenant, SHARED_TENANT) or key in shared:
            out.append(key)
    return sorted(set(out))


def private_owners(reference_keys: Iterable[str], shared_keys: Iterable[str] = ()) -> list[str]:
    """Tenants holding references nobody else may use (the shared tenant and `shared_keys` aside)."""
    shared = set(shared_keys)
    owners = {split_partition_key(key)[0] for key in reference_keys if key not in shared}
    return sorted(owners - {SHARED_TENANT})


def tenant_scope(
    tenant: str | None, reference_keys: Iterable[str], shared_keys: Iterable[str] = ()
) -> tuple[str, list[str]]:
    """(tenant, usable reference keys) of a tuning or evaluation run.

    Without a tenant the run belongs to the one tenant holding private references (the shared
    tenant when none does); when several do, a run for all of them would mix their private
    references, so the tenant must be named.
    """
    keys = sorted(set(reference_keys))
    if not tenant:
        owners = private_owners(keys, shared_keys)
        if len(owners) > 1:
            raise ValueError(
                f"tenants {', '.join(owners)} each hold private reference samples: name the "
                "tenant to train for (config `tenant`), one run per tenant, so that no tenant's "
                "classifier learns from another's references"
            )
        tenant = owners[0] if owners else SHARED_TENANT
    return tenant, usable_reference_keys(tenant, keys, shared_keys)


def shard_manifest(store: Store, key: str) -> dict[str, Any]:
    tenant, sample_id = split_partition_key(key)
    return read_manifest(
        store, shard_dir(tenant, sample_id), f"materialise sequence_shards for partition {key}"
    )


def is_reference(manifest: dict[str, Any]) -> bool:
    """A sample whose drop had a taxonomy.tsv that matched at least one read."""
    return bool((manifest.get("taxonomy") or {}).get("matched_ids", 0))


def find_references(store: Store, partition_keys: Iterable[str]) -> list[str]:
    """The reference partitions among `partition_keys` (those without shards are skipped)."""
    out = []
    for key in sorted(partition_keys):
        try:
            manifest = shard_manifest(store, key)
        except FileNotFoundError:
            continue
        if is_reference(manifest):
            out.append(key)
    return out


@dataclass
class References:
    """Labelled reads of the usable reference samples; ids are `<tenant>/<sample>/<sequence_id>`."""

    ids: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    lineages: list[Lineage] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # partition key -> shard version

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict[str, Any]:
        return {"sequences": len(self.ids), "partitions": dict(sorted(self.versions.items()))}


def load_references(store: Store, keys: Sequence[str]) -> References:
    """Every row with a lineage in the given reference partitions, in key then shard order."""
    refs = References()
    for key in sorted(keys):
        manifest = shard_manifest(store, key)
        tenant, sample_id = split_partition_key(key)
        folder = shard_dir(tenant, sample_id)
        columns = ["sequence_id", "dna_sequence", "taxonomy"]
        for batch in iter_parts(store, folder, manifest, columns=columns):
            ids, seqs, taxa = (batch.column(c).to_pylist() for c in columns)
            for sid, seq, taxon in zip(ids, seqs, taxa, strict=True):
                lineage = split_taxon(taxon)
                if any(label is not None for label in lineage):
                    refs.ids.append(f"{key}/{sid}")
                    refs.sequences.append(seq)
                    refs.lineages.append(lineage)
        refs.versions[key] = str(manifest.get("version"))
    return refs
