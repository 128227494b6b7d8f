"""Whole-batch base arithmetic: normalisation and per-read counts over joined buffers.

A batch of reads is one bytes buffer plus offsets (see `readers.ReadBatch`); everything here
works on the whole buffer with numpy, never base by base in Python, because the shard writer
runs at hundreds of Mbases per second. The query path of search normalises with the same table,
so an indexed read and a query read are spelled alike.
"""

from __future__ import annotations

import numpy as np

# Upper case, U->T, every other byte (IUPAC codes, gaps, '?', ...) -> N.
_NORMALISE = bytearray(b"N" * 256)
for _src, _dst in zip(b"ACGTUacgtu", b"ACGTTACGTT", strict=True):
    _NORMALISE[_src] = _dst
NORMALISE_TABLE = bytes(_NORMALISE)
_A, _C, _G, _T, _N = (ord(c) for c in "ACGTN")


def normalise(sequences: bytes) -> bytes:
    """Upper case, U->T, anything else -> N, over a whole batch at once."""
    return sequences.translate(NORMALISE_TABLE)


def classify_bases(sequences: bytes) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
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


def mean_quality(qualities: bytes, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
