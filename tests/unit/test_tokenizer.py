"""Our numpy 6-mer tokenizer gives the ids transformers' EsmTokenizer gives on the same vocab."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from transformers import EsmTokenizer

from bioscan_assets.core.model.tokenizer import NTTokenizer
from tests.helpers import random_dna


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    NTTokenizer.standard().write_vocab_file(path)
    return path


@pytest.fixture(scope="module")
def tokenizers(vocab_file):
    return NTTokenizer.from_vocab_file(vocab_file), EsmTokenizer(str(vocab_file), eos_token=None)


def _hf(theirs: EsmTokenizer, sequence: str) -> list[int]:
    return theirs(sequence, add_special_tokens=True)["input_ids"]


def _check(tokenizers, sequences: list[str]) -> None:
    ours, theirs = tokenizers
    batch = ours.encode_batch(sequences)
    assert len(batch) == len(sequences)
    for sequence, batched in zip(sequences, batch, strict=True):
        expected = _hf(theirs, sequence)
        assert ours.encode(sequence).tolist() == expected, repr(sequence[:80])
        assert batched.tolist() == expected, repr(sequence[:80])


EDGE_CASES = [
    "",
    "A",
    "ACGTA",
    "ACGTAC",
    "ACGTACG",
    "NNNNNNNN",
    "ACGNNNACGTACGTACNA",
    "ATCGGATTACANNACGTACGTAC",
    "N" + "ACGTAC" * 3 + "N",
    "ACGTAC" * 1200,  # longer than the model maximum: the tokenizer does not truncate
    "ACGTAC" * 1200 + "ACG",
]
# What transformers does with input that shards never hold (they are normalised upper-case
# ACGTN): case-sensitive vocabulary, so each run of unknown characters is one <unk>, and
# whitespace is dropped; both cut the 6-mer grid as N does.
ODD_CASES = [
    "acgtac",
    "acgtacgtNNacg",
    "ACGTACacgtacACGTAC",
    "AcGtAcGT",
    "ACGRTACGTA",
    "ACGTACRRYACGTAC",
    "ACGU",
    "ACGTA.CGTAC-ACGTACGT",
    "AC GTAC",
    "ACGTACGT\nACGTACGT\r\n",
    "  ",
    "x y\tz",
    "ACGTAC\u00e9ACGTAC\u00a0ACGTACGG",  # non-ASCII: one unknown, one whitespace
]


def test_edge_cases_match_transformers(tokenizers) -> None:
    _check(tokenizers, EDGE_CASES)


def test_lower_case_iupac_and_whitespace_match_transformers(tokenizers) -> None:
    _check(tokenizers, ODD_CASES)
    ours, _ = tokenizers
    assert ours.encode("acgtac").tolist() == [ours.cls_id, ours.unk_id]


def test_random_sequences_match_transformers(tokenizers) -> None:
    dna = np.random.default_rng(7)
    n_weights = [0.24] * 4 + [0.04]
    clean = [
        random_dna(dna, dna.integers(0, 401), alphabet="ACGTN", p=n_weights) for _ in range(400)
    ]
    rng = random.Random(7)
    runs_of_n = [
        "".join(
            rng.choice(["N" * rng.randint(1, 9), "ACGT" * rng.randint(0, 3), "ACG"])
            for _ in range(12)
        )
        for _ in range(100)
    ]
    wild = [
        "".join(rng.choices("ACGTACGTNacgtnRYU .-\n<>", k=rng.randint(0, 60))) for _ in range(400)
    ]
    _check(tokenizers, clean + runs_of_n + wild)


def test_special_token_text_is_never_a_special_token(tokenizers) -> None:
    """Deliberately unlike transformers: "<pad>" in a sequence must not become padding."""
    ours, theirs = tokenizers
    assert _hf(theirs, "ACG<pad>T")[4] == ours.pad_id  # what transformers would do
    ids = ours.encode("ACG<pad>T").tolist()
    assert ids == [ours.cls_id, *ours.encode("ACG")[1:], ours.unk_id, *ours.encode("T")[1:]]


def test_batch_is_vectorised_across_group_boundaries(tokenizers) -> None:
    """encode_batch joins sequences in groups; sequences at group edges must stay separate."""
    ours, _ = tokenizers
    rng = np.random.default_rng(3)
    sequences = [random_dna(rng, rng.integers(0, 3001), alphabet="ACGTN") for _ in range(200)]
    batch = ours.encode_batch(sequences)
    assert all(b.tolist() == ours.encode(s).tolist() for s, b in zip(sequences, batch, strict=True))
    assert ours.encode_batch([]) == []
    assert [b.tolist() for b in ours.encode_batch(["", "", "A"])] == [
        [3],
        [3],
        [3, ours.vocab["A"]],
    ]


def test_vocabulary_order_is_read_not_assumed(tmp_path) -> None:
    standard = NTTokenizer.standard()
    shuffled = list(standard.tokens)
    random.Random(0).shuffle(shuffled)
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(shuffled) + "\n")
    reordered = NTTokenizer.from_vocab_file(path)
    sequence = "ACGTACNGGATCCAT"
    tokens = [reordered.tokens[i] for i in reordered.encode(sequence)]
    assert tokens == [standard.tokens[i] for i in standard.encode(sequence)]
    assert tokens == ["<cls>", "ACGTAC", "N", "GGATCC", "A", "T"]
    assert reordered.pad_id == shuffled.index("<pad>") and reordered.vocab_size == 4105
    theirs = EsmTokenizer(str(path), eos_token=None)
    assert reordered.encode(sequence).tolist() == _hf(theirs, sequence)


def test_standard_vocabulary_is_nt_v1(tokenizers) -> None:
    ours, _ = tokenizers
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    assert ours.tokens == ["<unk>", "<pad>", "<mask>", "<cls>", *kmers, "A", "T", "C", "G", "N"]
    assert (ours.unk_id, ours.pad_id, ours.mask_id, ours.cls_id) == (0, 1, 2, 3)
    assert ours.vocab_size == 4105


def test_bad_vocabulary_files_are_refused_by_name(tmp_path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(NTTokenizer.standard().tokens[:-1]))  # no "N"
    with pytest.raises(ValueError, match=r"vocab\.txt.*\['N'\]"):
        NTTokenizer.from_vocab_file(path)
    path.write_text("\n".join([*NTTokenizer.standard().tokens, "ACG"]))
    with pytest.raises(ValueError, match=r"not an NT 6-mer vocabulary.*ACG"):
        NTTokenizer.from_vocab_file(path)


def test_first_token_is_cls_and_ids_are_int32(tokenizers) -> None:
    ours, _ = tokenizers
    ids = ours.encode("ACGTACGT")
    assert ids.dtype == np.int32 and ids[0] == ours.cls_id and ours.pad_id not in ids
    assert all(b.dtype == np.int32 for b in ours.encode_batch(["ACGT", ""]))
    assert ours.token_count(1500) == len(ours.encode("ACGTAC" * 250))
