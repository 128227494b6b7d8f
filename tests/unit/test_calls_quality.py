"""Quality of the calls on the bundled reference set, split by genus as `evaluation_report` does.

Numbers on the demo references (seeds 0-2 pooled; 27 seen-genus and 36 unseen-genus test
sequences): plain 0.8 cut-off 93% / 67% (genus accuracy on seen genera / genus call rate on
unseen genera); with the reference gate at its default `unseen_rate` 89% / 19%. The floors below
could fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bioscan_assets.core.classify.calibrated import CalibratedNB
from bioscan_assets.core.taxonomy import parse_taxonomy, split_taxon
from bioscan_assets.core.tuning.split import make_split

REF = Path(__file__).resolve().parents[2] / "bioscan_assets/demo_data/landing/acme-lab/REF-16S-001"
GENUS = 5


def _references() -> tuple[list[str], list[str], list[tuple]]:
    taxa = parse_taxonomy((REF / "taxonomy.tsv").read_bytes(), name="taxonomy.tsv")
    seqs: dict[str, list[str]] = {}
    name = ""
    for line in (REF / "reference_16S.fasta").read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            seqs[name] = []
        else:
            seqs[name].append(line.strip().upper())
    ids = sorted(set(seqs) & set(taxa))
    return ids, ["".join(seqs[i]) for i in ids], [split_taxon(taxa[i]) for i in ids]


def test_gate_halves_unseen_genus_calls_and_keeps_seen_accuracy():
    ids, seqs, lineages = _references()
    seen_ok = {"plain": [], "gate": []}
    unseen_called = {"plain": [], "gate": []}
    for seed in range(3):
        split = make_split(ids, lineages, seed)
        index = {sid: i for i, sid in enumerate(ids)}
        train = [index[i] for i in split.train]
        model = CalibratedNB(bootstrap=50).fit(
            [seqs[i] for i in train], [lineages[i] for i in train]
        )
        known = {lineages[i][GENUS] for i in train}
        test = [index[i] for i in split.test]
        pred = model.predict([seqs[i] for i in test])
        for name, labels in (("plain", pred.bootstrap_labels), ("gate", pred.labels)):
            for row, i in enumerate(test):
                truth = lineages[i][GENUS]
                if truth in known:
                    seen_ok[name].append(labels[row][GENUS] == truth)
                else:
                    unseen_called[name].append(labels[row][GENUS] is not None)
    seen = {k: float(np.mean(v)) for k, v in seen_ok.items()}
    unseen = {k: float(np.mean(v)) for k, v in unseen_called.items()}
    assert len(seen_ok["gate"]) >= 20 and len(unseen_called["gate"]) >= 20
    assert seen["gate"] >= 0.85, seen
    assert unseen["gate"] <= 0.25, unseen
    assert unseen["gate"] <= unseen["plain"] / 2, unseen
