"""core.novelty pieces on their own: k-mers, spaces, clustering, stable ids, agreement, the map."""

from __future__ import annotations

import numpy as np
import pytest

from bioscan_assets.core.layout import novelty_dir
from bioscan_assets.core.novelty.clusters import (
    NOISE,
    ClusterSettings,
    agreed_rank,
    cluster_candidates,
    medoid,
)
from bioscan_assets.core.novelty.kmers import canonical_words, containment, windows, word_matrix
from bioscan_assets.core.novelty.pictures import novelty_map, pca_from_distances
from bioscan_assets.core.novelty.spaces import EmbeddingSpace, KmerSpace, nearest_reference
from bioscan_assets.core.novelty.stable_ids import format_id, jaccard, match_clusters
from tests.helpers import random_dna

REVCOMP = str.maketrans("ACGT", "TGCA")


def test_canonical_words_ignore_strand_and_skip_n():
    rng = np.random.default_rng(0)
    seq = random_dna(rng, 200)
    rc = seq.translate(REVCOMP)[::-1]
    assert np.array_equal(canonical_words(seq), canonical_words(rc))
    assert canonical_words(seq[:7]).size == 0
    with_n = seq[:50] + "N" + seq[51:]
    assert canonical_words(with_n).size < canonical_words(seq).size


def test_containment_of_a_read_in_its_source_is_one():
    rng = np.random.default_rng(1)
    source, other = random_dna(rng, 1000), random_dna(rng, 1000)
    read = source[300:450].translate(REVCOMP)[::-1]
    queries = word_matrix([canonical_words(read)])
    targets = word_matrix([canonical_words(source), canonical_words(other)])
    shared = containment(queries, targets)
    assert shared[0, 0] == pytest.approx(1.0)
    assert shared[0, 1] < 0.05
    symmetric = containment(targets, queries, symmetric=True)
    assert symmetric[0, 0] == pytest.approx(1.0)  # divided by the smaller set


def test_windows_cover_the_whole_sequence():
    assert windows("ACGT", 10) == ["ACGT"]
    parts = windows("A" * 25, 10)
    assert [len(p) for p in parts] == [10, 10, 10]


def _blobs(rng, centres: int, per: int, dim: int = 16, spread: float = 0.05) -> np.ndarray:
    base = rng.standard_normal((centres, dim))
    return np.concatenate([c + spread * rng.standard_normal((per, dim)) for c in base])


def test_kmer_space_calibration_excludes_the_window_own_reference():
    rng = np.random.default_rng(2)
    template = random_dna(rng, 600)
    sibling = "".join(b if rng.random() > 0.03 else "A" for b in template)
    lone = random_dna(rng, 600)
    space = KmerSpace([template, sibling, lone], [template[100:250]], window=150)
    calibration = space.calibration(sample=100, seed=0)
    assert calibration.size == 12  # 4 windows of each of 3 references
    assert calibration.min() > 0.0  # never its own source
    assert np.sort(calibration)[:8].max() < 0.6  # template and sibling explain each other
    index, distance = nearest_reference(space)
    assert index.tolist() == [0] and distance[0] == pytest.approx(0.0)


def test_embedding_space_nearest_and_calibration():
    refs = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    queries = np.array([[-1.0, 0.0], [1.0, 0.01]], dtype=np.float32)
    space = EmbeddingSpace(refs, queries, model_id="m")
    index, distance = nearest_reference(space)
    assert index[1] == 0 and distance[1] < 0.01
    assert distance[0] > 0.5
    calibration = space.calibration(sample=10, seed=0)
    assert calibration.shape == (3,) and calibration[0] < 0.05


def test_hdbscan_finds_planted_groups_and_leaves_loners_out():
    rng = np.random.default_rng(3)
    refs = rng.standard_normal((5, 16))
    queries = np.concatenate([_blobs(rng, 2, 8), rng.standard_normal((3, 16)) * 3])
    space = EmbeddingSpace(refs, queries, model_id="m")
    reads = np.ones(len(queries), dtype=np.int64)
    labels, left_out = cluster_candidates(
        space, np.arange(len(queries)), reads, ClusterSettings(min_cluster_size=3, min_samples=2)
    )
    assert left_out == 0
    first, second = set(labels[:8].tolist()), set(labels[8:16].tolist())
    assert len(first) == 1 and len(second) == 1 and first != second and NOISE not in first
    centre = medoid(space, np.arange(8), reads[:8])
    assert 0 <= centre < 8


def test_one_sequence_read_many_times_is_a_cluster():
    """Amplicon data: a single novel sequence with 50 reads must still make a cluster."""
    rng = np.random.default_rng(4)
    refs = rng.standard_normal((4, 8))
    queries = np.concatenate([rng.standard_normal((1, 8)), rng.standard_normal((4, 8)) * 5])
    space = EmbeddingSpace(refs, queries, model_id="m")
    reads = np.array([50, 1, 1, 1, 1])
    labels, _ = cluster_candidates(space, np.arange(5), reads, ClusterSettings(3, 2))
    assert labels[0] != NOISE


def test_max_points_keeps_the_most_read_sequences():
    rng = np.random.default_rng(5)
    space = EmbeddingSpace(rng.standard_normal((3, 8)), _blobs(rng, 1, 10, dim=8), model_id="m")
    reads = np.arange(1, 11)
    labels, left_out = cluster_candidates(
        space, np.arange(10), reads, ClusterSettings(3, 2, max_points=12)
    )
    assert left_out == 6  # 3 repeats each for the 4 most-read sequences fill 12 points
    assert (labels[:6] == NOISE).all()


def test_agreed_rank_is_the_deepest_common_label():
    calls = [
        ("Bacteria", "Firmicutes", "Bacilli", None, None, None, None),
        ("Bacteria", "Firmicutes", "Clostridia", None, None, None, None),
    ]
    assert agreed_rank(calls) == ("phylum", ("Bacteria", "Firmicutes"))
    assert agreed_rank([(None,) * 7]) == (None, ())


def test_ids_follow_membership_and_are_never_reused():
    previous = {"N0001": {"a", "b", "c"}, "N0002": {"x", "y"}}
    current = {0: {"a", "b", "c", "d"}, 1: {"p", "q", "r"}}
    matching = match_clusters(current, previous, next_number=3)
    assert matching.ids == {0: "N0001", 1: "N0003"}
    assert matching.kept == {"N0001": pytest.approx(0.75)}
    assert matching.retired == ["N0002"] and matching.next_number == 4
    again = match_clusters({0: {"x", "y"}}, {}, next_number=matching.next_number)
    assert again.ids == {0: "N0004"}  # N0002's members came back, but its id is retired
    assert jaccard(set(), set()) == 0.0 and format_id(12) == "N0012"


def test_best_overlap_wins_when_two_clusters_claim_one_id():
    previous = {"N0001": {"a", "b", "c", "d"}}
    current = {0: {"a", "b"}, 1: {"a", "b", "c"}}
    matching = match_clusters(current, previous, next_number=2)
    assert matching.ids[1] == "N0001" and matching.ids[0] == "N0002"


def test_pca_from_distances_keeps_far_things_far():
    points = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5]], dtype=float)
    unit = np.hstack([points, np.ones((4, 1))])
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    dist = 1 - unit @ unit.T
    xy = pca_from_distances(dist)
    near = np.linalg.norm(xy[0] - xy[1])
    far = np.linalg.norm(xy[0] - xy[2])
    assert far > 5 * near
    assert pca_from_distances(np.zeros((0, 0))).shape == (0, 2)


def test_map_is_a_png():
    rng = np.random.default_rng(6)
    png = novelty_map(
        rng.standard_normal((6, 2)),
        ["Firmicutes", "Firmicutes", None, "Proteobacteria", "Proteobacteria", None],
        rng.standard_normal((5, 2)),
        ["N0001", "N0001", "N0001", None, "N0002"],
        title="t",
    )
    assert png is not None and png.startswith(b"\x89PNG")


def test_novelty_dir_refuses_bad_tenants():
    assert novelty_dir("acme-lab") == "novelty/tenant=acme-lab"
    with pytest.raises(ValueError):
        novelty_dir("../acme")


def test_reads_too_short_for_kmers_are_not_judged():
    rng = np.random.default_rng(7)
    refs = [random_dna(rng, 300), random_dna(rng, 300)]
    space = KmerSpace(refs, ["ACGTN" * 10, random_dna(rng, 150), "ACGTACG"])
    assert space.measurable.tolist() == [False, True, False]
    assert EmbeddingSpace(np.eye(2), np.eye(2), model_id="m").measurable.all()
