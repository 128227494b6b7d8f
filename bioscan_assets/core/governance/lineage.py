"""Which upstream version a downstream output was made from: written into run manifests by the
assets, read back by retention to decide that an intermediate is no longer needed.

- embeddings record the shard version they were computed from (`shard_version` in the
  embeddings manifest; the manifest's `created_at` or write time is when);
- the vector index's run manifest records `inputs["sequence_shards"]` (the shard version) and
  `inputs["sequence_embeddings/<model_id>"]` (sha256 of the embeddings manifest).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from bioscan_assets.core import layout
from bioscan_assets.core.governance.listing import child_dirs, modified_at
from bioscan_assets.core.governance.partition_state import TOMBSTONE
from bioscan_assets.core.governance.provenance import manifest_dir, read_latest_manifest
from bioscan_assets.core.ingest.shard_reader import read_shard_manifest
from bioscan_assets.core.manifests import MANIFEST_NAME, read_manifest
from bioscan_assets.core.storage import Store

INDEX_ASSET = "vector_index"
SHARDS_INPUT = "sequence_shards"


def embeddings_input(model_id: str) -> str:
    """The run-manifest input name under which a model's embeddings of a sample are recorded."""
    return f"sequence_embeddings/{model_id}"


def manifest_sha256(store: Store, folder: str) -> str:
    """sha256 of a committed artefact's manifest bytes: the version a consumer records."""
    return hashlib.sha256(store.read_bytes(f"{folder}/{MANIFEST_NAME}")).hexdigest()


def lineage_inputs(
    store: Store, tenant: str, sample_id: str, model_id: str | None = None
) -> dict[str, str]:
    """`inputs` for a manifest of an asset that read a sample's shards (and, with `model_id`,
    its embeddings): the shard version and sha256 of the embeddings manifest, under exactly
    the names retention reads back from the vector index's run manifest."""
    out = {SHARDS_INPUT: read_shard_manifest(store, tenant, sample_id)["version"]}
    if model_id:
        folder = layout.embedding_dir(model_id, tenant, sample_id)
        out[embeddings_input(model_id)] = manifest_sha256(store, folder)
    return out


@dataclass
class Consumer:
    """A downstream record: which upstream version it was made from, and when."""

    source: str
    version: str | None
    at: datetime | None


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def embedding_consumers(store: Store, tenant: str, sample_id: str) -> list[Consumer]:
    """Every model's embeddings of a sample (live manifest or tombstone of an expired one)."""
    out = []
    for model_id in child_dirs(store, layout.embeddings_root()):
        folder = layout.embedding_dir(model_id, tenant, sample_id)
        try:
            doc = read_manifest(store, folder, "no embeddings of this model")
        except FileNotFoundError:
            pass
        else:
            manifest = f"{folder}/{MANIFEST_NAME}"
            at = _parse_time(doc.get("created_at")) or modified_at(store, manifest)
            out.append(Consumer(manifest, doc.get("shard_version"), at))
            continue
        try:
            stone = json.loads(store.read_bytes(f"{folder}/{TOMBSTONE}"))
        except FileNotFoundError:
            continue
        out.append(
            Consumer(
                f"{folder}/{TOMBSTONE}",
                (stone.get("manifest") or {}).get("shard_version"),
                _parse_time(stone.get("manifest_modified_at")),
            )
        )
    return out


def index_consumer(store: Store, input_name: str, tenant: str, sample_id: str) -> Consumer | None:
    """What the vector index of a sample was last materialised from (its run manifest's
    `inputs[input_name]`) and when; None when it never was."""
    doc = read_latest_manifest(store, INDEX_ASSET, tenant, sample_id)
    if doc is None:
        return None
    version = (doc.get("inputs") or {}).get(input_name)
    at = _parse_time((doc.get("timing") or {}).get("finished_at"))
    return Consumer(manifest_dir(INDEX_ASSET, tenant, sample_id), version, at)
