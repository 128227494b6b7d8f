"""Our numpy 6-mer tokenizer gives the ids transformers' EsmTokenizer gives on the same vocab."""

from __future__ import annotations

import random

import numpy as np
import pytest
from transformers import EsmTokenizer

from bioscan_assets.core.tokenizer import NTTokenizer


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    ours = NTTokenizer.standard()
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    ours.write_vocab_file(vocab)
    return NTTokenizer.from_vocab_file(vocab), EsmTokenizer(str(vocab), eos_token=None)


def _hf(theirs: EsmTokenizer, sequence: str) -> list[int]:
    return theirs(sequence, add_special_tokens=True)["input_ids"]


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
]


@pytest.mark.parametrize("sequence", EDGE_CASES, ids=lambda s: f"len{len(s)}")
def test_edge_cases_match_transformers(tokenizers, sequence: str) -> None:
    ours, theirs = tokenizers
    assert ours.encode(sequence).tolist() == _hf(theirs, sequence)


def test_random_sequences_match_transformers(tokenizers) -> None:
    ours, theirs = tokenizers
    rng = random.Random(7)
    for _ in range(500):
        length = rng.randint(0, 400)
        seq = "".join(rng.choices("ACGTN", weights=[24, 24, 24, 24, 4], k=length))
        assert ours.encode(seq).tolist() == _hf(theirs, seq), seq


def test_lower_case_and_iupac_read_as_normalised(tokenizers) -> None:
    """EsmTokenizer maps lower case to <unk>; we tokenise what the shards store (upper, N)."""
    ours, theirs = tokenizers
    assert ours.encode("acgtacgtRYa").tolist() == _hf(theirs, "ACGTACGTNNA")


def test_vocabulary_order_is_read_not_assumed(tmp_path) -> None:
    standard = NTTokenizer.standard()
    shuffled = standard.tokens[:4] + list(reversed(standard.tokens[4:]))
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(shuffled))
    reordered = NTTokenizer.from_vocab_file(path)
    ids = reordered.encode("ACGTACN")
    assert [reordered.tokens[i] for i in ids] == ["<cls>", "ACGTAC", "N"]
    assert ids[1] != standard.encode("ACGTACN")[1]


def test_first_token_is_cls_and_ids_are_int32(tokenizers) -> None:
    ours, _ = tokenizers
    ids = ours.encode("ACGTACGT")
    assert ids.dtype == np.int32 and ids[0] == ours.cls_id and ours.pad_id not in ids
