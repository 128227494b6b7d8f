"""Raw sequence files to the Parquet shard layout of DESIGN.md ("Data layouts").

Streaming and bounded: the calling thread parses records with pysam into batches of ~1 Mbase
(joined buffers, see `readers`) and assigns ids (`sequence_ids`); the lanes (`shard_lanes`) take
alternate batches and normalise, filter and encode them into their own series of parts.

Row order: parts are numbered lane, lane + 2, ...; within a part, rows keep input order, and
consecutive batches alternate between the lanes' parts. `shard_reader.iter_shard_batches`
yields rows in manifest (part) order; the order is deterministic, though not the input order.

Commit protocol: parts are named `part-<version>-<NNNNN>.parquet`, where `version` hashes the
inputs (sha256s) and the config (`shard_config`), and `_manifest.json` is written last. Readers
trust only the manifest; part files not in it are deleted after it is committed, and parts of a
failed run are deleted without touching the committed ones. Same inputs and config give
byte-identical parts.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest import readers
from bioscan_assets.core.ingest.drops import DropFile, SampleDrop
from bioscan_assets.core.ingest.normalise import offsets_of
from bioscan_assets.core.ingest.sequence_ids import (
    IdAssigner,
    pair_read_numbers,
    sam_read_numbers,
    with_read_suffix,
)
from bioscan_assets.core.ingest.shard_config import (
    PART_RE,
    SHARD_FORMAT_VERSION,
    ShardConfig,
    config_dict,
    shard_version,
)
from bioscan_assets.core.ingest.shard_lanes import DROP_REASONS, Lane, PreparedBatch
from bioscan_assets.core.ingest.shard_reader import read_shard_manifest
from bioscan_assets.core.layout import shard_dir
from bioscan_assets.core.manifests import MANIFEST_NAME
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import parse_taxonomy

_EXAMPLES = 5
_PROGRESS_EVERY = 100_000_000


@dataclass
class FileStats:
    """One input file's counts, merged from the lanes into the manifest's `inputs`."""

    path: str
    format: str
    sha256: str
    read_number: int | str
    records: int = 0
    bases: int = 0
    rows: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    skipped_secondary: int = 0


def _taxonomy_table(store: Store, raw_manifest: Mapping[str, Any]) -> dict[str, str] | None:
    entry = raw_manifest.get("taxonomy")
    if not entry:
        return None
    return parse_taxonomy(store.read_bytes(entry["blob"]), name=entry["path"])


def write_shards(
    store: Store,
    drop: SampleDrop,
    raw_manifest: Mapping[str, Any],
    config: ShardConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write a sample's shards from its raw copy (see `raw.copy_drop`); return the manifest.

    `drop` is the sample.json kept in the raw manifest, parsed; its files are read from their
    content-addressed blobs, never from the landing area.
    """
    config = config or ShardConfig()
    tenant, sample_id = drop.tenant, drop.sample_id
    folder = shard_dir(tenant, sample_id)
    version = shard_version(raw_manifest, config)
    raw_files = {f["path"]: f for f in raw_manifest["files"]}
    references = {r["path"]: r for r in raw_manifest.get("references", [])}
    missing = [f.path for f in drop.files if f.path not in raw_files]
    if missing:
        raise DropError(missing[0], "listed in sample.json but absent from the raw manifest")
    try:
        committed = {f["path"] for f in read_shard_manifest(store, tenant, sample_id)["files"]}
    except FileNotFoundError:
        committed = set()

    taxa_table = _taxonomy_table(store, raw_manifest)
    matched: set[str] = set()
    fastx = [f.path for f in drop.files if f.format in ("fasta", "fastq")]
    pair_numbers = pair_read_numbers(fastx)
    files = [
        FileStats(f.path, f.format, f.sha256, pair_numbers.get(f.path, "flags")) for f in drop.files
    ]
    ids = IdAssigner()
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bioscan-shards-") as tmp:
        lanes = [
            Lane(
                i,
                config.writer_threads,
                store,
                folder,
                version,
                config,
                Path(tmp),
                drop,
                len(files),
            )
            for i in range(config.writer_threads)
        ]
        sequence = 0

        def submit(prepared: PreparedBatch) -> None:
            nonlocal sequence
            lanes[sequence % len(lanes)].submit(prepared)
            sequence += 1

        try:
            for index, item in enumerate(drop.files):
                _stream_file(
                    store,
                    item,
                    index,
                    raw_files[item.path],
                    references,
                    files[index],
                    pair_numbers.get(item.path, 0),
                    taxa_table,
                    matched,
                    ids,
                    config,
                    submit,
                    progress,
                    started,
                )
            for lane in lanes:
                lane.finish()
            if not any(lane.files for lane in lanes):
                lanes[0].write_empty_part()
        except BaseException:
            for lane in lanes:
                lane.abort()
            for lane in lanes:
                for name in lane.published:
                    if name not in committed:
                        store.delete(f"{folder}/{name}")
            raise

    for index, stats in enumerate(files):
        for lane in lanes:
            counts = lane.counts[index]
            stats.records += counts["records"]
            stats.bases += counts["bases"]
            stats.rows += counts["rows"]
            for reason in DROP_REASONS:
                stats.dropped[reason] += counts[reason]
    parts = sorted(
        (entry for lane in lanes for entry in lane.files), key=lambda entry: entry["path"]
    )
    rows = sum(lane.rows for lane in lanes)
    records = sum(f.records for f in files)
    dropped = {reason: sum(f.dropped[reason] for f in files) for reason in DROP_REASONS}
    if records - sum(dropped.values()) != rows or rows != sum(p["rows"] for p in parts):
        for lane in lanes:
            for name in lane.published:
                if name not in committed:
                    store.delete(f"{folder}/{name}")
        raise AssertionError("row accounting is off: rows != records read - filtered")
    manifest: dict[str, Any] = {
        "version": version,
        "format_version": SHARD_FORMAT_VERSION,
        "tenant": tenant,
        "sample_id": sample_id,
        "rows": rows,
        "files": parts,
        "records_read": records,
        "bases_read": sum(f.bases for f in files),
        "bases_written": sum(lane.bases_written for lane in lanes),
        "dropped": dropped,
        "skipped_secondary": sum(f.skipped_secondary for f in files),
        "duplicate_ids_renamed": ids.renamed,
        "duplicate_id_examples": ids.examples,
        "duplicate_set_bytes": ids.seen.nbytes,
        "config": config_dict(config),
        "inputs": {
            "manifest_sha256": raw_manifest["manifest_sha256"],
            "files": [asdict(f) for f in files],
            "taxonomy": None,
        },
        "taxonomy": None,
    }
    if taxa_table is not None:
        unmatched = [fid for fid in taxa_table if fid not in matched]
        entry = raw_manifest["taxonomy"]
        manifest["inputs"]["taxonomy"] = {"path": entry["path"], "sha256": entry["sha256"]}
        manifest["taxonomy"] = {
            "ids": len(taxa_table),
            "matched_ids": len(taxa_table) - len(unmatched),
            "unmatched_ids": len(unmatched),
            "unmatched_examples": unmatched[:_EXAMPLES],
            "rows_without_taxonomy": sum(lane.without_taxonomy for lane in lanes),
        }

    store.write_bytes(
        f"{folder}/{MANIFEST_NAME}",
        (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(),
    )
    keep = {f["path"] for f in parts}
    for rel in store.list_files(folder):
        name = rel.rsplit("/", 1)[-1]
        if PART_RE.fullmatch(name) and name not in keep:
            store.delete(rel)
    return manifest


def _stream_file(
    store: Store,
    item: DropFile,
    index: int,
    raw_entry: Mapping[str, Any],
    references: Mapping[str, Mapping[str, Any]],
    stats: FileStats,
    file_read_number: int,
    taxa_table: dict[str, str] | None,
    matched: set[str],
    ids: IdAssigner,
    config: ShardConfig,
    submit: Callable[[PreparedBatch], None],
    progress: Callable[[str], None] | None,
    started: float,
) -> None:
    """Parse one file on the calling thread and hand its batches to the lanes."""
    with contextlib.ExitStack() as stack:
        local = stack.enter_context(store.local_copy(raw_entry["blob"]))
        reference = None
        if item.reference:
            ref_local = stack.enter_context(store.local_copy(references[item.reference]["blob"]))
            reference = stack.enter_context(
                readers.indexed_reference(ref_local, name=item.reference)
            )
        next_report = _PROGRESS_EVERY
        bases = 0
        for batch in readers.iter_read_batches(
            local,
            item.format,
            name=item.path,
            reference=reference,
            batch_records=config.batch_records,
            batch_bases=config.batch_bases,
        ):
            stats.skipped_secondary += batch.skipped
            if not len(batch):
                continue
            if batch.flags is not None:
                numbers = sam_read_numbers(batch.flags)
                named = with_read_suffix(batch.names, numbers)
            else:
                numbers = np.full(len(batch), file_read_number, dtype=np.int8)
                named = with_read_suffix(batch.names, file_read_number)
            taxa = None
            if taxa_table is not None:
                taxa = list(map(taxa_table.get, batch.names))
                if taxa.count(None) < len(taxa):
                    matched.update(
                        n for n, t in zip(batch.names, taxa, strict=True) if t is not None
                    )
            offsets = offsets_of(batch.lengths)
            submit(
                PreparedBatch(
                    file_index=index,
                    ids=ids.assign(named),
                    sequences=batch.sequences,
                    offsets=offsets,
                    qualities=batch.qualities,
                    quality_lengths=batch.quality_lengths,
                    read_numbers=numbers,
                    taxa=taxa,
                )
            )
            bases += int(offsets[-1])
            if progress and bases >= next_report:
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress(
                    f"{item.path}: {bases / 1e6:.0f} Mbases read "
                    f"({bases / 1e6 / elapsed:.0f} Mbases/s so far)"
                )
                next_report += _PROGRESS_EVERY
