"""Recording a materialisation: its run manifest, and the end of any expiry it supersedes.

A re-materialised shards or embeddings partition has a new manifest beside the tombstone of
its earlier expiry; the manifest wins, and the tombstone is dropped here, so every asset that
records provenance keeps partition state right without knowing about retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bioscan_assets.core.governance.partition_state import EXPIRABLE_ASSETS, clear_tombstone
from bioscan_assets.core.governance.provenance import write_run_manifest
from bioscan_assets.core.storage import Store


def record_run(store: Store, manifest: Mapping[str, Any]) -> str:
    """Write the run manifest (see `provenance.build_run_manifest`) and clear the partition's
    tombstone when it is an expirable one; returns the run manifest's path."""
    rel = write_run_manifest(store, manifest)
    asset, tenant, sample_id = manifest["asset"], manifest["tenant"], manifest["sample_id"]
    if asset in EXPIRABLE_ASSETS and tenant and sample_id:
        model_id = (manifest.get("model") or {}).get("model_id")
        if asset == "sequence_shards":
            clear_tombstone(store, asset, tenant, sample_id)
        elif model_id:
            clear_tombstone(store, asset, tenant, sample_id, model_id)
    return rel
