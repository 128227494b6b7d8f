"""Benchmark the naive Bayes' abstention: the plain bootstrap cut-off against the reference gate.

    .venv/bin/python tests/benchmarks/bench_abstention.py --data ../shared/data [--max-test 400]

Splits `gold16s` (or --fasta/--taxonomy) like `evaluation_report` (seeded; whole genera held
out), fits `KmerNaiveBayes` and `ReferenceGate` on the training split, and prints per rank the
accuracy on seen labels and the call rate on unseen labels for: the plain 0.8 cut-off, and the
cut-off plus the gate at each --unseen-rate. `--reads` repeats it on simulated field reads
(a --read-bp fragment of each test sequence, --error-rate substitutions, every other read
reverse-complemented). Not a pytest test: it needs data the repository does not ship.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bioscan_assets.core.classify.calibrated import CalibratedNB  # noqa: E402
from bioscan_assets.core.classify.kmer_nb import reverse_complement  # noqa: E402
from bioscan_assets.core.evaluation.metrics import rank_metrics  # noqa: E402
from bioscan_assets.core.taxonomy import RANKS, parse_taxonomy, split_taxon  # noqa: E402
from bioscan_assets.core.tuning.split import make_split  # noqa: E402


def read_fasta(path: Path) -> dict[str, str]:
    """id -> sequence, normalised as the shards are (upper case, U->T, other codes -> N)."""
    table = bytes.maketrans(b"acgtuU", b"ACGTTT")
    chunks: dict[str, list[bytes]] = {}
    with gzip.open(path, "rb") as handle:
        for line in handle:
            if line.startswith(b">"):
                name = line[1:].split()[0].decode()
                chunks[name] = []
            else:
                chunks[name].append(line.strip())
    out = {}
    for name, parts in chunks.items():
        seq = b"".join(parts).translate(table).upper()
        out[name] = bytes(c if c in b"ACGT" else ord("N") for c in seq).decode()
    return out


def simulate_reads(seqs: list[str], length: int, error_rate: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i, seq in enumerate(seqs):
        start = int(rng.integers(0, max(1, len(seq) - length)))
        read = np.frombuffer(seq[start : start + length].encode(), dtype=np.uint8).copy()
        hit = rng.random(read.size) < error_rate
        read[hit] = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, int(hit.sum()))]
        text = read.tobytes().decode()
        out.append(reverse_complement(text) if i % 2 else text)
    return out


def table(name: str, truth, predicted, train_sets) -> None:
    metrics = rank_metrics(truth, predicted, train_sets)
    cells = []
    for rank in RANKS:
        seen, unseen = metrics[rank]["seen"], metrics[rank]["unseen"]
        acc = "-" if seen["accuracy"] is None else f"{100 * seen['accuracy']:.1f}"
        cov = "-" if unseen["coverage"] is None else f"{100 * unseen['coverage']:.1f}"
        cells.append(f"{rank[:5]} {acc:>5}/{cov:>5}")
    print(f"{name:<28} " + "  ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--unseen-rate", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--reads", action="store_true")
    parser.add_argument("--read-bp", type=int, default=250)
    parser.add_argument("--error-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sequences = read_fasta(args.data / "gold16s.fasta.gz")
    taxa = parse_taxonomy((args.data / "gold16s_taxonomy.tsv").read_bytes(), name="taxonomy")
    ids = sorted(set(sequences) & set(taxa))
    lineages = [split_taxon(taxa[i]) for i in ids]
    split = make_split(ids, lineages, args.seed, max_test=args.max_test)
    index = {sid: i for i, sid in enumerate(ids)}
    train = [index[i] for i in split.train]
    test = [index[i] for i in split.test]
    train_seqs = [sequences[ids[i]] for i in train]
    train_lin = [lineages[i] for i in train]
    truth = [lineages[i] for i in test]
    train_sets = [{lin[r] for lin in train_lin if lin[r] is not None} for r in range(7)]
    print(
        f"train {len(train)}, test {len(test)} (seen genus {len(split.test_seen)}, "
        f"unseen genus {len(split.test_unseen)}); cells: seen accuracy % / unseen call rate %"
    )
    queries = {"full-length": [sequences[ids[i]] for i in test]}
    if args.reads:
        queries[f"reads {args.read_bp} bp"] = simulate_reads(
            queries["full-length"], args.read_bp, args.error_rate, args.seed
        )
    for rate in args.unseen_rate:
        t = time.perf_counter()
        model = CalibratedNB(unseen_rate=rate).fit(train_seqs, train_lin)
        fit_s = time.perf_counter() - t
        print(
            f"unseen_rate {rate}: cut-offs {model.gate.calibration.as_dict()} (fit {fit_s:.0f} s)"
        )
        for name, seqs in queries.items():
            t = time.perf_counter()
            result = model.predict(seqs)
            if rate == args.unseen_rate[0]:
                table(f"{name}: cut-off 0.8", truth, result.bootstrap_labels, train_sets)
            table(f"{name}: + gate {rate}", truth, result.labels, train_sets)
            print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
