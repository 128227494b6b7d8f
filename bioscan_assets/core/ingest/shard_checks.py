"""What the `sequence_shards` asset checks measure, as plain data (the checks only judge it).

These look at the committed parts themselves (Parquet footers, ids), not only at what the
manifest claims, so a tampered or half-replaced shard folder is caught.
"""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from bioscan_assets.core.ingest.sequence_ids import HashSet64, hash_ids
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches
from bioscan_assets.core.layout import shard_dir
from bioscan_assets.core.schema import SHARD_SCHEMA
from bioscan_assets.core.storage import Store

_EXAMPLES = 5


def rows_in_parts(store: Store, tenant: str, sample_id: str, manifest: dict[str, Any]) -> int:
    """Rows the listed parts hold, from their Parquet footers."""
    folder = shard_dir(tenant, sample_id)
    rows = 0
    for entry in manifest["files"]:
        with store.open_read(f"{folder}/{entry['path']}") as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    return rows


def parts_off_schema(
    store: Store, tenant: str, sample_id: str, manifest: dict[str, Any]
) -> list[str]:
    """Listed parts whose schema is not the shard schema of DESIGN.md (names, types, order)."""
    folder = shard_dir(tenant, sample_id)
    mismatched = []
    for entry in manifest["files"]:
        with store.open_read(f"{folder}/{entry['path']}") as handle:
            schema = pq.read_schema(handle)
        if not schema.equals(SHARD_SCHEMA, check_metadata=False):
            mismatched.append(entry["path"])
    return mismatched


def duplicate_sequence_ids(store: Store, tenant: str, sample_id: str) -> tuple[int, list[str]]:
    """(count, a few examples) of sequence_ids appearing more than once in a sample's shards.

    Two streaming passes with 8 bytes per row: 64-bit hashes find candidates, then the
    candidates' actual strings are compared, so a hash collision is never reported.
    """
    seen = HashSet64()
    candidates: set[int] = set()
    for batch in iter_shard_batches(store, tenant, sample_id, columns=["sequence_id"]):
        ids = batch.column(0).to_pylist()
        hashes = hash_ids(ids)
        order = hashes.argsort(kind="stable")
        ordered = hashes[order]
        again = seen.contains(ordered)
        again[1:] |= ordered[1:] == ordered[:-1]
        candidates.update(int(h) for h in ordered[again])
        seen.add(ordered)
    if not candidates:
        return 0, []
    counts: dict[str, int] = {}
    for batch in iter_shard_batches(store, tenant, sample_id, columns=["sequence_id"]):
        ids = batch.column(0).to_pylist()
        for value, digest in zip(ids, hash_ids(ids).tolist(), strict=True):
            if digest in candidates:
                counts[value] = counts.get(value, 0) + 1
    duplicated = sorted(value for value, n in counts.items() if n > 1)
    return sum(counts[v] - 1 for v in duplicated), duplicated[:_EXAMPLES]
