"""kNN taxonomy vote: weighting, confidence, abstention, lineage consistency."""

from __future__ import annotations

import pytest

from bioscan_assets.core.classify.knn_vote import AssignConfig, assign, assign_many, ranks_of
from bioscan_assets.core.index.search import Hit
from bioscan_assets.core.taxonomy import RANKS

BAC = "k__Bacteria; p__Firmicutes; c__Bacilli; o__Bacillales; f__Bacillaceae; g__Bacillus; s__subtilis"
BAC_CEREUS = (
    "k__Bacteria; p__Firmicutes; c__Bacilli; o__Bacillales; f__Bacillaceae; g__Bacillus; s__cereus"
)
LIS = "k__Bacteria; p__Firmicutes; c__Bacilli; o__Bacillales; f__Listeriaceae; g__Listeria; s__"
ECO = "k__Bacteria; p__Proteobacteria; c__Gammaproteobacteria; o__Enterobacterales; f__Enterobacteriaceae; g__Escherichia; s__coli"


def test_unanimous_neighbours_call_every_labelled_rank() -> None:
    result = assign([(BAC, 0.05), (BAC, 0.1), (BAC, 0.2)])
    assert result.ranks == dict(zip(RANKS, ranks_of(BAC), strict=True))
    assert all(c == pytest.approx(1.0) for c in result.confidence.values())
    assert result.deepest.rank == "species"
    assert (
        result.taxon
        == "k__Bacteria; p__Firmicutes; c__Bacilli; o__Bacillales; f__Bacillaceae; g__Bacillus; s__subtilis"
    )


def test_confidence_is_similarity_weighted() -> None:
    # two far Listeria neighbours against one very close Bacillus one
    neighbours = [(BAC, 0.0), (LIS, 0.6), (LIS, 0.6)]
    result = assign(neighbours)
    # weights 1.0 vs 0.4 + 0.4: Bacillaceae wins the family with 1/1.8
    assert result.ranks["family"] == "Bacillaceae"
    assert result.confidence["family"] == pytest.approx(1 / 1.8, abs=1e-6)
    assert result.confidence["order"] == pytest.approx(1.0)
    uniform = assign(neighbours, AssignConfig(weighting="uniform"))
    assert uniform.ranks["family"] == "Listeriaceae"
    assert uniform.confidence["family"] == pytest.approx(2 / 3)


def test_abstains_below_threshold_and_below_an_abstained_rank() -> None:
    result = assign([(BAC, 0.1), (BAC_CEREUS, 0.1), (LIS, 0.1)], AssignConfig(threshold=0.6))
    assert result.ranks["order"] == "Bacillales"
    assert result.ranks["family"] == "Bacillaceae"  # 2/3 >= 0.6
    assert result.ranks["genus"] == "Bacillus"
    assert result.ranks["species"] is None  # 1/3 each
    assert result.confidence["species"] == pytest.approx(1 / 3)
    strict = assign([(BAC, 0.1), (BAC_CEREUS, 0.1), (LIS, 0.1)], AssignConfig(threshold=0.9))
    assert strict.ranks["order"] == "Bacillales"
    assert strict.ranks["family"] is None
    assert strict.ranks["genus"] is None and strict.ranks["species"] is None


def test_unlabelled_neighbours_lower_confidence() -> None:
    result = assign([(BAC, 0.1), (None, 0.1), ("", 0.1)])
    assert result.confidence["kingdom"] == pytest.approx(1 / 3)
    assert result.ranks["kingdom"] is None
    assert all(label is None for label in result.ranks.values())


def test_vote_is_over_lineages_so_homonyms_are_not_pooled() -> None:
    # genus "X" under two different families: not one genus with 2/3 support
    a = "k__K; p__P; c__C; o__O; f__F1; g__X"
    b = "k__K; p__P; c__C; o__O; f__F2; g__X"
    c = "k__K; p__P; c__C; o__O; f__F3; g__Y"
    result = assign([(a, 0.1), (b, 0.1), (c, 0.1)], AssignConfig(threshold=0.5))
    assert result.ranks["order"] == "O"
    assert result.ranks["family"] is None and result.ranks["genus"] is None


def test_k_keeps_the_nearest_only_and_input_order_does_not_matter() -> None:
    neighbours = [(ECO, 0.5), (BAC, 0.01), (ECO, 0.6), (BAC, 0.02)]
    near = assign(neighbours, AssignConfig(k=2))
    assert near.ranks["genus"] == "Bacillus" and near.neighbours == 2
    assert assign(list(reversed(neighbours))).ranks == assign(neighbours).ranks


def test_ties_break_deterministically() -> None:
    one = assign([(BAC, 0.1), (ECO, 0.1)], AssignConfig(threshold=0.5))
    two = assign([(ECO, 0.1), (BAC, 0.1)], AssignConfig(threshold=0.5))
    assert one.ranks == two.ranks
    assert one.ranks["kingdom"] == "Bacteria"


def test_far_neighbours_carry_no_weight() -> None:
    result = assign([(BAC, 1.2), (BAC, 1.5)])
    assert result.total_weight == 0 and all(v is None for v in result.ranks.values())


def test_accepts_hits_dicts_and_sequences() -> None:
    hits = [
        Hit("a", "S1", 0.1, BAC, dict(zip(RANKS, ranks_of(BAC), strict=True))),
        Hit("b", "S1", 0.2, BAC, dict(zip(RANKS, ranks_of(BAC), strict=True))),
    ]
    assert assign(hits).ranks["genus"] == "Bacillus"
    as_lists = [(["Bacteria", "Firmicutes", "Bacilli"], 0.1)]
    assert assign(as_lists).ranks["class"] == "Bacilli"
    assert assign(as_lists).ranks["order"] is None
    assert [a.ranks["genus"] for a in assign_many([hits, [(ECO, 0.1)]])] == [
        "Bacillus",
        "Escherichia",
    ]
    assert assign([]).ranks["kingdom"] is None


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        AssignConfig(threshold=1.5)
    with pytest.raises(ValueError, match="weighting"):
        AssignConfig(weighting="softmax")
    with pytest.raises(ValueError, match="k must"):
        AssignConfig(k=0)
