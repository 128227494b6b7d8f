"""Small sequence files for ingest tests, written with the real tools (gzip, bgzip, pysam).

Reads are random: tests never read /work/shared or any bundled data.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pysam

from tests.helpers import random_dna


@dataclass(frozen=True)
class Read:
    name: str
    seq: str
    qual: str | None = None
    flag: int = 4  # unmapped


def random_reads(
    n: int,
    *,
    seed: int = 0,
    length: tuple[int, int] = (80, 160),
    prefix: str = "read",
    alphabet: str = "ACGT",
    quality: bool = True,
) -> list[Read]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = int(rng.integers(length[0], length[1] + 1))
        seq = random_dna(rng, size, alphabet=alphabet)
        qual = _phred(rng, size, 2, 40) if quality else None
        out.append(Read(f"{prefix}{i}", seq, qual))
    return out


def _phred(rng: np.random.Generator, size: int, low: int, high: int) -> str:
    """`size` FASTQ quality characters, each a Phred score in [low, high]."""
    return (33 + rng.integers(low, high + 1, size, dtype=np.uint8)).tobytes().decode()


def fasta_text(reads: Iterable[Read], *, wrap: int = 60) -> bytes:
    lines = []
    for read in reads:
        lines.append(f">{read.name} some description")
        if wrap:
            chunks = [read.seq[i : i + wrap] for i in range(0, len(read.seq), wrap)]
            lines.extend(chunks or [""])
        else:
            lines.append(read.seq)
    return ("\n".join(lines) + "\n").encode()


def fastq_text(reads: Iterable[Read]) -> bytes:
    return "".join(f"@{r.name} 1:N:0:ACGT\n{r.seq}\n+\n{r.qual}\n" for r in reads).encode()


def write_bytes(path: Path, data: bytes, *, compression: str | None = None) -> Path:
    """Write `data`, optionally gzip- or bgzip-compressed (by the file name's tools)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if compression == "gzip":
        path.write_bytes(gzip.compress(data, mtime=0))
    elif compression == "bgzip":
        plain = path.with_name(path.name + ".plain")
        plain.write_bytes(data)
        pysam.tabix_compress(str(plain), str(path), force=True)
        plain.unlink()
    else:
        path.write_bytes(data)
    return path


def write_reference(path: Path, length: int = 5000, *, seed: int = 7) -> str:
    seq = random_dna(np.random.default_rng(seed), length)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(">chr1\n" + "\n".join(seq[i : i + 60] for i in range(0, length, 60)) + "\n")
    pysam.faidx(str(path))
    return seq


def _segment(header: pysam.AlignmentHeader, read: Read) -> pysam.AlignedSegment:
    seg = pysam.AlignedSegment(header)
    seg.query_name = read.name
    seg.query_sequence = read.seq
    seg.flag = read.flag
    if read.qual is not None:
        seg.query_qualities = pysam.qualitystring_to_array(read.qual)
    return seg


def write_unaligned_bam(path: Path, reads: Sequence[Read]) -> Path:
    """An unaligned BAM (no @SQ lines), as sequencers' uBAM output."""
    header = {"HD": {"VN": "1.6", "SO": "unsorted"}, "RG": [{"ID": "rg1", "SM": "S"}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for read in reads:
            out.write(_segment(out.header, read))
    return path


def write_aligned_cram(path: Path, reference: Path, ref_seq: str, n: int, *, seed: int = 3):
    """A reference-compressed CRAM of `n` 100 bp reads taken from `ref_seq`; returns them
    as reads in their original orientation."""
    rng = np.random.default_rng(seed)
    header = {
        "HD": {"VN": "1.6", "SO": "unsorted"},
        "SQ": [{"SN": "chr1", "LN": len(ref_seq)}],
    }
    reads = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with pysam.AlignmentFile(
        str(path), "wc", header=header, reference_filename=str(reference)
    ) as out:
        for i in range(n):
            pos = int(rng.integers(0, len(ref_seq) - 100))
            stored = ref_seq[pos : pos + 100]
            qual = _phred(rng, 100, 10, 40)
            seg = pysam.AlignedSegment(out.header)
            seg.query_name = f"c{i}"
            seg.query_sequence = stored
            seg.query_qualities = pysam.qualitystring_to_array(qual)
            seg.reference_id = 0
            seg.reference_start = pos
            seg.cigarstring = "100M"
            seg.mapping_quality = 60
            reverse = i % 2 == 1
            seg.flag = 16 if reverse else 0
            out.write(seg)
            if reverse:
                comp = str.maketrans("ACGT", "TGCA")
                reads.append(Read(f"c{i}", stored.translate(comp)[::-1], qual[::-1], 16))
            else:
                reads.append(Read(f"c{i}", stored, qual, 0))
    return reads
