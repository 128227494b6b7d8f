"""Sequence file formats named by the lab-drop contract, recognised by file name."""

from __future__ import annotations

from typing import Literal

SequenceFormat = Literal["fasta", "fastq", "bam", "cram"]

_FASTA = (".fasta", ".fa", ".fna")
_FASTQ = (".fastq", ".fq")
_COMPRESSED = (".gz", ".bgz", ".bgzf")


def detect_format(path: str) -> SequenceFormat:
    """Format from the extension; raises ValueError naming the file when unsupported."""
    name = path.lower()
    if name.endswith(".bam"):
        return "bam"
    if name.endswith(".cram"):
        return "cram"
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.endswith(_FASTA):
        return "fasta"
    if name.endswith(_FASTQ):
        return "fastq"
    raise ValueError(
        f"{path}: unsupported sequence file extension; expected one of "
        ".fasta .fa .fna .fastq .fq (optionally .gz), .bam, .cram"
    )


def is_compressed(path: str) -> bool:
    return path.lower().endswith(_COMPRESSED)
