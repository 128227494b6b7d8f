"""Commit a tenant's novelty result under `novelty/tenant=<t>/`, and read it back.

Same protocol as the other layouts: files named by the result's version (clusters and members
Parquet, the map PNG), then `_manifest.json` last; readers trust only the manifest
(`core.manifests` checks each part's sha256 and rows), and files of older versions are deleted
once the new manifest is committed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_assets.core.layout import novelty_dir
from bioscan_assets.core.manifests import MANIFEST_NAME, iter_parts, read_manifest
from bioscan_assets.core.storage import Store

NOVELTY_FORMAT_VERSION = 1
_VERSIONED = re.compile(r"(clusters|members|map)-[0-9a-f]+\.(parquet|png)")

CLUSTER_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("reads", pa.int64(), nullable=False),
        pa.field("distinct_sequences", pa.int64(), nullable=False),
        pa.field("samples", pa.list_(pa.string()), nullable=False),
        pa.field("dates", pa.list_(pa.string()), nullable=False),
        pa.field("first_seen", pa.string()),
        pa.field("last_seen", pa.string()),
        pa.field("medoid_sample_id", pa.string(), nullable=False),
        pa.field("medoid_sequence_id", pa.string(), nullable=False),
        pa.field("nearest_reference", pa.string(), nullable=False),  # <tenant>/<sample>/<id>
        pa.field("nearest_taxon", pa.string(), nullable=False),
        pa.field("nearest_distance", pa.float32(), nullable=False),  # from the medoid
        pa.field("median_distance", pa.float32(), nullable=False),  # members to their nearest
        pa.field("agreed_rank", pa.string()),
        pa.field("agreed_taxon", pa.string(), nullable=False),
        pa.field("map_x", pa.float32()),
        pa.field("map_y", pa.float32()),
    ]
)

MEMBER_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("sequence_id", pa.string(), nullable=False),
        pa.field("distance", pa.float32(), nullable=False),  # to the nearest reference
        pa.field("medoid", pa.bool_(), nullable=False),
    ]
)


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_novelty(
    store: Store,
    tenant: str,
    *,
    version: str,
    clusters: pa.Table,
    members: pa.Table,
    map_png: bytes | None,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Write the files, then the manifest; returns the manifest."""
    folder = novelty_dir(tenant)
    entries: dict[str, dict[str, Any]] = {}
    for name, table in (("clusters", clusters), ("members", members)):
        data = _parquet(table)
        path = f"{name}-{version}.parquet"
        store.write_bytes(f"{folder}/{path}", data)
        entries[name] = {
            "path": path,
            "rows": table.num_rows,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    picture = None
    if map_png is not None:
        picture = {"path": f"map-{version}.png", "sha256": hashlib.sha256(map_png).hexdigest()}
        store.write_bytes(f"{folder}/{picture['path']}", map_png)
    manifest = {
        **info,
        "version": version,
        "format_version": NOVELTY_FORMAT_VERSION,
        "tenant": tenant,
        "rows": clusters.num_rows,
        "files": [entries["clusters"]],
        "members": entries["members"],
        "map": picture,
    }
    store.write_bytes(
        f"{folder}/{MANIFEST_NAME}",
        (json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n").encode(),
    )
    keep = {entries["clusters"]["path"], entries["members"]["path"]}
    keep |= {picture["path"]} if picture else set()
    for rel in store.list_files(folder):
        name = rel.rsplit("/", 1)[-1]
        if _VERSIONED.fullmatch(name) and name not in keep:
            store.delete(rel)
    return manifest


def read_novelty_manifest(store: Store, tenant: str) -> dict[str, Any]:
    return read_manifest(
        store,
        novelty_dir(tenant),
        f"materialise novelty_clusters for tenant {tenant} (after its taxonomy_calls)",
    )


def previous_manifest(store: Store, tenant: str) -> dict[str, Any] | None:
    try:
        return read_novelty_manifest(store, tenant)
    except FileNotFoundError:
        return None


def read_clusters(store: Store, tenant: str, manifest: dict[str, Any] | None = None) -> pa.Table:
    manifest = manifest or read_novelty_manifest(store, tenant)
    batches = list(iter_parts(store, novelty_dir(tenant), manifest))
    return pa.Table.from_batches(batches) if batches else CLUSTER_SCHEMA.empty_table()


def iter_members(store: Store, tenant: str, manifest: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    yield from iter_parts(store, novelty_dir(tenant), {"files": [manifest["members"]]})


def read_map(store: Store, tenant: str, manifest: dict[str, Any]) -> bytes | None:
    """The map PNG the manifest lists, checked against its sha256; None when there is none."""
    picture = manifest.get("map")
    if not picture:
        return None
    data = store.read_bytes(f"{novelty_dir(tenant)}/{picture['path']}")
    if hashlib.sha256(data).hexdigest() != picture["sha256"]:
        raise ValueError(
            f"{store.url(novelty_dir(tenant))}: map sha256 differs from the manifest's"
        )
    return data
