"""Nucleotide Transformer v1 6-mer tokenizer, vectorised with numpy.

Rules (DESIGN.md, "Model facts"): `<cls>` first, no `<eos>`; non-overlapping 6-mers left to
right; `N` is its own token; a remainder shorter than 6 (at the end or before an `N`) becomes
single-nucleotide tokens. Token ids come from the checkpoint's `vocab.txt`, never from an
assumed order. Input is upper-cased and any code other than A/C/G/T is read as `N`, which is
what the shard normalisation writes anyway.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

BASES = "ATCG"  # NT v1 product order of the 6-mers in its vocabulary
SPECIAL_TOKENS = ("<unk>", "<pad>", "<mask>", "<cls>")
KMER = 6
_N_CODE = 4


def _base_codes() -> np.ndarray:
    table = np.full(256, _N_CODE, dtype=np.int64)
    for code, base in enumerate(BASES):
        table[ord(base)] = code
        table[ord(base.lower())] = code
    return table


_CODES = _base_codes()
_PLACE = 4 ** np.arange(KMER - 1, -1, -1)


class NTTokenizer:
    def __init__(self, tokens: list[str]):
        self.tokens = list(tokens)
        self.vocab = {token: index for index, token in enumerate(self.tokens)}
        missing = [t for t in (*SPECIAL_TOKENS, "N", *BASES) if t not in self.vocab]
        if missing:
            raise ValueError(f"vocabulary lacks required tokens {missing}")
        self.unk_id = self.vocab["<unk>"]
        self.pad_id = self.vocab["<pad>"]
        self.mask_id = self.vocab["<mask>"]
        self.cls_id = self.vocab["<cls>"]
        self.n_id = self.vocab["N"]
        # kmer_ids[base-4 value of a 6-mer] -> token id; single_ids[base code] -> token id
        self.kmer_ids = np.full(4**KMER, self.unk_id, dtype=np.int32)
        for kmer in itertools.product(range(4), repeat=KMER):
            text = "".join(BASES[c] for c in kmer)
            self.kmer_ids[int(np.dot(kmer, _PLACE))] = self.vocab.get(text, self.unk_id)
        self.single_ids = np.array([self.vocab[b] for b in BASES] + [self.n_id], dtype=np.int32)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_vocab_file(cls, path: str | Path) -> NTTokenizer:
        tokens = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        return cls(tokens)

    @classmethod
    def standard(cls) -> NTTokenizer:
        """The published NT v1 vocabulary (4,105 tokens)."""
        kmers = ["".join(p) for p in itertools.product(BASES, repeat=KMER)]
        return cls([*SPECIAL_TOKENS, *kmers, *BASES, "N"])

    def write_vocab_file(self, path: str | Path) -> None:
        Path(path).write_text("\n".join(self.tokens) + "\n")

    def encode(self, sequence: str) -> np.ndarray:
        """Token ids (int32) with `<cls>` first."""
        raw = np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)
        n = raw.size
        if n == 0:
            return np.array([self.cls_id], dtype=np.int32)
        code = _CODES[raw]
        is_n = code == _N_CODE
        index = np.arange(n)
        run_start = ~is_n & np.concatenate(([True], is_n[:-1]))
        start = np.maximum.accumulate(np.where(run_start, index, 0))
        next_n = np.minimum.accumulate(np.where(is_n, index, n)[::-1])[::-1]
        offset = index - start
        full = (next_n - start) // KMER * KMER
        kmer_start = ~is_n & (offset < full) & (offset % KMER == 0)
        single = ~is_n & (offset >= full)

        padded = np.concatenate((np.where(is_n, 0, code), np.zeros(KMER - 1, dtype=np.int64)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, KMER)[:n]
        ids = np.where(
            kmer_start,
            self.kmer_ids[windows @ _PLACE],
            np.where(single, self.single_ids[np.minimum(code, _N_CODE)], self.n_id),
        )
        emit = kmer_start | single | is_n
        return np.concatenate(([self.cls_id], ids[emit])).astype(np.int32)

    def encode_batch(self, sequences: list[str]) -> list[np.ndarray]:
        return [self.encode(s) for s in sequences]

    def token_count(self, length: int) -> int:
        """Upper bound of tokens for a sequence of `length` bases without N (for budgeting)."""
        return 1 + length // KMER + length % KMER
