"""Which classifier makes the calls, from an evaluation's metrics.json."""

from bioscan_assets.core.calls.method_choice import choose_method


def _metrics(**genus_seen):
    return {
        "methods": {
            name: {"metrics": {"genus": {"seen": {"accuracy": acc}, "unseen": {"coverage": 0.1}}}}
            for name, acc in genus_seen.items()
        }
    }


def test_naive_bayes_without_an_evaluation():
    assert choose_method(None, None)["used"] == "kmer_nb"


def test_lora_counts_only_when_no_regression_passed():
    metrics = _metrics(lora=0.95, knn=0.5, kmer_nb=0.9)
    assert choose_method(metrics, False)["preferred"] == "kmer_nb"
    chosen = choose_method(metrics, True)
    assert chosen["preferred"] == "lora" and chosen["used"] == "lora"
    assert [r["method"] for r in chosen["ranking"]] == ["lora", "kmer_nb", "knn"]


def test_knn_calls_when_the_evaluation_ranks_it_best():
    chosen = choose_method(_metrics(lora=0.2, knn=0.9, kmer_nb=0.8), True)
    assert chosen["used"] == chosen["preferred"] == "knn"


def test_ties_go_to_the_fewer_unseen_genus_calls_and_unknown_methods_fall_back():
    metrics = _metrics(knn=0.9, kmer_nb=0.9)
    metrics["methods"]["knn"]["metrics"]["genus"]["unseen"]["coverage"] = 0.5
    assert choose_method(metrics, None)["used"] == "kmer_nb"
    newer = choose_method(_metrics(kmer_nb=0.5, blast=0.99), None)
    assert newer["preferred"] == "blast" and newer["used"] == "kmer_nb"
    assert "not implemented" in newer["reason"]
