"""Canonical k-mer sets and containment: the representation used when the model is not pretrained.

A read is the set of its canonical k-mers (the smaller of a word and its reverse complement),
so a read and its reverse complement are the same point and no orientation step is needed.
Closeness is containment, the share of the smaller set's words found in the other: a 150 bp
read inside a full-length reference scores as high as two references of one species, which a
Jaccard index (dominated by the length difference) would not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from bioscan_assets.core.classify.kmer_nb import kmer_words

WORD = 8


def canonical_words(sequence: str, k: int = WORD) -> np.ndarray:
    """Sorted unique canonical k-mer ids of a sequence; words holding a non-ACGT code are skipped."""
    return kmer_words(sequence, k, canonical=True)


def word_matrix(words: Sequence[np.ndarray], k: int = WORD) -> sp.csr_matrix:
    """[len(words), 4^k] 0/1 matrix: row i marks the words of set i."""
    sizes = [w.size for w in words]
    rows = np.repeat(np.arange(len(words)), sizes)
    cols = np.concatenate(words) if words else np.zeros(0, dtype=np.int64)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(len(words), 4**k))


def containment(
    queries: sp.csr_matrix,
    targets: sp.csr_matrix,
    *,
    symmetric: bool = False,
    chunk: int = 1024,
) -> np.ndarray:
    """[Q, T] share of each query's words found in each target.

    `symmetric`: divide by the smaller of the two sets instead (a distance between reads of
    different lengths that does not depend on which one is the query).
    """
    q_sizes = np.asarray(queries.sum(axis=1)).ravel()
    t_sizes = np.asarray(targets.sum(axis=1)).ravel()
    out = np.zeros((queries.shape[0], targets.shape[0]), dtype=np.float32)
    targets_t = targets.T.tocsc()
    for start in range(0, queries.shape[0], chunk):
        block = queries[start : start + chunk]
        shared = np.asarray((block @ targets_t).todense(), dtype=np.float32)
        sizes = q_sizes[start : start + chunk, None]
        if symmetric:
            sizes = np.minimum(sizes, t_sizes[None, :])
        out[start : start + chunk] = shared / np.maximum(sizes, 1.0)
    return out


def windows(sequence: str, length: int) -> list[str]:
    """Non-overlapping windows of `length` (the last one flush with the end); short: the whole."""
    if len(sequence) <= length:
        return [sequence]
    starts = list(range(0, len(sequence) - length + 1, length))
    if starts[-1] + length < len(sequence):
        starts.append(len(sequence) - length)
    return [sequence[s : s + length] for s in starts]
