"""Raw sequence files to the Parquet shard layout of DESIGN.md ("Data layouts").

Streaming and bounded: the calling thread parses records with pysam into batches of ~1 Mbase
(joined buffers, see `readers`) and assigns ids; two writer threads ("lanes") take alternate
batches and do the rest with whole-batch numpy/Arrow operations (no per-base Python):
normalisation, statistics, QC, the Arrow table, and Parquet encoding into their own series of
parts. pysam holds the GIL, numpy/Arrow/the Parquet encoder mostly release it, so parsing and
compression overlap. Each lane queues at most two batches, so peak memory does not grow with
input size. The one structure that grows is the duplicate-id set: 8 bytes per read (64-bit
xxh3 hashes in sorted numpy runs), about 80 MB for 10 million reads.

Row order: parts are numbered lane, lane + 2, ...; within a part, rows keep input order, and
consecutive batches alternate between the lanes' parts. `iter_shard_batches` yields rows in
manifest (part) order; the order is deterministic, though not the input order.

Commit protocol: parts are named `part-<version>-<NNNNN>.parquet`, where `version` hashes the
inputs (sha256s) and the config, and `_manifest.json` is written last. Readers trust only the
manifest; part files not in it are deleted after it is committed, and parts of a failed run are
deleted without touching the committed ones. Same inputs and config give byte-identical parts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest import readers
from bioscan_assets.core.ingest.drops import DropFile, SampleDrop
from bioscan_assets.core.layout import shard_dir
from bioscan_assets.core.schema import SHARD_SCHEMA
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import parse_taxonomy

# Bump when the bytes written for the same inputs and config change.
SHARD_FORMAT_VERSION = 1
MANIFEST_NAME = "_manifest.json"
PART_RE = re.compile(r"part-[0-9a-f]+-\d{5}\.parquet")
DROP_REASONS = ("too_short", "too_many_n")
_EXAMPLES = 5

# Normalisation table: upper case, U->T, every other byte (IUPAC codes, gaps, '?', ...) -> N.
_NORMALISE = bytearray(b"N" * 256)
for _src, _dst in zip(b"ACGTUacgtu", b"ACGTTACGTT", strict=True):
    _NORMALISE[_src] = _dst
NORMALISE_TABLE = bytes(_NORMALISE)
_A, _C, _G, _T, _N = (ord(c) for c in "ACGTN")


_CODECS = {"zstd", "snappy", "lz4", "gzip", "brotli", "none"}
_LEVELLED = {"zstd", "gzip", "brotli"}


@dataclass(frozen=True)
class ShardConfig:
    """QC and layout knobs; every field feeds the shard version."""

    min_length: int = 50
    max_n_fraction: float = 0.1
    rows_per_part: int = 1_000_000
    bases_per_part: int = 256_000_000
    compression: str = "zstd"
    compression_level: int | None = 1
    batch_records: int = readers.BATCH_RECORDS
    batch_bases: int = readers.BATCH_BASES
    # Parts are written by this many threads, batches alternating between them (so rows of
    # consecutive batches land in different parts); fixed, never taken from the CPU count,
    # because it decides the bytes written.
    writer_threads: int = 2

    def __post_init__(self) -> None:
        if self.min_length < 0:
            raise ValueError("min_length must be >= 0")
        if not 0.0 <= self.max_n_fraction <= 1.0:
            raise ValueError("max_n_fraction must be within [0, 1]")
        if self.rows_per_part < 1 or self.bases_per_part < 1:
            raise ValueError("rows_per_part and bases_per_part must be >= 1")
        if self.writer_threads < 1:
            raise ValueError("writer_threads must be >= 1")
        if self.compression not in _CODECS:
            raise ValueError(f"compression must be one of {', '.join(sorted(_CODECS))}")


# --- batch arithmetic ----------------------------------------------------------------------


def normalise(sequences: bytes) -> bytes:
    """Upper case, U->T, anything else -> N, over a whole batch at once."""
    return sequences.translate(NORMALISE_TABLE)


def _classify(sequences: bytes) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(bytes as uint8, G/C mask, N mask), or values None when a byte is not in ACGTN.

    Most batches are already upper-case ACGT(N): a few SIMD compares prove it, which costs less
    than translating every byte, and the masks are needed for the statistics anyway.
    """
    values = np.frombuffer(sequences, dtype=np.uint8)
    gc_mask = values == _G
    gc_mask |= values == _C
    n_mask = values == _N
    known = np.count_nonzero(gc_mask) + np.count_nonzero(n_mask)
    known += np.count_nonzero(values == _A) + np.count_nonzero(values == _T)
    if known != len(values):
        return None, gc_mask, n_mask
    return values, gc_mask, n_mask


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def segment_counts(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-segment number of True values of a bool array (segments given by `offsets`).

    Bit-packs the mask and counts with popcount on 64-bit words, ~10x faster than
    `np.add.reduceat` on bytes, which matters at hundreds of Mbases per second.
    """
    bits = np.packbits(mask, bitorder="little")
    pad = (-len(bits)) % 8 + 8  # one spare zero word, so offsets at the very end index safely
    words = np.concatenate([bits, np.zeros(pad, dtype=np.uint8)]).view("<u8")
    before = np.zeros(len(words) + 1, dtype=np.int64)
    np.cumsum(np.bitwise_count(words), out=before[1:])
    word = offsets >> 6
    shift = (offsets & 63).astype(np.uint64)
    partial = words[word] & ((np.uint64(1) << shift) - np.uint64(1))
    prefix = before[word] + np.bitwise_count(partial)
    return np.diff(prefix)


# --- ids -------------------------------------------------------------------------------------


class HashSet64:
    """A set of 64-bit hashes held as sorted numpy runs merged like an LSM tree: 8 bytes an
    entry (a Python set of ints costs ~70), amortised O(log n) per insert."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(run.nbytes for run in self._runs)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            idx = np.searchsorted(run, hashes)
            idx[idx == len(run)] = 0
            found |= run[idx] == hashes
        return found

    def add(self, hashes: np.ndarray) -> None:
        if not len(hashes):
            return
        self._runs.append(_sorted_unique(hashes))
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            last = self._runs.pop()
            self._runs[-1] = _sorted_unique(np.concatenate([self._runs[-1], last]))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # A stable sort is a merge sort that finds the sorted runs: merging two runs is linear.
    out = np.sort(values, kind="stable")
    if len(out) > 1:
        keep = np.ones(len(out), dtype=bool)
        keep[1:] = out[1:] != out[:-1]
        if not keep.all():
            out = out[keep]
    return out


def hash_ids(ids: Sequence[str]) -> np.ndarray:
    return np.fromiter(
        map(xxhash.xxh3_64_intdigest, map(str.encode, ids)), dtype=np.uint64, count=len(ids)
    )


class IdAssigner:
    """Unique, deterministic sequence ids across a sample.

    The first occurrence of an id keeps it; later ones become `id#2`, `id#3`, ... (the
    smallest free number). A hash collision can only rename a record that did not need it
    (never let a duplicate through), and the same input always collides the same way.
    """

    _HINTS_MAX = 100_000

    def __init__(self) -> None:
        self.seen = HashSet64()
        self.renamed = 0
        self.examples: list[str] = []
        # Where to start probing for a base id; only a shortcut: results are the same without.
        self._next_suffix: dict[str, int] = {}

    def assign(self, ids: list[str]) -> list[str]:
        hashes = hash_ids(ids)
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        # Sorted queries make the binary searches cache-friendly; a repeat within the batch
        # sits next to its first occurrence (stable sort: the earlier record comes first).
        repeat = np.zeros(len(ids), dtype=bool)
        repeat[1:] = ordered[1:] == ordered[:-1]
        known = self.seen.contains(ordered)
        if not (repeat.any() or known.any()):
            self.seen.add(ordered)
            return ids
        duplicate = np.zeros(len(ids), dtype=bool)
        duplicate[order] = repeat | known
        self.seen.add(hashes[~duplicate])
        ids = list(ids)
        fresh: set[int] = set()
        for i in np.flatnonzero(duplicate).tolist():
            base = ids[i]
            k = self._next_suffix.get(base, 2)
            while True:
                candidate = f"{base}#{k}"
                digest = xxhash.xxh3_64_intdigest(candidate.encode())
                if (
                    digest not in fresh
                    and not self.seen.contains(np.array([digest], dtype=np.uint64))[0]
                ):
                    break
                k += 1
            if len(self._next_suffix) >= self._HINTS_MAX:
                self._next_suffix.clear()
            self._next_suffix[base] = k + 1
            ids[i] = candidate
            fresh.add(digest)
            self.renamed += 1
            if len(self.examples) < _EXAMPLES:
                self.examples.append(base)
        self.seen.add(np.fromiter(fresh, dtype=np.uint64, count=len(fresh)))
        return ids


_PAIR_PATTERNS = (
    re.compile(r"(?<=[._-])R([12])(?=[._-]|$)"),  # run1_R1.fastq.gz, x_R2_001.fq
    re.compile(r"(?<=[._-])([12])$"),  # sample_1.fastq, sample.2.fq
)
_EXTENSIONS = re.compile(r"(\.(fasta|fa|fna|fastq|fq))?(\.(gz|bgz|bgzf))?$", re.IGNORECASE)


def pair_read_numbers(paths: Sequence[str]) -> dict[str, int]:
    """Read number (1/2) of FASTA/FASTQ files that form an R1/R2 pair by name, else 0.

    Both halves must be in the drop: a lone `x_R1.fq` is single-end as far as ids go.
    """
    stems = {}
    for path in paths:
        folder, _, base = path.rpartition("/")
        stems[path] = (folder, _EXTENSIONS.sub("", base), base[len(_EXTENSIONS.sub("", base)) :])
    by_key = {(folder, stem, ext): path for path, (folder, stem, ext) in stems.items()}
    out = dict.fromkeys(paths, 0)
    for path, (folder, stem, ext) in stems.items():
        for pattern in _PAIR_PATTERNS:
            matches = list(pattern.finditer(stem))
            if not matches:
                continue
            m = matches[-1]
            number = int(m.group(1))
            other = "2" if number == 1 else "1"
            partner = stem[: m.start(1)] + other + stem[m.end(1) :]
            if (folder, partner, ext) in by_key:
                out[path] = number
                break
    return out


def _sam_read_numbers(flags: list[int]) -> np.ndarray:
    f = np.asarray(flags, dtype=np.int64)
    first = (f & 0x40) != 0
    second = (f & 0x80) != 0
    return np.where(first & ~second, 1, np.where(second & ~first, 2, 0)).astype(np.int8)


def _with_read_suffix(names: list[str], numbers: np.ndarray | int) -> list[str]:
    """`name/1`, `name/2` for paired reads; a name already ending in its `/1` keeps one."""
    if isinstance(numbers, int):
        if numbers == 0:
            return names
        suffix = f"/{numbers}"
        return [n if n.endswith(suffix) else n + suffix for n in names]
    if not numbers.any():
        return names
    out = []
    for n, k in zip(names, numbers.tolist(), strict=True):
        if k:
            suffix = f"/{k}"
            n = n if n.endswith(suffix) else n + suffix
        out.append(n)
    return out


# --- writing ---------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """One batch after the main thread's share of the work."""

    file_index: int
    ids: list[str]
    sequences: bytes  # as read; normalised on the lane
    offsets: np.ndarray
    qualities: bytes | None
    quality_lengths: np.ndarray | None
    read_numbers: np.ndarray
    taxa: list[str | None] | None


@dataclass
class FileStats:
    path: str
    format: str
    sha256: str
    read_number: int | str
    records: int = 0
    bases: int = 0
    rows: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    skipped_secondary: int = 0


def _writer_options(config: ShardConfig) -> dict[str, Any]:
    small_strings = ["taxonomy", "tenant", "sample_id", "source_file"]
    return {
        "compression": config.compression,
        "compression_level": (
            config.compression_level if config.compression in _LEVELLED else None
        ),
        # Dictionary pages pay off only for the repeated columns; long unique strings are
        # written plain and without min/max statistics (which would copy each long value).
        "use_dictionary": small_strings,
        "write_statistics": [
            "sequence_id",
            "depth",
            "latitude",
            "longitude",
            "read_number",
            "length",
            "gc_fraction",
            "n_fraction",
            "mean_quality",
            *small_strings,
        ],
        "version": "2.6",
        "data_page_version": "1.0",
    }


def part_name(version: str, index: int) -> str:
    return f"part-{version}-{index:05d}.parquet"


class _Lane:
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
        self._options = _writer_options(config)
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
    def submit(self, batch: _Prepared) -> None:
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

    # run on the lane's thread
    def _process(self, batch: _Prepared) -> None:
        table, lengths_kept = self._table(batch)
        if table is not None:
            self._write(table, lengths_kept)

    def _table(self, batch: _Prepared) -> tuple[pa.Table | None, np.ndarray]:
        counts = self.counts[batch.file_index]
        offsets = batch.offsets
        n = len(batch.ids)
        sequences = batch.sequences
        lengths = np.diff(offsets)
        values, gc_mask, n_mask = _classify(sequences)
        if values is None:  # lower case, U or IUPAC codes somewhere: translate the batch
            sequences = normalise(sequences)
            values, gc_mask, n_mask = _classify(sequences)
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
            mean, valid = _mean_quality(batch.qualities, batch.quality_lengths)
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

    def write_empty_part(self) -> None:
        """A sample whose reads were all filtered out still gets one (schema-only) part."""
        self._open()
        self._finish_part()


def _mean_quality(qualities: bytes, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean Phred score per record (Sanger offset 33); invalid where a record has none."""
    values = np.frombuffer(qualities, dtype=np.uint8)
    n = len(lengths)
    if n and len(values) == n * int(lengths[0]) and (lengths == lengths[0]).all():
        # Fixed-length reads (the usual Illumina case): a 2-D row sum, no segment bookkeeping.
        sums = values.reshape(n, -1).sum(axis=1, dtype=np.int64)
    else:
        starts = offsets_of(lengths)[:-1]
        nonempty = lengths > 0
        sums = np.zeros(n, dtype=np.int64)
        if nonempty.any():
            sums[nonempty] = np.add.reduceat(values, starts[nonempty], dtype=np.int64)
    valid = lengths > 0
    mean = np.maximum(sums - 33 * lengths, 0) / np.maximum(lengths, 1)
    return mean, valid


# --- the whole sample ------------------------------------------------------------------------


def config_dict(config: ShardConfig) -> dict[str, Any]:
    return asdict(config)


def shard_version(raw_manifest: Mapping[str, Any], config: ShardConfig) -> str:
    """Short content hash of everything that decides the shard bytes."""
    inputs = {
        "format_version": SHARD_FORMAT_VERSION,
        "manifest_sha256": raw_manifest["manifest_sha256"],
        "files": [(f["path"], f["sha256"]) for f in raw_manifest["files"]],
        "references": [(r["path"], r["sha256"]) for r in raw_manifest.get("references", [])],
        "taxonomy": (raw_manifest.get("taxonomy") or {}).get("sha256"),
        "config": config_dict(config),
        "arrow": pa.__version__,
    }
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _manifest_rel(tenant: str, sample_id: str) -> str:
    return f"{shard_dir(tenant, sample_id)}/{MANIFEST_NAME}"


def read_shard_manifest(store: Store, tenant: str, sample_id: str) -> dict:
    """The committed shard manifest of a sample; FileNotFoundError when there is none."""
    rel = _manifest_rel(tenant, sample_id)
    try:
        data = store.read_bytes(rel)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no shard manifest at {store.url(rel)}: materialise sequence_shards for "
            f"partition {tenant}/{sample_id} first"
        ) from None
    return json.loads(data)


def iter_shard_batches(
    store: Store,
    tenant: str,
    sample_id: str,
    columns: list[str] | None = None,
    batch_rows: int = 8192,
) -> Iterator[pa.RecordBatch]:
    """Rows of a sample's shards in manifest order, streamed part by part."""
    manifest = read_shard_manifest(store, tenant, sample_id)
    folder = shard_dir(tenant, sample_id)
    for entry in manifest["files"]:
        with store.open_read(f"{folder}/{entry['path']}") as handle:
            parquet = pq.ParquetFile(handle)
            if parquet.metadata.num_rows != entry["rows"]:
                raise ValueError(
                    f"{store.url(folder)}/{entry['path']} holds {parquet.metadata.num_rows} rows, "
                    f"its manifest says {entry['rows']}"
                )
            yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)


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
            _Lane(
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

        def submit(prepared: _Prepared) -> None:
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
        _manifest_rel(tenant, sample_id),
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
    submit: Callable[[_Prepared], None],
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
                numbers = _sam_read_numbers(batch.flags)
                named = _with_read_suffix(batch.names, numbers)
            else:
                numbers = np.full(len(batch), file_read_number, dtype=np.int8)
                named = _with_read_suffix(batch.names, file_read_number)
            taxa = None
            if taxa_table is not None:
                taxa = list(map(taxa_table.get, batch.names))
                if taxa.count(None) < len(taxa):
                    matched.update(
                        n for n, t in zip(batch.names, taxa, strict=True) if t is not None
                    )
            offsets = offsets_of(batch.lengths)
            submit(
                _Prepared(
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


_PROGRESS_EVERY = 100_000_000
_LANE_QUEUE = 2
