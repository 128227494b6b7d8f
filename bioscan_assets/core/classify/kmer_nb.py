"""RDP-style naive Bayes on 8-mers (Wang et al. 2007, Appl. Environ. Microbiol. 73:5261).

Each sequence is the set of its overlapping 8-mers (words with an N are skipped). With N
training sequences, n(w) of them holding word w, the word prior is P_w = (n(w) + 0.5)/(N + 1),
and for a leaf taxon G with M sequences, m of them holding w, P(w|G) = (m + P_w)/(M + 1).
A query goes to the leaf with the largest sum of log P(w|G) over its words. Confidence per rank
is the share of 100 bootstrap trials (each 1/8 of the query's words, drawn with replacement)
whose winning leaf agrees with the full-word call at that rank; below the threshold the rank
and every rank under it are left unassigned, as the RDP classifier does.

Orientation: a read may come from either strand (R2 of a paired amplicon, a reverse-strand long
read). Each query is scored on both strands and kept on the one whose best leaf scores higher,
as the RDP classifier orients its queries, so a read and its reverse complement get one call.
Determinism: each query's bootstrap draws come from a generator seeded by the classifier's seed
and a hash of the oriented sequence, so a confidence never depends on the batch around it.

Scoring is exact and sparse: log P(w|G) = log P_w - log(M + 1) + [m > 0]·(log(m + P_w) - log P_w),
so only the (word, leaf) pairs seen in training are stored, whatever the number of leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

WORD = 8
N_WORDS = 4**WORD
_CODES = np.full(256, 255, dtype=np.uint8)
for _code, _base in enumerate("ACGT"):
    _CODES[ord(_base)] = _code
    _CODES[ord(_base.lower())] = _code


def kmer_words(sequence: str, k: int = WORD, canonical: bool = False) -> np.ndarray:
    """Sorted unique k-mer ids (base-4 of ACGT) of a sequence; k-mers with other codes skipped.

    `canonical` keeps the smaller of each word and its reverse complement, so a read and its
    reverse complement give the same set.
    """
    codes = _CODES[np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)]
    if codes.size < k:
        return np.zeros(0, dtype=np.int64)
    valid = codes != 255
    values = np.where(valid, codes, 0).astype(np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(values, k)
    powers = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    ids = windows @ powers
    if canonical:
        ids = np.minimum(ids, (3 - windows[:, ::-1]) @ powers)
    ok = np.lib.stride_tricks.sliding_window_view(valid, k).all(axis=1)
    return np.unique(ids[ok])


_COMPLEMENT = str.maketrans("ACGTacgt", "TGCAtgca")


def reverse_complement(sequence: str) -> str:
    """Reverse complement; codes other than ACGT stay as they are (and are skipped as words)."""
    return sequence.translate(_COMPLEMENT)[::-1]


def sequence_seed(sequence: str, seed: int) -> np.random.Generator:
    """A generator that depends only on (seed, sequence): batch-independent bootstraps."""
    digest = hashlib.blake2b(sequence.upper().encode("ascii", "replace"), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


@dataclass
class NBPrediction:
    labels: list[tuple[str | None, ...]]  # per query, one label per rank (None = abstained)
    confidence: np.ndarray  # float [Q, R] bootstrap agreement per rank
    raw_labels: list[tuple[str | None, ...]]  # the full-word call before abstention
    reversed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [Q] scored as RC
    words: list[np.ndarray] = field(default_factory=list)  # [Q] the oriented query's 8-mers


class KmerNaiveBayes:
    """Train on lineages (tuples of rank labels, None = unknown); leaves are distinct lineages."""

    def __init__(
        self,
        k: int = WORD,
        bootstrap: int = 100,
        threshold: float = 0.8,
        seed: int = 0,
    ):
        if not 1 <= k <= 12:
            raise ValueError(f"k={k}: word size must be between 1 and 12")
        self.k = k
        self.bootstrap = bootstrap
        self.threshold = threshold
        self.seed = seed

    def fit(
        self, sequences: Sequence[str], lineages: Sequence[Sequence[str | None]]
    ) -> KmerNaiveBayes:
        if len(sequences) != len(lineages) or not sequences:
            raise ValueError(
                f"need as many lineages as sequences, and at least one ({len(sequences)} vs {len(lineages)})"
            )
        # a leaf is the known prefix of the lineage: unknown ranks end it
        leaves: dict[tuple[str | None, ...], int] = {}
        leaf_of = np.empty(len(sequences), dtype=np.int64)
        for i, lineage in enumerate(lineages):
            known = []
            for label in lineage:
                if label is None:
                    break
                known.append(label)
            key = tuple(known) + (None,) * (len(lineage) - len(known))
            leaf_of[i] = leaves.setdefault(key, len(leaves))
        self.ranks = len(lineages[0])
        self.leaf_lineages = list(leaves)
        words = [kmer_words(s, self.k) for s in sequences]
        rows = np.concatenate(words)
        cols = np.repeat(leaf_of, [w.size for w in words])
        n_words = 4**self.k
        counts = sp.csr_matrix(
            (np.ones(rows.size, np.float64), (rows, cols)), shape=(n_words, len(leaves))
        )
        counts.sum_duplicates()  # m(w, G): sequences of leaf G holding word w
        n_seq = len(sequences)
        n_w = np.bincount(rows, minlength=n_words).astype(np.float64)
        prior = (n_w + 0.5) / (n_seq + 1.0)
        self.log_prior = np.log(prior)
        self.leaf_size = np.bincount(leaf_of, minlength=len(leaves)).astype(np.float64)
        self.log_leaf_norm = np.log(self.leaf_size + 1.0)
        coo = counts.tocoo()
        bonus = np.log(coo.data + prior[coo.row]) - self.log_prior[coo.row]
        self.bonus = sp.csr_matrix((bonus, (coo.row, coo.col)), shape=counts.shape)
        self.sequences_trained = n_seq
        return self

    def _scores(self, words: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """log P(S|G) for each leaf; `weights` [T, n] counts each word per trial -> [T, L]."""
        sub = self.bonus[words]  # [n, L] sparse
        base = weights @ self.log_prior[words]  # [T]
        total = weights.sum(axis=1)
        return (
            np.asarray(sub.T @ weights.T).T
            + base[:, None]
            - total[:, None] * self.log_leaf_norm[None, :]
        )

    def orient(self, sequence: str) -> tuple[str, np.ndarray, np.ndarray, bool]:
        """(oriented sequence, its words, full-word leaf scores, reversed?) for one query.

        The strand whose best leaf scores higher wins; on a tie the lexicographically smaller
        strand does, so a sequence and its reverse complement always pick the same strand.
        """
        reverse = reverse_complement(sequence)
        options = []
        for strand, text in ((False, sequence), (True, reverse)):
            words = kmer_words(text, self.k)
            scores = self._scores(words, np.ones((1, words.size)))[0] if words.size else np.zeros(0)
            best = float(scores.max()) if scores.size else -np.inf
            options.append((best, text.upper(), strand, words, scores))
        fwd, rev = options
        pick = rev if (rev[0], fwd[1]) > (fwd[0], rev[1]) else fwd
        return pick[1], pick[3], pick[4], pick[2]

    def predict(self, sequences: Sequence[str]) -> NBPrediction:
        labels, raw, conf = [], [], np.zeros((len(sequences), self.ranks))
        flipped = np.zeros(len(sequences), dtype=bool)
        oriented_words: list[np.ndarray] = []
        lineage_arr = np.array(
            [[x if x is not None else "" for x in lin] for lin in self.leaf_lineages], dtype=object
        )
        for q, sequence in enumerate(sequences):
            text, words, full, flipped[q] = self.orient(sequence)
            oriented_words.append(words)
            if words.size == 0:
                labels.append((None,) * self.ranks)
                raw.append((None,) * self.ranks)
                continue
            best = int(np.argmax(full))
            draw = max(1, words.size // 8)
            rng = sequence_seed(text, self.seed)
            picks = rng.integers(0, words.size, size=(self.bootstrap, draw))
            weights = np.zeros((self.bootstrap, words.size))
            np.add.at(weights, (np.arange(self.bootstrap)[:, None], picks), 1.0)
            winners = np.argmax(self._scores(words, weights), axis=1)
            agree = lineage_arr[winners] == lineage_arr[best][None, :]
            rank_conf = np.minimum.accumulate(agree.mean(axis=0))
            call = self.leaf_lineages[best]
            conf[q] = rank_conf
            raw.append(call)
            labels.append(
                tuple(
                    label if label is not None and rank_conf[r] >= self.threshold else None
                    for r, label in enumerate(call)
                )
            )
        return NBPrediction(labels, conf, raw, flipped, oriented_words)
