"""Shards and embeddings: a sample's partition expires once its downstream holds what it held.

- a sample's shards expire `expire_after_days` after every embedding of that sample (one per
  model) was computed from exactly the current shard version and the vector index was
  materialised from it too;
- a sample's embeddings (per model) expire `expire_after_days` after the vector index was
  materialised from exactly the current embeddings manifest.
A partition without a manifest is either being written (left alone) or an interrupted expiry
(a tombstone is present): then the plan finishes the job.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from bioscan_assets.core import layout
from bioscan_assets.core.governance.deletion import Deletion
from bioscan_assets.core.governance.lineage import (
    SHARDS_INPUT,
    Consumer,
    embedding_consumers,
    embeddings_input,
    index_consumer,
    manifest_sha256,
)
from bioscan_assets.core.governance.listing import child_dirs
from bioscan_assets.core.governance.partition_state import TOMBSTONE
from bioscan_assets.core.governance.policy import days
from bioscan_assets.core.layout import SAMPLE_ID_RE, TENANT_RE
from bioscan_assets.core.manifests import MANIFEST_NAME
from bioscan_assets.core.storage import Store

_PARTITION_DIR = re.compile(r"tenant=([^/]+)/sample=([^/]+)")
# (tenant, sample_id, manifest doc, folder) -> (the consumers found, the version they must hold)
Consumers = Callable[[str, str, dict[str, Any], str], tuple[list[Consumer], str | None]]


def _partitions(sizes: Mapping[str, int], prefix: str) -> dict[tuple[str, str], dict[str, int]]:
    """Files grouped by `<prefix>/tenant=<t>/sample=<s>/`; other paths are ignored."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for rel, size in sizes.items():
        rest = rel[len(prefix) + 1 :]
        match = _PARTITION_DIR.match(rest)
        if not match or rest[match.end() : match.end() + 1] != "/":
            continue
        tenant, sample_id = match.groups()
        if not TENANT_RE.fullmatch(tenant) or not SAMPLE_ID_RE.fullmatch(sample_id):
            continue
        out.setdefault((tenant, sample_id), {})[rel] = size
    return out


def _deletable_files(folder: str, files: Mapping[str, int]) -> list[str]:
    """The manifest first (readers then see the partition as gone), then the rest, sorted.

    Names starting with "." are a writer's temp files: a write in progress owns them.
    """
    names = {}
    for rel in files:
        name = rel[len(folder) + 1 :]
        if "/" in name or name.startswith(".") or name == TOMBSTONE:
            continue
        names[name] = rel
    first = [names.pop(MANIFEST_NAME)] if MANIFEST_NAME in names else []
    return first + sorted(names.values())


def _manifest_and_bytes(store: Store, folder: str) -> tuple[dict[str, Any], bytes] | None:
    """The manifest with the very bytes it was parsed from: the guard hashes those, so apply
    deletes only the version this decision was made on."""
    try:
        data = store.read_bytes(f"{folder}/{MANIFEST_NAME}")
    except FileNotFoundError:
        return None
    return json.loads(data), data


def partition_deletions(
    store: Store,
    *,
    policy: str,
    prefix: str,
    folder_of: Callable[[str, str], str],
    model_id: str | None,
    after: timedelta,
    now: datetime,
    consumers: Consumers,
) -> list[Deletion]:
    """Expiry of one partitioned intermediate: `consumers` says what downstream made of it."""
    out = []
    for (tenant, sample_id), files in sorted(_partitions(store.list_sizes(prefix), prefix).items()):
        folder = folder_of(tenant, sample_id)
        deletable = _deletable_files(folder, files)
        has_manifest = f"{folder}/{MANIFEST_NAME}" in files
        manifest = _manifest_and_bytes(store, folder) if has_manifest else None
        common = {
            "policy": policy,
            "root": "storage",
            "target": folder,
            "asset": policy,  # these policies are named after the asset they expire
            "partition_key": layout.partition_key(tenant, sample_id),
            "model_id": model_id,
        }
        if manifest is None:
            # No manifest: either being written (leave it) or an interrupted expiry (finish it).
            if f"{folder}/{TOMBSTONE}" in files and deletable:
                out.append(
                    Deletion(
                        **common,
                        files=tuple(deletable),
                        bytes=sum(files[r] for r in deletable),
                        reason="finishing an interrupted expiry (tombstone present)",
                    )
                )
            continue
        doc, raw = manifest
        found, version = consumers(tenant, sample_id, doc, folder)
        if not found or any(c.version != version or c.at is None for c in found):
            continue  # no downstream yet, or one made from another version: still needed
        consumed = max(c.at for c in found if c.at is not None)
        if now - consumed < after:
            continue
        out.append(
            Deletion(
                **common,
                files=tuple(deletable),
                bytes=sum(files[r] for r in deletable),
                reason=(
                    f"downstream materialised from version {version} at "
                    f"{consumed.isoformat(timespec='seconds')}, more than {after.days} day(s) ago "
                    f"({', '.join(c.source for c in found)})"
                ),
                tombstone=f"{folder}/{TOMBSTONE}",
                guard=hashlib.sha256(raw).hexdigest(),
                details=(("version", version), ("consumed_at", consumed.isoformat())),
            )
        )
    return out


def plan_shards(store: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    def consumers(tenant: str, sample_id: str, doc: dict[str, Any], _folder: str):
        # Both readers of shards: every model's embeddings, and the vector index (its rows'
        # metadata columns come from the shards), per its run manifest.
        found = embedding_consumers(store, tenant, sample_id)
        index = index_consumer(store, SHARDS_INPUT, tenant, sample_id)
        if not found or index is None:
            return [], doc.get("version")
        return [*found, index], doc.get("version")

    return partition_deletions(
        store,
        policy="sequence_shards",
        prefix=layout.shards_root(),
        folder_of=layout.shard_dir,
        model_id=None,
        after=days(settings["expire_after_days"]),
        now=now,
        consumers=consumers,
    )


def plan_embeddings(store: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    out = []
    for model_id in child_dirs(store, layout.embeddings_root()):

        def consumers(
            tenant: str, sample_id: str, _doc: dict[str, Any], folder: str, model_id=model_id
        ):
            digest = manifest_sha256(store, folder)
            found = index_consumer(store, embeddings_input(model_id), tenant, sample_id)
            return ([found] if found else []), digest

        out += partition_deletions(
            store,
            policy="sequence_embeddings",
            prefix=layout.embedding_model_dir(model_id),
            folder_of=lambda t, s, model_id=model_id: layout.embedding_dir(model_id, t, s),
            model_id=model_id,
            after=days(settings["expire_after_days"]),
            now=now,
            consumers=consumers,
        )
    return out
