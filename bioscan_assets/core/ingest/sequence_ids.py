"""Sequence ids: unique within a sample and stable across re-runs (DESIGN.md "Data layouts").

Reads keep the names they have in the lab's files; paired reads get `/1` and `/2`, and a name
seen again gets the smallest free `#k` suffix. The duplicate-id set is the one structure of the
shard writer that grows with the input, so it holds 64-bit hashes in sorted numpy runs
(8 bytes a read: about 80 MB for 10 million reads).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import xxhash

_EXAMPLES = 5


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


def sam_read_numbers(flags: list[int]) -> np.ndarray:
    """Read number (1/2) from SAM flags 0x40/0x80; 0 when neither or both are set."""
    f = np.asarray(flags, dtype=np.int64)
    first = (f & 0x40) != 0
    second = (f & 0x80) != 0
    return np.where(first & ~second, 1, np.where(second & ~first, 2, 0)).astype(np.int8)


def with_read_suffix(names: list[str], numbers: np.ndarray | int) -> list[str]:
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
