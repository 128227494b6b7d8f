import numpy as np
import pytest

from bioscan_assets.core.classify.kmer_nb import KmerNaiveBayes, kmer_words, reverse_complement
from tests.helpers import random_dna
from tests.synthetic_taxa import make_reference


def _id(word: str) -> int:
    return int("".join(str("ACGT".index(c)) for c in word), 4)


def test_kmer_words_skips_windows_with_other_codes_and_reads_lower_case():
    words = kmer_words("ACGTACGTANacgtacgt", k=8)
    # windows 0..1 are clean before the N; after it only "ACGTACGT" (lower case) fits
    expected = sorted({_id("ACGTACGT"), _id("CGTACGTA"), _id("ACGTACGT")})
    assert words.tolist() == expected
    assert kmer_words("ACG", k=8).size == 0


def test_word_priors_follow_wang_2007():
    # two leaves; word counts small enough to check by hand with k=2
    seqs = ["AAAC", "AAAG", "CCCA"]
    lineages = [("B", "P1"), ("B", "P1"), ("B", "P2")]
    nb = KmerNaiveBayes(k=2).fit(seqs, lineages)
    n_seq = 3
    aa = _id("AA")
    # AA is in 2 of 3 sequences: P_w = (2 + 0.5) / (3 + 1)
    prior = 2.5 / (n_seq + 1)
    assert np.exp(nb.log_prior[aa]) == pytest.approx(prior)
    leaf_p1 = nb.leaf_lineages.index(("B", "P1"))
    leaf_p2 = nb.leaf_lineages.index(("B", "P2"))
    # log P(AA | P1) = log((m + P_w) / (M + 1)) with m = 2, M = 2
    words = np.array([aa])
    scores = nb._scores(words, np.ones((1, 1)))[0]
    assert scores[leaf_p1] == pytest.approx(np.log((2 + prior) / 3))
    assert scores[leaf_p2] == pytest.approx(np.log((0 + prior) / 2))


def test_classifies_held_out_sequences_of_known_genera_with_confidence():
    _ids, seqs, lineages = make_reference(seed=3, per_genus=5)
    test = list(range(0, len(seqs), 5))  # one per genus
    train = [i for i in range(len(seqs)) if i not in test]
    nb = KmerNaiveBayes(seed=1).fit([seqs[i] for i in train], [lineages[i] for i in train])
    pred = nb.predict([seqs[i] for i in test])
    for row, i in enumerate(test):
        assert pred.labels[row][:6] == lineages[i][:6]
        assert pred.confidence[row][5] >= 0.8
        # confidence never rises towards lower ranks
        assert np.all(np.diff(pred.confidence[row]) <= 1e-12)


def test_abstains_on_a_sequence_unlike_the_training_data():
    _ids, seqs, lineages = make_reference(seed=4)
    nb = KmerNaiveBayes(seed=0).fit(seqs, lineages)
    rng = np.random.default_rng(9)
    stranger = random_dna(rng, 420)
    pred = nb.predict([stranger])
    assert pred.raw_labels[0][5] is not None  # it always has a best guess ...
    assert pred.labels[0][5] is None  # ... but does not call the genus
    assert pred.confidence[0][5] < 0.8


def test_deterministic_for_a_seed():
    _ids, seqs, lineages = make_reference(seed=5)
    a = KmerNaiveBayes(seed=2).fit(seqs[1:], lineages[1:]).predict(seqs[:1])
    b = KmerNaiveBayes(seed=2).fit(seqs[1:], lineages[1:]).predict(seqs[:1])
    assert np.array_equal(a.confidence, b.confidence)


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="as many lineages"):
        KmerNaiveBayes().fit(["ACGT"], [])


def test_reverse_complemented_reads_get_the_forward_call_and_confidence():
    _ids, seqs, lineages = make_reference(seed=6, per_genus=5)
    test = list(range(0, len(seqs), 5))
    train = [i for i in range(len(seqs)) if i not in test]
    nb = KmerNaiveBayes(seed=3).fit([seqs[i] for i in train], [lineages[i] for i in train])
    forward = [seqs[i] for i in test]
    # a 250-base fragment read from the other strand, as an R2 read would be
    reverse = [reverse_complement(s[100:350]) for s in forward]
    fwd = nb.predict([s[100:350] for s in forward])
    rev = nb.predict(reverse)
    assert rev.reversed.all() and not fwd.reversed.any()
    assert rev.labels == fwd.labels
    assert np.array_equal(rev.confidence, fwd.confidence)
    for row, i in enumerate(test):
        assert rev.labels[row][5] == lineages[i][5]  # called, and right


def test_confidence_does_not_depend_on_the_batch():
    _ids, seqs, lineages = make_reference(seed=7)
    nb = KmerNaiveBayes(seed=0, bootstrap=20).fit(seqs[2:], lineages[2:])
    alone = nb.predict([seqs[0]])
    rng = np.random.default_rng(1)
    noise = [random_dna(rng, 300) for _ in range(3)]
    batched = nb.predict([*noise, seqs[1], seqs[0]])
    assert np.array_equal(batched.confidence[-1], alone.confidence[0])
    assert batched.labels[-1] == alone.labels[0]
    # a borderline query is where a shared generator showed: its confidence moved with the batch
    mixed = seqs[0][:150] + seqs[-1][150:300]
    assert np.array_equal(
        nb.predict([mixed]).confidence[0], nb.predict([*noise, mixed]).confidence[-1]
    )


def test_reverse_complement_keeps_other_codes():
    assert reverse_complement("ACGTNacgu") == "ucgtNACGT"
