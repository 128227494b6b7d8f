"""The one reader of committed artefacts: a manifest written last, then the parts it lists.

Shards, embeddings and later layouts all commit the same way (parts first, `_manifest.json`
last), so one reader checks every part's recorded sha256 and row count before a byte is used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_assets.core.storage import Store

MANIFEST_NAME = "_manifest.json"


class CorruptArtefactError(ValueError):
    """A committed part that disagrees with its manifest (bytes or rows)."""


def read_manifest(store: Store, folder: str, missing_hint: str) -> dict[str, Any]:
    """The committed manifest of `folder`; FileNotFoundError saying what to materialise first."""
    rel = f"{folder}/{MANIFEST_NAME}"
    try:
        data = store.read_bytes(rel)
    except FileNotFoundError:
        raise FileNotFoundError(f"no manifest at {store.url(rel)}: {missing_hint}") from None
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError as exc:
        raise CorruptArtefactError(f"{store.url(rel)}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise CorruptArtefactError(f"{store.url(rel)}: field 'files' missing")
    return manifest


def iter_parts(
    store: Store,
    folder: str,
    manifest: dict[str, Any],
    columns: list[str] | None = None,
    batch_rows: int = 8192,
) -> Iterator[pa.RecordBatch]:
    """Rows of the listed parts in manifest order; each part's sha256 and rows are checked."""
    for entry in manifest["files"]:
        rel = f"{folder}/{entry['path']}"
        data = store.read_bytes(rel)
        if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CorruptArtefactError(f"{store.url(rel)}: sha256 differs from the manifest's")
        parquet = pq.ParquetFile(pa.BufferReader(data))
        if "rows" in entry and parquet.metadata.num_rows != entry["rows"]:
            raise CorruptArtefactError(
                f"{store.url(rel)} holds {parquet.metadata.num_rows} rows, its manifest says "
                f"{entry['rows']}"
            )
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)
