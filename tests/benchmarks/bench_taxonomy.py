"""Benchmark the three taxonomy methods of `evaluation_report` on a labelled 16S set.

    .venv/bin/python tests/benchmarks/bench_taxonomy.py --data ../shared/data --out /tmp/bench

Reads `gold16s.fasta.gz` + `gold16s_taxonomy.tsv` (QIIME 2) from --data, makes the same split
as `lora_adapter` (seeded; whole genera held out for the "unseen" test set), then runs:
  LoRA  : `train_classifier` + `TaxonomyPredictor` on the chosen model (windows of
          --crop-tokens, probabilities averaged over the windows of each test sequence)
  kNN   : base embeddings (`EmbeddingExecutor`, first --embed-bp bases of each sequence),
          exact cosine neighbours among the training sequences, votes by `taxonomy_assign`
          (the asset does the same search through the LanceDB index with the ANN bypassed)
  NB    : `KmerNaiveBayes` (RDP-style, 8-mers, bootstrap confidence)
and prints the per-rank table (accuracy on labels seen in training, coverage on labels never
seen, macro-F1) and the timings; `--out` also gets metrics.json and the HTML report.
At hidden size 2560 on a few CPU cores the embedding and LoRA steps dominate: crop with
--embed-bp / --crop-tokens and cap the test groups with --max-test.
Not a pytest test: it needs data that the repository does not ship.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bioscan_assets.core.classify.kmer_nb import KmerNaiveBayes  # noqa: E402
from bioscan_assets.core.classify.knn_vote import AssignConfig, assign  # noqa: E402
from bioscan_assets.core.embedding.accelerator import Accelerator  # noqa: E402
from bioscan_assets.core.embedding.compute import EmbeddingExecutor  # noqa: E402
from bioscan_assets.core.evaluation.metrics import method_report  # noqa: E402
from bioscan_assets.core.evaluation.report import write_report  # noqa: E402
from bioscan_assets.core.model.presets import load_model  # noqa: E402
from bioscan_assets.core.storage import Store  # noqa: E402
from bioscan_assets.core.taxonomy import RANKS, parse_taxonomy, split_taxon  # noqa: E402
from bioscan_assets.core.tuning.adapter import Adapter as AdapterArtefact  # noqa: E402
from bioscan_assets.core.tuning.config import TrainConfig  # noqa: E402
from bioscan_assets.core.tuning.loop import train_classifier  # noqa: E402
from bioscan_assets.core.tuning.predictor import TaxonomyPredictor  # noqa: E402
from bioscan_assets.core.tuning.split import make_split  # noqa: E402

_NORMAL = bytes.maketrans(b"acgtuU", b"ACGTTT")


def read_fasta(path: Path) -> dict[str, str]:
    """id -> sequence normalised like the shards: upper case, U->T, other codes -> N."""
    out: dict[str, list[str]] = {}
    current = None
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                current = line[1:].split()[0]
                out[current] = []
            elif current is not None:
                out[current].append(line.strip())
    keep = set(b"ACGT")
    result = {}
    for key, parts in out.items():
        raw = "".join(parts).encode().translate(_NORMAL).upper()
        result[key] = bytes(c if c in keep else ord("N") for c in raw).decode()
    return result


class _Hit:
    def __init__(self, ranks, distance):
        self.ranks, self.distance = ranks, distance


def knn(train_vec, train_lin, test_vec, k, threshold):
    a = train_vec / np.linalg.norm(train_vec, axis=1, keepdims=True)
    b = test_vec / np.linalg.norm(test_vec, axis=1, keepdims=True)
    sims = b @ a.T
    called, raw, conf = [], [], np.zeros((len(b), len(RANKS)))
    for row in range(len(b)):
        top = np.argsort(-sims[row])[:k]
        hits = [_Hit(train_lin[j], 1.0 - float(sims[row, j])) for j in top]
        best = assign(hits, AssignConfig(threshold=0.0, k=k))
        call = assign(hits, AssignConfig(threshold=threshold, k=k))
        raw.append(tuple(c.label for c in best.calls))
        called.append(tuple(c.label for c in call.calls))
        conf[row] = [c.confidence for c in best.calls]
    return called, raw, conf


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", required=True, type=Path, help="folder with gold16s files")
    parser.add_argument("--model", default="demo", help="preset or checkpoint (default demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unseen-genus-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--max-test", type=int, default=300, help="cap per test group")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-tokens", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--window", default="random", help="random | start (see TrainConfig)")
    parser.add_argument("--embed-bp", type=int, default=192, help="bases embedded for kNN (0: all)")
    parser.add_argument("--knn-k", type=int, default=5)
    parser.add_argument("--knn-threshold", type=float, default=0.5)
    parser.add_argument("--nb-bootstrap", type=int, default=100)
    parser.add_argument("--methods", default="nb,knn,lora", help="comma list of nb, knn, lora")
    parser.add_argument("--out", type=Path, default=None, help="write metrics.json + report")
    args = parser.parse_args()
    methods = set(args.methods.split(","))

    t0 = time.perf_counter()
    seqs = read_fasta(args.data / "gold16s.fasta.gz")
    taxa = parse_taxonomy((args.data / "gold16s_taxonomy.tsv").read_bytes(), name="taxonomy")
    ids = sorted(i for i in seqs if i in taxa)
    lineages = [split_taxon(taxa[i]) for i in ids]
    split = make_split(
        ids,
        lineages,
        args.seed,
        unseen_genus_fraction=args.unseen_genus_fraction,
        test_fraction=args.test_fraction,
        max_test=args.max_test,
    )
    lin = dict(zip(ids, lineages, strict=True))
    train_seqs = [seqs[i] for i in split.train]
    train_lin = [lin[i] for i in split.train]
    test_ids = split.test
    test_seqs = [seqs[i] for i in test_ids]
    truth = [lin[i] for i in test_ids]
    train_sets = [{x[r] for x in train_lin if x[r] is not None} for r in range(len(RANKS))]
    print(f"data: {len(ids)} labelled sequences; split {split.counts()}", flush=True)
    model = load_model(args.model)
    accelerator = Accelerator.discover()
    print(f"model {model.model_id} pretrained={model.pretrained}; {accelerator.describe()}")
    reports, timings = {}, {"read_s": time.perf_counter() - t0}

    if "nb" in methods:
        t = time.perf_counter()
        nb = KmerNaiveBayes(bootstrap=args.nb_bootstrap).fit(train_seqs, train_lin)
        timings["nb_fit_s"] = time.perf_counter() - t
        pred = nb.predict(test_seqs)
        timings["nb_total_s"] = time.perf_counter() - t
        reports["kmer_nb"] = method_report(
            "8-mer naive Bayes",
            "RDP-style",
            truth,
            pred.labels,
            pred.raw_labels,
            pred.confidence,
            train_sets,
        )
        print(f"nb done in {timings['nb_total_s']:.1f} s", flush=True)

    if "knn" in methods:
        t = time.perf_counter()
        executor = EmbeddingExecutor(model, accelerator)
        crop = (lambda s: s[: args.embed_bp]) if args.embed_bp else (lambda s: s)
        train_vec = executor.embed([crop(s) for s in train_seqs])
        test_vec = executor.embed([crop(s) for s in test_seqs])
        timings["knn_embed_s"] = time.perf_counter() - t
        called, raw, conf = knn(train_vec, train_lin, test_vec, args.knn_k, args.knn_threshold)
        timings["knn_total_s"] = time.perf_counter() - t
        reports["knn"] = method_report(
            "kNN (base embeddings)",
            f"first {args.embed_bp or 'all'} bp",
            truth,
            called,
            raw,
            conf,
            train_sets,
        )
        print(f"knn done in {timings['knn_total_s']:.1f} s", flush=True)

    training = {}
    if "lora" in methods:
        t = time.perf_counter()
        config = TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            crop_tokens=args.crop_tokens,
            window=args.window,
            learning_rate=args.learning_rate,
            warmup_steps=args.warmup_steps,
            seed=args.seed,
            checkpoint_every_steps=max(args.steps, 1),
        )
        result = train_classifier(
            train_seqs,
            train_lin,
            model,
            config,
            workdir=Path("/tmp/bench_taxonomy_work"),
            ids=split.train,
            accelerator=accelerator,
            on_metrics=lambda m, s: (
                print(f"step {s} loss {m['loss']:.3f}", flush=True) if s % 50 == 0 else None
            ),
        )
        timings["lora_train_s"] = time.perf_counter() - t
        adapter = AdapterArtefact.from_training(result, model, split)
        pred = TaxonomyPredictor(model, adapter, accelerator).predict(test_seqs)
        timings["lora_total_s"] = time.perf_counter() - t
        reports["lora"] = method_report(
            "LoRA classifier",
            f"{args.steps} steps, {args.window} windows of {args.crop_tokens} tokens",
            truth,
            pred.labels,
            pred.raw_labels,
            pred.confidence,
            train_sets,
        )
        training = {
            "steps": result.steps,
            "train_seconds": result.train_seconds,
            "first_step_seconds": result.first_step_seconds,
            "sequences_per_s": result.sequences_per_s,
            "trainable_fraction": result.parameters["trainable_fraction"],
        }

    print()
    print(
        "| rank | n seen/unseen | "
        + " | ".join(f"{reports[m]['label']} acc seen / cov unseen / F1" for m in reports)
        + " |"
    )
    for rank in RANKS:
        first = next(iter(reports.values()))["metrics"][rank]
        cells = []
        for m in reports:
            g = reports[m]["metrics"][rank]
            acc, cov, f1 = g["seen"]["accuracy"], g["unseen"]["coverage"], g["seen"]["macro_f1"]
            cells.append(" / ".join("–" if v is None else f"{100 * v:.1f}" for v in (acc, cov, f1)))
        print(
            f"| {rank} | {first['seen']['n']}/{first['unseen']['n']} | " + " | ".join(cells) + " |"
        )
    print("timings:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
    if training:
        print("training:", json.dumps(training))
    if args.out:
        evaluation = {
            "title": f"benchmark {args.model}",
            "model": model.provenance(),
            "test": {
                "n": len(test_ids),
                "seen_genus": len(split.test_seen),
                "unseen_genus": len(split.test_unseen),
                "unseen_genera": len(split.unseen_genera),
            },
            "train": {"n": len(split.train)},
            "training": training,
            "methods": reports,
            "notes": [f"arguments: {vars(args)}", f"timings: {timings}"],
        }
        evaluation["notes"][0] = evaluation["notes"][0].replace(str(args.data), "<data>")
        paths = write_report(Store(str(args.out)), "report", evaluation)
        print("report:", args.out / paths["html"])


if __name__ == "__main__":
    main()
