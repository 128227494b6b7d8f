"""Nucleotide Transformer v1 6-mer tokenizer, vectorised with numpy.

Rules (DESIGN.md, "Model facts"): `<cls>` first, no `<eos>`; non-overlapping 6-mers left to
right; `N` is its own token; a remainder shorter than 6 (at the end or before an `N`) becomes
single-nucleotide tokens. Token ids come from the checkpoint's `vocab.txt`, never from an
assumed order.

Any other input is treated exactly as transformers' `EsmTokenizer(vocab, eos_token=None)`
treats it, because that is how the published checkpoints are used: the vocabulary is case
sensitive, so lower case letters, IUPAC codes (R, Y, U, ...) and punctuation are unknown;
each maximal run of unknown characters becomes one `<unk>`; whitespace is dropped; both end a
run of bases (so they cut the 6-mer grid like `N` does). One deliberate difference: a literal
special token in the text (`"<pad>"`, `"<cls>"`) is read as unknown characters, never as the
special token, so no sequence can inject padding or masks. Shards hold normalised sequences
(upper case, non-ACGT -> N), for which all of this never arises.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

BASES = "ATCG"  # NT v1 product order of the 6-mers in its vocabulary (used by `standard()` only)
SPECIAL_TOKENS = ("<unk>", "<pad>", "<mask>", "<cls>")
KMER = 6

# character classes; 0..3 are the bases in BASES order
_N, _SPACE, _OTHER = 4, 5, 6
_PLACE = 4 ** np.arange(KMER - 1, -1, -1, dtype=np.int64)
_GROUP_BYTES = 1 << 16  # keeps encode_batch's temporaries in cache


def _class_table() -> np.ndarray:
    table = np.full(256, _OTHER, dtype=np.int8)
    for code, base in enumerate(BASES):
        table[ord(base)] = code
    table[ord("N")] = _N
    for char in " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f":  # what str.split() splits on, in ASCII
        table[ord(char)] = _SPACE
    return table


_CLASSES = _class_table()


def _to_ascii(sequence: str) -> bytes:
    """One byte per character; non-ASCII becomes a space (if str.split() splits on it) or '?'."""
    if sequence.isascii():
        return sequence.encode("ascii")
    return "".join(c if c.isascii() else (" " if c.isspace() else "?") for c in sequence).encode(
        "ascii"
    )


class NTTokenizer:
    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self.vocab = {token: index for index, token in enumerate(self.tokens)}
        if len(self.vocab) != len(self.tokens):
            raise ValueError("vocabulary has duplicate tokens")
        missing = [t for t in (*SPECIAL_TOKENS, "N", *BASES) if t not in self.vocab]
        kmers = ["".join(p) for p in itertools.product(BASES, repeat=KMER)]
        missing_kmers = [k for k in kmers if k not in self.vocab]
        if missing or missing_kmers:
            raise ValueError(
                f"vocabulary lacks required tokens {missing + missing_kmers[:8]}"
                + (f" (and {len(missing_kmers) - 8} more 6-mers)" if len(missing_kmers) > 8 else "")
            )
        # Other nucleotide words would make transformers tokenise differently from us.
        odd = [t for t in self.tokens if t and set(t) <= set("ACGTN") and len(t) not in (1, KMER)]
        if odd or any(len(t) == KMER and "N" in t for t in self.tokens):
            raise ValueError(f"not an NT 6-mer vocabulary: unexpected tokens {odd[:8]}")
        self.unk_id = self.vocab["<unk>"]
        self.pad_id = self.vocab["<pad>"]
        self.mask_id = self.vocab["<mask>"]
        self.cls_id = self.vocab["<cls>"]
        self.n_id = self.vocab["N"]
        # kmer_ids[base-4 value of a 6-mer (BASES digits)] -> token id, read from the vocabulary
        self.kmer_ids = np.array([self.vocab[k] for k in kmers], dtype=np.int32)
        self.single_ids = np.array([self.vocab[b] for b in BASES], dtype=np.int32)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_vocab_file(cls, path: str | Path) -> NTTokenizer:
        # same reading as transformers' load_vocab_file: one token per line, stripped
        lines = Path(path).read_text().splitlines()
        tokens = [line.strip() for line in lines]
        while tokens and not tokens[-1]:
            tokens.pop()
        if any(not t for t in tokens):
            raise ValueError(f"{path}: blank line {tokens.index('') + 1} in the vocabulary")
        try:
            return cls(tokens)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def standard(cls) -> NTTokenizer:
        """The published NT v1 vocabulary (4,105 tokens)."""
        kmers = ["".join(p) for p in itertools.product(BASES, repeat=KMER)]
        return cls([*SPECIAL_TOKENS, *kmers, *BASES, "N"])

    def write_vocab_file(self, path: str | Path) -> None:
        Path(path).write_text("\n".join(self.tokens) + "\n")

    def _ids(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and the positions that emit them, for a class array."""
        n = classes.size
        index = np.arange(n, dtype=np.int32)
        base = classes < _N
        run_start = base & np.concatenate(([True], ~base[:-1]))
        start = np.maximum.accumulate(np.where(run_start, index, 0))
        run_end = np.minimum.accumulate(np.where(base, n, index)[::-1])[::-1]
        offset = index - start
        full = (run_end - start) // KMER * KMER
        kmer_start = base & (offset < full) & (offset % KMER == 0)
        single = base & (offset >= full)
        other = classes == _OTHER
        unk = other & np.concatenate(([True], ~other[:-1]))
        emit = kmer_start | single | (classes == _N) | unk

        ids = np.full(n, self.unk_id, dtype=np.int32)
        starts = np.flatnonzero(kmer_start)
        value = np.zeros(starts.size, dtype=np.int64)
        for j in range(KMER):
            value += classes[starts + j].astype(np.int64) * _PLACE[j]
        ids[starts] = self.kmer_ids[value]
        ids[single] = self.single_ids[classes[single]]
        ids[classes == _N] = self.n_id
        return ids, emit

    def encode(self, sequence: str) -> np.ndarray:
        """Token ids (int32) with `<cls>` first; never truncated (windowing is the caller's)."""
        classes = _CLASSES[np.frombuffer(_to_ascii(sequence), dtype=np.uint8)]
        if classes.size == 0:
            return np.array([self.cls_id], dtype=np.int32)
        ids, emit = self._ids(classes)
        return np.concatenate(([self.cls_id], ids[emit])).astype(np.int32)

    def encode_batch(self, sequences: Sequence[str]) -> list[np.ndarray]:
        """`encode` for many sequences, vectorised over cache-sized groups of them."""
        out: list[np.ndarray] = []
        group: list[bytes] = []
        size = 0
        for sequence in sequences:
            data = _to_ascii(sequence)
            group.append(data)
            size += len(data) + 1
            if size >= _GROUP_BYTES:
                out += self._encode_group(group)
                group, size = [], 0
        if group:
            out += self._encode_group(group)
        return out

    def _encode_group(self, data: list[bytes]) -> list[np.ndarray]:
        """One pass over the sequences joined by a space, which ends runs like they do."""
        joined = np.frombuffer(b" ".join(data), dtype=np.uint8)
        if joined.size == 0:
            return [np.array([self.cls_id], dtype=np.int32) for _ in data]
        ids, emit = self._ids(_CLASSES[joined])
        # tokens emitted by each sequence; separators emit none
        lengths = np.fromiter((len(d) for d in data), dtype=np.int64, count=len(data))
        ends = np.cumsum(lengths + 1) - 1  # one past each sequence's last character
        emitted_before = np.concatenate(([0], np.cumsum(emit)))
        counts = np.diff(np.concatenate(([0], emitted_before[ends])))
        out = np.empty(emit.sum() + len(data), dtype=np.int32)
        first = np.cumsum(np.concatenate(([0], counts[:-1] + 1)))
        out[first] = self.cls_id
        body = np.ones(out.size, dtype=bool)
        body[first] = False
        out[body] = ids[emit]
        return np.split(out, first[1:])

    def token_count(self, length: int) -> int:
        """Tokens (with `<cls>`) for `length` bases without N: exact for normalised ACGT runs."""
        return 1 + length // KMER + length % KMER
