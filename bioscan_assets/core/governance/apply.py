"""Applying a retention plan: delete exactly what it lists, unit by unit, auditing each unit.

Expiring a partition writes its tombstone first, then deletes the manifest (readers then see
"expired" rather than half a partition), then the parts. A run that dies half way leaves the
rest in place; the next plan finds the tombstone and finishes the job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bioscan_assets.core import layout
from bioscan_assets.core.governance.audit import AuditLog
from bioscan_assets.core.governance.deletion import Deletion, check_deletion
from bioscan_assets.core.governance.listing import modified_at
from bioscan_assets.core.governance.policy import Policies
from bioscan_assets.core.index.writer_lock import writer_lock
from bioscan_assets.core.manifests import MANIFEST_NAME, read_manifest
from bioscan_assets.core.storage import Store


@dataclass
class RetentionResult:
    """What an apply did: units applied and skipped (with why), lines and bytes removed."""

    applied: list[Deletion] = field(default_factory=list)
    skipped: list[tuple[Deletion, str]] = field(default_factory=list)
    deleted_lines: list[str] = field(default_factory=list)
    bytes: int = 0
    lance_bytes: int = 0


def _remove_empty_dirs(store: Store, target: str) -> None:
    """Folders a deleted checkpoint step, W&B run or hash-store commit leaves behind (local
    stores only)."""
    local = store.local_path(target)
    if local is None or not local.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(local), key=lambda x: -len(x[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def _write_tombstone(store: Store, item: Deletion, run_id: str, now: datetime) -> None:
    """The record of an expiry, written before anything goes: it keeps the manifest (and its
    write time, which the shards' lineage still reads for expired embeddings)."""
    assert item.tombstone is not None
    try:
        manifest = read_manifest(store, item.target, "nothing left to expire")
    except FileNotFoundError:
        manifest = None
    stamp = modified_at(store, f"{item.target}/{MANIFEST_NAME}")
    doc = {
        "expired": True,
        "asset": item.asset,
        "partition_key": item.partition_key,
        "model_id": item.model_id,
        "policy": item.policy,
        "run_id": run_id,
        "expired_at": now.isoformat(),
        "reason": item.reason,
        "manifest": manifest,
        "manifest_sha256": item.guard,
        "manifest_modified_at": stamp.isoformat() if stamp else None,
        "files": list(item.files),
        "bytes": item.bytes,
    }
    store.write_bytes(item.tombstone, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def _apply_lancedb(store: Store, item: Deletion) -> int:
    """Tag actions, then `optimize` with the plan's cut; returns the bytes the table shrank by.

    `optimize` also compacts (new versions, newer than the cut); the versions it removes are
    checked against the plan.
    """
    import lancedb  # heavy: only a run that cleans table versions loads it

    tenant, name = item.target.split("/")[1:3]
    # optimize() writes (compaction): the index writer's lock keeps it one writer per table
    with writer_lock(store, tenant, name):
        return _optimize_table(store, item, lancedb, tenant, name)


def _optimize_table(store: Store, item: Deletion, lancedb: Any, tenant: str, name: str) -> int:
    table = lancedb.connect(store.url(layout.lancedb_dir(tenant))).open_table(name)
    folder = layout.lancedb_table_dir(tenant, name)
    size_before = sum(store.list_sizes(folder).values())
    present = {int(v["version"]) for v in table.list_versions()}
    for action, tag, _version in item.tag_actions:
        if action == "move":
            table.tags.update(tag, table.version)
        elif action == "delete":
            table.tags.delete(tag)
    if item.cutoff is None:
        raise ValueError(f"{item.target}: a LanceDB deletion needs its cutoff")
    older_than = max(datetime.now(UTC) - datetime.fromisoformat(item.cutoff), timedelta(0))
    table.optimize(cleanup_older_than=older_than)
    after = {int(v["version"]) for v in table.list_versions()}
    removed = sorted(present - after)
    if removed != sorted(v for v in item.versions if v in present):
        raise RuntimeError(
            f"{item.target}: LanceDB removed versions {removed}, the plan said {list(item.versions)}"
        )
    return size_before - sum(store.list_sizes(folder).values())


def _manifest_sha256(store: Store, folder: str) -> str | None:
    try:
        return hashlib.sha256(store.read_bytes(f"{folder}/{MANIFEST_NAME}")).hexdigest()
    except FileNotFoundError:
        return None


def apply_retention(
    store: Store,
    plan: list[Deletion],
    audit: AuditLog,
    *,
    policies: Policies,
    home: Store | None = None,
    now: datetime | None = None,
    on_applied: Callable[[Deletion, dict[str, Any]], None] | None = None,
) -> RetentionResult:
    """Delete what `plan` lists, unit by unit, auditing each; stops at the first failure.

    Each unit is checked against the protected set first; a partition whose manifest changed
    since the plan (re-materialised meanwhile) is skipped. What was not reached stays intact,
    and re-running plan + apply finishes the job.
    """
    now = now or datetime.now(UTC)
    result = RetentionResult()
    for item in plan:
        check_deletion(item, policies)
        root = store if item.root == "storage" else home
        if root is None:
            raise ValueError(f"{item.target}: a `home` store is needed for policy {item.policy}")
        record: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(),
            "run_id": audit.run_id,
            **{k: v for k, v in item.as_dict().items() if k not in ("details",)},
            "details": dict(item.details),
            "root_url": root.url(""),
        }
        if item.guard is not None and _manifest_sha256(root, item.target) != item.guard:
            result.skipped.append((item, "manifest changed since the plan"))
            audit.append(
                {
                    **record,
                    "status": "skipped",
                    "files": [],
                    "error": "manifest changed since the plan",
                }
            )
            continue
        deleted: list[str] = []
        try:
            if item.tombstone:
                _write_tombstone(root, item, audit.run_id, now)
            lance_bytes = _apply_lancedb(root, item) if item.versions else 0
            for rel in item.files:
                root.delete(rel)
                deleted.append(rel)
            if item.policy in ("checkpoints", "wandb", "hash_store"):
                _remove_empty_dirs(root, item.target)
        except BaseException as exc:
            audit.append(
                {
                    **record,
                    "status": "failed",
                    "files": deleted,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
            raise
        audit.append({**record, "status": "deleted", "lance_bytes_removed": lance_bytes})
        result.applied.append(item)
        result.deleted_lines += item.lines()
        result.bytes += item.bytes
        result.lance_bytes += lance_bytes
        if on_applied:
            on_applied(item, record)
    return result
