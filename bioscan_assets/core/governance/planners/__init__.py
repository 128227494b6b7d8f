"""Retention planners, one per kind of data; `plan_retention` runs the enabled ones in order.

A plan is a list of `Deletion`s, each checked against the protected set before it is returned:
everything retention would delete now, in the order it would delete it. Planning deletes
nothing; `apply.apply_retention` does, unit by unit.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bioscan_assets.core.governance.deletion import Deletion, check_deletion
from bioscan_assets.core.governance.planners.checkpoints import plan_checkpoints
from bioscan_assets.core.governance.planners.hash_store import plan_hash_store
from bioscan_assets.core.governance.planners.lance_versions import plan_lancedb
from bioscan_assets.core.governance.planners.partitions import plan_embeddings, plan_shards
from bioscan_assets.core.governance.planners.wandb_runs import plan_wandb
from bioscan_assets.core.governance.policy import Policies
from bioscan_assets.core.storage import Store


def plan_retention(
    store: Store,
    policies: Policies,
    now: datetime | None = None,
    *,
    home: Store | None = None,
) -> list[Deletion]:
    """Everything retention would delete now, in the order it would delete it."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    plan: list[Deletion] = []
    # Embeddings are planned before shards read their manifests, so both decisions see the
    # same state; shards' lineage also reads embedding tombstones.
    if settings := policies.get("sequence_embeddings"):
        plan += plan_embeddings(store, settings, now)
        # the hash store's vectors live under the embeddings policy (unreferenced ones only)
        plan += plan_hash_store(store, settings, now)
    if settings := policies.get("sequence_shards"):
        plan += plan_shards(store, settings, now)
    if settings := policies.get("checkpoints"):
        for spec in settings.get("roots") or []:
            root_name, _, prefix = str(spec).partition(":")
            if root_name == "storage":
                plan += plan_checkpoints(store, "storage", prefix, settings, now)
            elif root_name == "home" and home is not None:
                plan += plan_checkpoints(home, "home", prefix, settings, now)
    if settings := policies.get("lancedb"):
        plan += plan_lancedb(store, settings, now)
    if home is not None and (settings := policies.get("wandb")):
        plan += plan_wandb(home, settings, now)
    for item in plan:
        check_deletion(item, policies)
    return plan
