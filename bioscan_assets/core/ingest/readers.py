"""One streaming reader for every sequence format in the lab-drop contract, through pysam.

Records come out in batches (`ReadBatch`: joined buffers, not per-record objects) so that callers
can normalise and summarise whole batches with bytes/numpy operations instead of Python loops.
pysam's own errors are terse ("unknown problem parsing x"); when one happens, a slow pure-Python
scan of the file finds the exact line and says what is wrong with it. Errors are `DropError`s
whose location is `<file> line <L>` or `<file> record <N>` with the file named as the lab listed
it (blobs in raw storage have no meaningful name). No message quotes sequence data.

CRAM: htslib fetches missing references from the EBI server by default (REF_PATH) and caches
them (REF_CACHE); while a CRAM is open both point at an empty local folder, so only the
reference the drop lists (or one the file itself embeds) is ever used.
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest.formats import SequenceFormat

# A batch ends at whichever limit comes first: memory stays bounded for 100 kb reads and
# per-batch overheads stay small for 150 bp ones.
BATCH_RECORDS = 32_768
BATCH_BASES = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 1 << 16
_BINARY = re.compile(rb"[^\t\n\r\x20-\x7e]")
_SAM_SECONDARY = 0x100
_SAM_SUPPLEMENTARY = 0x800
_SAM_REVERSE = 0x10


@dataclass
class ReadBatch:
    """Consecutive records of one file, as joined buffers rather than per-record objects.

    `sequences` holds every sequence back to back (ASCII; a non-ASCII character becomes one
    '?'), split by `lengths`. `qualities`/`quality_lengths` likewise, or None for FASTA; a
    BAM/CRAM record stored without qualities has quality length 0. `flags` holds SAM flags
    (BAM/CRAM only). `first_record` is the 1-based number of the batch's first record.
    """

    names: list[str]
    sequences: bytes
    lengths: np.ndarray
    qualities: bytes | None
    quality_lengths: np.ndarray | None
    flags: np.ndarray | None
    first_record: int
    skipped: int = 0  # secondary/supplementary alignments passed over (BAM/CRAM)

    def __len__(self) -> int:
        return len(self.names)


class _Builder:
    """Collects records; joins sequence and quality strings every `_CHUNK` records.

    Short reads are the reason: 65k records held as separate str objects spread over many
    small-object arenas that CPython returns to the OS when a batch dies, and the next batch
    pays a page fault per 4 KiB again (expensive in VMs). Joining as we go keeps only a few
    hundred small strings alive at a time.
    """

    _CHUNK = 256

    def __init__(self, with_quals: bool, with_flags: bool):
        self.names: list[str] = []
        self.seqs: list[str] = []
        self.quals: list[str | None] = []
        self.flags: list[int] = []
        self._with_quals = with_quals
        self._with_flags = with_flags
        self._seq_chunks: list[str] = []
        self._qual_chunks: list[str] = []
        self._lengths: list[int] = []
        self._qual_lengths: list[int] = []
        self.bases = 0
        self.missing_quals = 0
        self.first_missing: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def flush_chunk(self) -> None:
        seqs, quals = self.seqs, self.quals
        if not seqs:
            return
        lengths = list(map(len, seqs))
        self._lengths.extend(lengths)
        self.bases += sum(lengths)
        self._seq_chunks.append("".join(seqs))
        if self._with_quals:
            missing = quals.count(None)
            if missing:
                if self.first_missing is None:
                    self.first_missing = len(self._qual_lengths) + quals.index(None)
                self.missing_quals += missing
                quals = [q or "" for q in quals]
            self._qual_lengths.extend(map(len, quals))
            self._qual_chunks.append("".join(quals))
        self.seqs, self.quals = [], []

    def build(self, first_record: int, skipped: int = 0) -> ReadBatch:
        self.flush_chunk()
        lengths = np.array(self._lengths, dtype=np.int64)
        qualities = quality_lengths = None
        if self._with_quals:
            qualities = "".join(self._qual_chunks).encode("ascii", "replace")
            quality_lengths = np.array(self._qual_lengths, dtype=np.int64)
        return ReadBatch(
            names=self.names,
            sequences="".join(self._seq_chunks).encode("ascii", "replace"),
            lengths=lengths,
            qualities=qualities,
            quality_lengths=quality_lengths,
            flags=np.array(self.flags, dtype=np.int64) if self._with_flags else None,
            first_record=first_record,
            skipped=skipped,
        )


def iter_read_batches(
    path: str | Path,
    fmt: SequenceFormat,
    *,
    name: str,
    reference: str | Path | None = None,
    batch_records: int = BATCH_RECORDS,
    batch_bases: int = BATCH_BASES,
) -> Iterator[ReadBatch]:
    """Stream `path` (format `fmt`, shown as `name` in errors) in batches.

    `reference` is a FASTA for CRAM files (indexed on the fly if needed). An empty file, or
    one holding no records, is an error: a lab that lists a file expects reads from it.
    """
    retain_freed_memory()
    path = Path(path)
    if not path.exists():
        raise DropError(name, "file is missing")
    if path.stat().st_size == 0:
        raise DropError(name, "file is empty (0 bytes)")
    if fmt in ("fasta", "fastq"):
        batches = _fastx_batches(path, fmt, name, batch_records, batch_bases)
    elif fmt in ("bam", "cram"):
        batches = _sam_batches(path, fmt, name, reference, batch_records, batch_bases)
    else:
        raise DropError(name, f"unsupported format {fmt!r}")
    seen = 0
    for batch in batches:
        seen += len(batch)
        yield batch
    if seen == 0:
        raise DropError(name, "contains no sequence records")


def count_records(
    path: str | Path,
    fmt: SequenceFormat,
    *,
    name: str,
    reference: str | Path | None = None,
) -> tuple[int, int]:
    """(records, bases) of a whole file, with the same checks as `iter_read_batches`."""
    records = bases = 0
    for batch in iter_read_batches(path, fmt, name=name, reference=reference):
        records += len(batch)
        bases += len(batch.sequences)
    return records, bases


def retain_freed_memory() -> None:
    """Keep glibc from handing freed batch buffers back to the kernel after every batch.

    By default each multi-megabyte buffer is a fresh mmap, and first-touch page faults then
    cost more than the work on the bytes (in sandboxed VMs ~15 us per 4 KiB page). Fixed
    thresholds let batches reuse the same heap memory; at most ~128 MiB stays reserved.
    No-op outside glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20)


_MALLOC_TUNED = False
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


# --- FASTA / FASTQ -------------------------------------------------------------------------


def _open_text(path: Path):
    with open(path, "rb") as handle:
        magic = handle.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _sniff_fastx(path: Path, fmt: str, name: str) -> None:
    """Refuse binary data and files that do not start like FASTA/FASTQ, before pysam sees them."""
    try:
        with _open_text(path) as handle:
            head = handle.read(_SNIFF_BYTES)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
        raise _scan_fastx(path, fmt, name) or DropError(
            name, "compressed data is corrupt or truncated"
        ) from None
    bad = _BINARY.search(head)
    if bad:
        line = head[: bad.start()].count(b"\n") + 1
        raise DropError(
            f"{name} line {line}",
            f"binary data (byte 0x{bad.group()[0]:02x}) where {fmt.upper()} text was expected",
        )
    stripped = head.lstrip()
    if not stripped:
        raise DropError(name, "contains no sequence records (only blank lines)")
    expected = b"@" if fmt == "fastq" else b">"
    if stripped[:1] != expected:
        line = head[: len(head) - len(stripped)].count(b"\n") + 1
        want = "'@' (FASTQ)" if fmt == "fastq" else "'>' (FASTA)"
        raise DropError(f"{name} line {line}", f"expected a record header starting with {want}")


def _fastx_batches(
    path: Path, fmt: str, name: str, batch_records: int, batch_bases: int
) -> Iterator[ReadBatch]:
    _sniff_fastx(path, fmt, name)
    done = 0  # records handed out in earlier batches
    chunk = _Builder._CHUNK
    builder = _Builder(with_quals=True, with_flags=False)
    try:
        with pysam.FastxFile(str(path), persist=False) as handle:
            add_name, add_seq = builder.names.append, builder.seqs.append
            add_qual = builder.quals.append
            pending = 0  # bases not yet joined into a chunk
            for record in handle:
                seq = record.sequence
                add_name(record.name)
                add_seq(seq)
                add_qual(record.quality)
                pending += len(seq)
                # Join every 256 records, or sooner for long reads, so a batch stays near
                # batch_bases even when single reads are 100 kb long.
                if pending >= batch_bases or len(builder.seqs) >= chunk:
                    builder.flush_chunk()
                    pending = 0
                    add_seq, add_qual = builder.seqs.append, builder.quals.append
                    if builder.bases >= batch_bases or len(builder) >= batch_records:
                        yield _fastx_batch(builder, fmt, name, done)
                        done += len(builder)
                        builder = _Builder(with_quals=True, with_flags=False)
                        add_name, add_seq = builder.names.append, builder.seqs.append
                        add_qual = builder.quals.append
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise _scan_fastx(path, fmt, name) or DropError(
            f"{name} record {done + len(builder) + 1}", f"cannot be parsed ({exc})"
        ) from None
    if len(builder):
        yield _fastx_batch(builder, fmt, name, done)


def _fastx_batch(builder: _Builder, fmt: str, name: str, done: int) -> ReadBatch:
    builder.flush_chunk()
    batch = builder.build(done + 1)
    if builder.missing_quals == len(builder):
        if fmt == "fastq":
            raise DropError(
                f"{name} record {done + 1}",
                "has no quality string: the file holds FASTA records but is named .fastq/.fq",
            )
        batch.qualities = batch.quality_lengths = None
    elif builder.missing_quals:
        raise DropError(
            f"{name} record {done + (builder.first_missing or 0) + 1}",
            "mixes FASTA and FASTQ records in one file",
        )
    return batch


class _Lines:
    """Numbered lines of a (possibly gzipped) file with one line of look-ahead."""

    def __init__(self, handle):
        self._handle = handle
        self.number = 0
        self._peeked: bytes | None = None

    def next(self) -> bytes | None:
        if self._peeked is not None:
            line, self._peeked = self._peeked, None
        else:
            line = self._handle.readline()
            if not line:
                return None
        self.number += 1
        return line.rstrip(b"\r\n")

    def peek(self) -> bytes | None:
        if self._peeked is None:
            line = self._handle.readline()
            if not line:
                return None
            self._peeked = line
        return self._peeked


def _scan_fastx(path: Path, fmt: str, name: str) -> DropError | None:
    """Find the first problem in a FASTA/FASTQ file line by line (slow; only after an error)."""
    lines = None
    try:
        with _open_text(path) as handle:
            lines = _Lines(handle)
            return _scan_lines(lines, fmt, name)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        after = lines.number if lines is not None else 0
        what = (
            "the compressed stream ends early: the file is truncated"
            if isinstance(exc, EOFError)
            else f"the compressed data is corrupt ({exc})"
        )
        return DropError(f"{name} line {after + 1}", what)


def _check_text(line: bytes, where: str, fmt: str) -> None:
    bad = _BINARY.search(line)
    if bad:
        raise DropError(
            where,
            f"binary data (byte 0x{bad.group()[0]:02x} at column {bad.start() + 1}) "
            f"where {fmt.upper()} text was expected",
        )


def _scan_lines(lines: _Lines, fmt: str, name: str) -> DropError | None:
    try:
        _scan_records(lines, fmt, name)
    except DropError as exc:
        return exc
    return None


def _scan_records(lines: _Lines, fmt: str, name: str) -> None:
    record = 0
    while True:
        line = lines.next()
        if line is None:
            return
        where = f"{name} line {lines.number}"
        _check_text(line, where, fmt)
        if not line.strip():
            continue
        head = line[:1]
        if head not in (b">", b"@"):
            if record == 0:
                want = "'@' (FASTQ)" if fmt == "fastq" else "'>' (FASTA)"
                raise DropError(where, f"expected a record header starting with {want}")
            # sequence continuation line of a FASTA record
            continue
        record += 1
        if head == b">":
            continue
        # FASTQ: sequence lines up to '+', then quality lines until as long as the sequence.
        seq_len = 0
        while True:
            line = lines.next()
            if line is None:
                raise DropError(
                    f"{name} line {lines.number}",
                    f"file ends inside record {record} before its '+' line",
                )
            _check_text(line, f"{name} line {lines.number}", fmt)
            if line.startswith(b"+"):
                break
            seq_len += len(line.strip())
        qual_len = 0
        first_qual_line = None
        while qual_len < seq_len:
            line = lines.next()
            if line is None:
                raise DropError(
                    f"{name} line {first_qual_line or lines.number}",
                    f"record {record}: file ends after {qual_len} quality characters "
                    f"for a {seq_len}-base sequence",
                )
            first_qual_line = first_qual_line or lines.number
            _check_text(line, f"{name} line {lines.number}", fmt)
            qual_len += len(line.strip())
            following = lines.peek()
            if qual_len < seq_len and (following is None or following.startswith(b"@")):
                raise DropError(
                    f"{name} line {first_qual_line}",
                    f"record {record}: quality has {qual_len} characters but the sequence "
                    f"has {seq_len} bases",
                )
        if qual_len != seq_len:
            raise DropError(
                f"{name} line {first_qual_line or lines.number}",
                f"record {record}: quality has {qual_len} characters but the sequence has "
                f"{seq_len} bases",
            )


# --- BAM / CRAM ----------------------------------------------------------------------------


@contextlib.contextmanager
def local_references_only() -> Iterator[None]:
    """Point htslib's reference lookup (REF_PATH) and download cache (REF_CACHE) at an empty
    local folder for the duration, so a CRAM never triggers a download."""
    saved = {key: os.environ.get(key) for key in ("REF_PATH", "REF_CACHE")}
    with tempfile.TemporaryDirectory(prefix="bioscan-noref-") as empty:
        os.environ["REF_PATH"] = f"{empty}/%2s/%2s/%s"
        os.environ["REF_CACHE"] = f"{empty}/%2s/%2s/%s"
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextlib.contextmanager
def _quiet_htslib() -> Iterator[None]:
    """htslib writes its own complaints to stderr; ours (with file and record) replace them."""
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


@contextlib.contextmanager
def indexed_reference(path: str | Path, *, name: str) -> Iterator[Path]:
    """A FASTA (plain or bgzip) under a FASTA file name with its .fai next to it, in a temp
    folder: raw blobs have no extension and their folder must stay untouched."""
    path = Path(path)
    with open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    with tempfile.TemporaryDirectory(prefix="bioscan-ref-") as tmp:
        target = Path(tmp) / ("reference.fa.gz" if compressed else "reference.fa")
        try:
            target.symlink_to(path.absolute())
        except OSError:
            shutil.copyfile(path, target)
        try:
            with _quiet_htslib():
                pysam.faidx(str(target))
        except (pysam.SamtoolsError, OSError, ValueError) as exc:
            detail = "; a compressed reference must be bgzip-compressed" if compressed else ""
            raise DropError(name, f"reference FASTA cannot be indexed ({exc}){detail}") from None
        yield target


def _sam_batches(
    path: Path,
    fmt: str,
    name: str,
    reference: str | Path | None,
    batch_records: int,
    batch_bases: int,
) -> Iterator[ReadBatch]:
    mode = "rb" if fmt == "bam" else "rc"
    kind = fmt.upper()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_htslib())
        if fmt == "cram":
            stack.enter_context(local_references_only())
        try:
            handle = pysam.AlignmentFile(
                str(path),
                mode,
                check_sq=False,
                reference_filename=str(reference) if reference else None,
            )
        except (ValueError, OSError) as exc:
            raise DropError(name, f"is not a readable {kind} file ({exc})") from None
        stack.enter_context(handle)
        if handle.format != kind:
            raise DropError(name, f"is a {handle.format} file, not {kind}")
        has_references = bool(handle.header.references)
        done = skipped = 0
        chunk = _Builder._CHUNK
        builder = _Builder(with_quals=True, with_flags=True)
        pending = 0
        try:
            for record in handle.fetch(until_eof=True):
                flag = record.flag
                if flag & (_SAM_SECONDARY | _SAM_SUPPLEMENTARY):
                    skipped += 1  # the primary record carries the read
                    continue
                if flag & _SAM_REVERSE:  # stored reverse-complemented: restore the read
                    seq = record.get_forward_sequence() or ""
                    qual = record.query_qualities_str
                    qual = qual[::-1] if qual else None
                else:
                    seq = record.query_sequence or ""
                    qual = record.query_qualities_str or None
                builder.names.append(record.query_name or "")
                builder.seqs.append(seq)
                builder.quals.append(qual)
                builder.flags.append(flag)
                pending += len(seq)
                if pending >= batch_bases or len(builder.seqs) >= chunk:
                    builder.flush_chunk()
                    pending = 0
                    if builder.bases >= batch_bases or len(builder) >= batch_records:
                        yield builder.build(done + 1, skipped)
                        done += len(builder)
                        builder = _Builder(with_quals=True, with_flags=True)
                        skipped = 0
        except (OSError, ValueError) as exc:
            where = f"{name} record {done + len(builder) + 1}"
            if fmt == "cram" and has_references and reference is None:
                raise DropError(
                    where,
                    "cannot decode the CRAM without its reference sequence; list the reference "
                    "FASTA under this file's 'reference' in sample.json (bioscan never downloads "
                    "references)",
                ) from None
            if fmt == "cram" and reference is not None:
                raise DropError(
                    where, f"cannot decode the CRAM: corrupt, truncated or wrong reference ({exc})"
                ) from None
            raise DropError(where, f"{kind} data is truncated or corrupt ({exc})") from None
        if len(builder) or skipped:
            yield builder.build(done + 1, skipped)
