"""The shard writer's lanes: each a thread that turns prepared batches into its own parts.

The calling thread parses and assigns ids; a lane does the rest with whole-batch numpy/Arrow
operations (no per-base Python): normalisation, statistics, QC, the sequence hash (one C call
per row), the Arrow table, and Parquet encoding. pysam holds the GIL, numpy/Arrow/the Parquet encoder mostly release it, so parsing and
compression overlap. Each lane queues at most two batches, so peak memory does not grow with
input size. Lane `i` of `n` writes parts `i`, `i + n`, ...; within a part rows keep input order.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bioscan_assets.core.ingest.drops import SampleDrop
from bioscan_assets.core.ingest.normalise import (
    classify_bases,
    mean_quality,
    normalise,
    segment_counts,
)
from bioscan_assets.core.ingest.sequence_hash import hash_segments
from bioscan_assets.core.ingest.shard_config import ShardConfig, parquet_writer_options, part_name
from bioscan_assets.core.schema import SHARD_SCHEMA
from bioscan_assets.core.storage import Store

DROP_REASONS = ("too_short", "too_many_n")
_LANE_QUEUE = 2


@dataclass
class PreparedBatch:
    """One batch after the calling thread's share of the work (parsed, ids assigned)."""

    file_index: int
    ids: list[str]
    sequences: bytes  # as read; normalised on the lane
    offsets: np.ndarray
    qualities: bytes | None
    quality_lengths: np.ndarray | None
    read_numbers: np.ndarray
    taxa: list[str | None] | None


class Lane:
    """One writer thread and its own series of parts (indices lane, lane + lanes, ...).

    Batches alternate between lanes so that two Parquet encoders compress at once; each lane
    owns its counters, merged after the run, so no locks are needed.
    """

    def __init__(
        self,
        lane: int,
        lanes: int,
        store: Store,
        folder: str,
        version: str,
        config: ShardConfig,
        tmp: Path,
        drop: SampleDrop,
        n_files: int,
    ):
        self.lane, self.lanes = lane, lanes
        self.store, self.folder, self.version, self.config = store, folder, version, config
        self.tmp = tmp
        self.files: list[dict[str, Any]] = []  # finished parts: path, rows, bytes, sha256
        self.published: list[str] = []
        self.counts = [
            dict.fromkeys(("records", "bases", "rows", *DROP_REASONS), 0) for _ in range(n_files)
        ]
        self.rows = 0
        self.bases_written = 0
        self.without_taxonomy = 0
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._part_rows = 0
        self._part_bases = 0
        self._options = parquet_writer_options(config)
        self._local_dir = store.local_path(folder)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bioscan-lane{lane}")
        self._pending: deque[Future] = deque()
        self._constants = {
            "depth": pa.scalar(drop.depth_m, pa.float64()),
            "latitude": pa.scalar(drop.latitude, pa.float64()),
            "longitude": pa.scalar(drop.longitude, pa.float64()),
            "tenant": pa.scalar(drop.tenant, pa.string()),
            "sample_id": pa.scalar(drop.sample_id, pa.string()),
        }
        self._sources = [pa.scalar(f.path, pa.string()) for f in drop.files]

    # called from the main thread
    def submit(self, batch: PreparedBatch) -> None:
        # A short queue per lane rides out uneven batches without holding many in memory.
        while len(self._pending) >= _LANE_QUEUE:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._process, batch))

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def finish(self) -> None:
        self.wait()
        self._pool.submit(self._close).result()
        self._pool.shutdown(wait=True)

    def abort(self) -> None:
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            with contextlib.suppress(BaseException):
                future.result()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    def write_empty_part(self) -> None:
        """A sample whose reads were all filtered out still gets one (schema-only) part."""
        self._open()
        self._finish_part()

    # run on the lane's thread
    def _process(self, batch: PreparedBatch) -> None:
        table, lengths_kept = self._table(batch)
        if table is not None:
            self._write(table, lengths_kept)

    def _table(self, batch: PreparedBatch) -> tuple[pa.Table | None, np.ndarray]:
        counts = self.counts[batch.file_index]
        offsets = batch.offsets
        n = len(batch.ids)
        sequences = batch.sequences
        lengths = np.diff(offsets)
        values, gc_mask, n_mask = classify_bases(sequences)
        if values is None:  # lower case, U or IUPAC codes somewhere: translate the batch
            sequences = normalise(sequences)
            values, gc_mask, n_mask = classify_bases(sequences)
            assert values is not None
        n_count = segment_counts(n_mask, offsets) if n_mask.any() else np.zeros(n, np.int64)
        gc_count = segment_counts(gc_mask, offsets)
        called = lengths - n_count
        gc_fraction = (gc_count / np.maximum(called, 1)).astype(np.float32)
        n_fraction = (n_count / np.maximum(lengths, 1)).astype(np.float32)

        too_short = lengths < self.config.min_length
        too_many_n = ~too_short & (n_count > self.config.max_n_fraction * lengths)
        keep = ~(too_short | too_many_n)
        kept = int(np.count_nonzero(keep))
        counts["records"] += n
        counts["bases"] += int(offsets[-1])
        counts["too_short"] += int(np.count_nonzero(too_short))
        counts["too_many_n"] += int(np.count_nonzero(too_many_n))
        counts["rows"] += kept
        if kept == 0:
            return None, lengths[:0]

        if batch.qualities is not None:
            mean, valid = mean_quality(batch.qualities, batch.quality_lengths)
            quality = pa.array(mean.astype(np.float32), mask=~valid)
        else:
            quality = pa.nulls(n, pa.float32())
        columns = {
            "sequence_id": pa.array(batch.ids, pa.string()),
            "dna_sequence": pa.StringArray.from_buffers(
                n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(sequences)
            ),
            "taxonomy": (
                pa.array(batch.taxa, pa.string())
                if batch.taxa is not None
                else pa.nulls(n, pa.string())
            ),
            "read_number": pa.array(batch.read_numbers, pa.int8()),
            "length": pa.array(lengths.astype(np.int32)),
            "gc_fraction": pa.array(gc_fraction),
            "n_fraction": pa.array(n_fraction),
            "mean_quality": quality,
            "sequence_hash": hash_segments(sequences, offsets),
        }
        if kept < n:
            mask = pa.array(keep)
            columns = {key: pc.filter(col, mask) for key, col in columns.items()}
            lengths = lengths[keep]
        constants = self._constants | {"source_file": self._sources[batch.file_index]}
        arrays = [
            columns[f.name] if f.name in columns else pa.repeat(constants[f.name], kept)
            for f in SHARD_SCHEMA
        ]
        table = pa.Table.from_arrays(arrays, schema=SHARD_SCHEMA)
        if batch.taxa is not None:
            self.without_taxonomy += table.column("taxonomy").null_count
        self.rows += kept
        self.bases_written += int(lengths.sum())
        return table, lengths

    def _index(self) -> int:
        return self.lane + self.lanes * len(self.files)

    def _open(self) -> None:
        name = part_name(self.version, self._index())
        if self._local_dir is not None:  # write beside the target, publish by rename
            self._local_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._local_dir, prefix=f".{name}.", suffix=".tmp")
            os.close(fd)
            self._path = Path(tmp)
        else:
            self._path = self.tmp / name
        self._writer = pq.ParquetWriter(str(self._path), SHARD_SCHEMA, **self._options)
        self._part_rows = self._part_bases = 0

    def _write(self, table: pa.Table, lengths: np.ndarray) -> None:
        """Append rows, closing a part at rows_per_part rows or bases_per_part bases."""
        ends = np.cumsum(lengths)
        start = 0
        while start < table.num_rows:
            if self._writer is None:
                self._open()
            take = min(self.config.rows_per_part - self._part_rows, table.num_rows - start)
            base0 = int(ends[start - 1]) if start else 0
            room = self.config.bases_per_part - self._part_bases
            fits = int(np.searchsorted(ends[start : start + take] - base0, room, side="right"))
            full = fits < take
            if full:  # a single read longer than a whole part still goes somewhere
                take = max(fits, 1 if self._part_rows == 0 else 0)
            if take:
                self._writer.write_table(table.slice(start, take), row_group_size=take)
                self._part_rows += take
                self._part_bases += int(ends[start + take - 1]) - base0
                start += take
            if full or self._part_rows >= self.config.rows_per_part:
                self._finish_part()

    def _finish_part(self) -> None:
        assert self._writer is not None and self._path is not None
        self._writer.close()
        name = part_name(self.version, self._index())
        digest = hashlib.sha256()
        with open(self._path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        size = self._path.stat().st_size
        if self._local_dir is not None:
            os.replace(self._path, self._local_dir / name)
        else:
            self.store.put_file(self._path, f"{self.folder}/{name}")
            self._path.unlink()
        self.published.append(name)
        self.files.append(
            {"path": name, "rows": self._part_rows, "bytes": size, "sha256": digest.hexdigest()}
        )
        self._writer = None
        self._path = None

    def _close(self) -> None:
        if self._writer is not None:
            self._finish_part()
