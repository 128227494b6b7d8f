"""Whether an expirable partition is live, expired or missing, and the tombstone that says so.

Expiring a partition writes `_expired.json` (the tombstone, keeping the manifest and file
list) before anything is deleted; materialising the partition again writes a new manifest,
which wins over the tombstone, and `clear_tombstone` then removes it.
"""

from __future__ import annotations

from typing import Literal

from bioscan_assets.core import layout
from bioscan_assets.core.manifests import MANIFEST_NAME
from bioscan_assets.core.storage import Store

TOMBSTONE = "_expired.json"
# The partitioned intermediates retention expires (and so the only ones with tombstones).
EXPIRABLE_ASSETS = ("sequence_shards", "sequence_embeddings")


def partition_folder(asset: str, tenant: str, sample_id: str, model_id: str | None = None) -> str:
    """The storage folder of one expirable partition (embeddings: per model)."""
    if asset == "sequence_shards":
        return layout.shard_dir(tenant, sample_id)
    if asset == "sequence_embeddings":
        if not model_id:
            raise ValueError("sequence_embeddings partitions are per model: pass model_id")
        return layout.embedding_dir(model_id, tenant, sample_id)
    raise ValueError(f"{asset} has no expirable partitions")


def partition_state(
    store: Store, asset: str, tenant: str, sample_id: str, model_id: str | None = None
) -> Literal["live", "expired", "missing"]:
    """ "live" (a manifest), "expired" (a tombstone, no manifest) or "missing"."""
    folder = partition_folder(asset, tenant, sample_id, model_id)
    if store.exists(f"{folder}/{MANIFEST_NAME}"):
        return "live"
    if store.exists(f"{folder}/{TOMBSTONE}"):
        return "expired"
    return "missing"


def clear_tombstone(
    store: Store, asset: str, tenant: str, sample_id: str, model_id: str | None = None
) -> bool:
    """Drop the tombstone of a partition that has been materialised again (manifest present)."""
    folder = partition_folder(asset, tenant, sample_id, model_id)
    if store.exists(f"{folder}/{TOMBSTONE}") and store.exists(f"{folder}/{MANIFEST_NAME}"):
        store.delete(f"{folder}/{TOMBSTONE}")
        return True
    return False
