"""The hash store (`core.embedding.hash_store`): a commit of vectors expires only when no live
partition's embeddings reference it, under the `sequence_embeddings` policy's age.

- referenced: listed in `hash_store.commits` of a live embeddings manifest (any sample of the
  same model and tenant, filed under the same store folder). Those are never planned.
- unreferenced: it goes `expire_after_days` after the later of its creation and the expiry of
  the last partition that referenced it (that partition's tombstone keeps its manifest). The
  unit is a commit: one still-referenced vector keeps its whole commit.
- a commit folder without a manifest (a killed writer, or an expiry interrupted after the
  manifest went) goes once its newest file is that old.
A commit deleted while a run is about to reuse it makes that run look again and compute the
vector anew (`compute.embed_partition`), so the race costs compute, never a wrong vector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bioscan_assets.core import layout
from bioscan_assets.core.governance.deletion import Deletion
from bioscan_assets.core.governance.listing import modified_at
from bioscan_assets.core.governance.partition_state import TOMBSTONE
from bioscan_assets.core.governance.policy import days
from bioscan_assets.core.manifests import MANIFEST_NAME
from bioscan_assets.core.storage import Store

POLICY = "hash_store"  # planned under the sequence_embeddings policy's settings

# (model_id, store folder, tenant) -> commit id -> {file: bytes}
_Groups = dict[tuple[str, str, str], dict[str, dict[str, int]]]


def parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _group(sizes: Mapping[str, int]) -> _Groups:
    """Files by store folder and commit; paths that are not a well-formed commit are ignored."""
    out: _Groups = {}
    for rel, size in sizes.items():
        parts = rel.split("/")
        if len(parts) != 6 or not parts[3].startswith("tenant="):
            continue
        model_id, weights, tenant = parts[1], parts[2], parts[3][len("tenant=") :]
        commit = parts[4].removeprefix("commit=")
        try:
            folder = layout.hash_store_commit_dir(model_id, weights, tenant, commit)
        except ValueError:
            continue
        if folder != "/".join(parts[:5]):
            continue
        key = (model_id, "/".join(parts[:4]), tenant)
        out.setdefault(key, {}).setdefault(commit, {})[rel] = size
    return out


def _references(
    store: Store, model_id: str, tenant: str, folder: str
) -> tuple[set[str], dict[str, datetime]]:
    """Commits live partitions reference, and when the last expired partition referencing each
    one expired."""
    live: set[str] = set()
    ended: dict[str, datetime] = {}
    for rel in store.list_files(layout.embedding_tenant_dir(model_id, tenant)):
        name = rel.rsplit("/", 1)[-1]
        if name not in (MANIFEST_NAME, TOMBSTONE):
            continue
        try:
            doc = json.loads(store.read_bytes(rel))
        except FileNotFoundError:
            continue  # expired or rewritten since the listing
        if name == MANIFEST_NAME:
            if (doc.get("hash_store") or {}).get("path") == folder:
                live.update(doc["hash_store"].get("commits", []))
            continue
        store_ref = ((doc.get("manifest") or {}).get("hash_store")) or {}
        at = parse_time(doc.get("expired_at"))
        if store_ref.get("path") != folder or at is None:
            continue
        for commit in store_ref.get("commits", []):
            ended[commit] = max(at, ended.get(commit, at))
    return live, ended


def _deletion(
    target: str, files: Mapping[str, int], model_id: str, reason: str, **extra: Any
) -> Deletion:
    manifest = f"{target}/{MANIFEST_NAME}"
    ordered = ([manifest] if manifest in files else []) + sorted(r for r in files if r != manifest)
    return Deletion(
        policy=POLICY,
        root="storage",
        target=target,
        files=tuple(ordered),
        bytes=sum(files.values()),
        reason=reason,
        model_id=model_id,
        **extra,
    )


def plan_hash_store(store: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    """Unreferenced commits older than the embeddings policy allows, oldest store first."""
    after: timedelta = days(settings["expire_after_days"])
    out = []
    for (model_id, folder, tenant), commits in sorted(
        _group(store.list_sizes(layout.hash_store_root())).items()
    ):
        live, ended = _references(store, model_id, tenant, folder)
        for commit, files in sorted(commits.items()):
            if commit in live:
                continue
            target = f"{folder}/commit={commit}"
            manifest = f"{target}/{MANIFEST_NAME}"
            if manifest not in files:
                stamps = [modified_at(store, rel) for rel in files]
                newest = max((s for s in stamps if s is not None), default=None)
                if newest is None or now - newest < after:
                    continue  # a write in progress, or gone since the listing
                out.append(
                    _deletion(
                        target,
                        files,
                        model_id,
                        f"an uncommitted hash-store write (no manifest) from "
                        f"{newest.isoformat(timespec='seconds')}",
                    )
                )
                continue
            try:
                raw = store.read_bytes(manifest)
            except FileNotFoundError:
                continue
            created = parse_time(json.loads(raw).get("created_at")) or modified_at(store, manifest)
            if created is None:
                continue
            since = max(created, ended.get(commit, created))
            if now - since < after:
                continue
            out.append(
                _deletion(
                    target,
                    files,
                    model_id,
                    f"no live partition references these {model_id} vectors; unreferenced "
                    f"since {since.isoformat(timespec='seconds')}, more than {after.days} day(s)",
                    guard=hashlib.sha256(raw).hexdigest(),
                    details=(("commit", commit), ("unreferenced_since", since.isoformat())),
                )
            )
    return out
