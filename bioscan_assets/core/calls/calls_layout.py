"""Commit a sample's calls under `taxonomy/tenant=<t>/sample=<s>/`, and read them back.

Same protocol as the shards: Parquet parts named by a version (a hash of the shard version
and the classifier's description), then the QIIME 2 `taxonomy.tsv`, then `_manifest.json`
last; readers trust only the manifest (`core.manifests`), and parts the manifest does not list
are deleted once it is committed. `taxonomy.tsv` is what `qiime tools import --type
'FeatureData[Taxonomy]'` reads: header `Feature ID<TAB>Taxon<TAB>Confidence`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_assets.core.calls.calls import CALLS_SCHEMA
from bioscan_assets.core.layout import taxonomy_dir
from bioscan_assets.core.manifests import MANIFEST_NAME, iter_parts, read_manifest
from bioscan_assets.core.storage import Store

CALLS_FORMAT_VERSION = 1
TSV_NAME = "taxonomy.tsv"
TSV_HEADER = "Feature ID\tTaxon\tConfidence\n"
PART_RE = re.compile(r"part-[0-9a-f]+-\d{5}\.parquet")


def calls_version(shard_version: str, classifier: dict[str, Any]) -> str:
    text = json.dumps(
        {"format": CALLS_FORMAT_VERSION, "shards": shard_version, "classifier": classifier},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _tsv_lines(table: pa.Table) -> str:
    ids = table.column("sequence_id").to_pylist()
    taxa = table.column("taxon").to_pylist()
    conf = table.column("confidence").to_pylist()
    return "".join(f"{i}\t{t}\t{c:.4f}\n" for i, t, c in zip(ids, taxa, conf, strict=True))


def write_calls(
    store: Store,
    tenant: str,
    sample_id: str,
    tables: Iterable[pa.Table],
    *,
    version: str,
    info: dict[str, Any] | Callable[[], dict[str, Any]],
    rows_per_part: int = 1_000_000,
) -> dict[str, Any]:
    """Write every table's rows as parts + taxonomy.tsv + manifest; returns the manifest.

    `info` (or what it returns, called once the tables are consumed) joins the manifest.
    """
    folder = taxonomy_dir(tenant, sample_id)
    parts: list[dict[str, Any]] = []
    pending: list[pa.Table] = []
    pending_rows = 0
    with tempfile.TemporaryDirectory(prefix="bioscan-calls-") as tmp:
        tsv_path = Path(tmp) / TSV_NAME
        with open(tsv_path, "w", encoding="utf-8", newline="\n") as tsv:
            tsv.write(TSV_HEADER)

            def flush() -> None:
                nonlocal pending, pending_rows
                table = pa.concat_tables(pending) if pending else CALLS_SCHEMA.empty_table()
                buffer = io.BytesIO()
                pq.write_table(table, buffer, compression="zstd")
                data = buffer.getvalue()
                name = f"part-{version}-{len(parts):05d}.parquet"
                store.write_bytes(f"{folder}/{name}", data)
                digest = hashlib.sha256(data).hexdigest()
                parts.append({"path": name, "rows": table.num_rows, "sha256": digest})
                pending, pending_rows = [], 0

            for table in tables:
                tsv.write(_tsv_lines(table))
                pending.append(table)
                pending_rows += table.num_rows
                if pending_rows >= rows_per_part:
                    flush()
            if pending or not parts:
                flush()
        with open(tsv_path, "rb") as handle:
            tsv_sha = hashlib.file_digest(handle, "sha256").hexdigest()
        tsv_bytes = os.path.getsize(tsv_path)
        store.put_file(tsv_path, f"{folder}/{TSV_NAME}")
    manifest = {
        "version": version,
        "format_version": CALLS_FORMAT_VERSION,
        "tenant": tenant,
        "sample_id": sample_id,
        "rows": sum(p["rows"] for p in parts),
        "files": parts,
        "exports": {"qiime2_taxonomy": {"path": TSV_NAME, "sha256": tsv_sha, "bytes": tsv_bytes}},
        **(info() if callable(info) else info),
    }
    store.write_bytes(
        f"{folder}/{MANIFEST_NAME}",
        (json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n").encode(),
    )
    keep = {p["path"] for p in parts}
    for rel in store.list_files(folder):
        name = rel.rsplit("/", 1)[-1]
        if PART_RE.fullmatch(name) and name not in keep:
            store.delete(rel)
    return manifest


def read_calls_manifest(store: Store, tenant: str, sample_id: str) -> dict[str, Any]:
    return read_manifest(
        store,
        taxonomy_dir(tenant, sample_id),
        f"materialise taxonomy_calls for partition {tenant}/{sample_id}",
    )


def iter_calls(
    store: Store, tenant: str, sample_id: str, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The committed calls of a sample, each part checked against the manifest."""
    manifest = read_calls_manifest(store, tenant, sample_id)
    yield from iter_parts(store, taxonomy_dir(tenant, sample_id), manifest, columns)
