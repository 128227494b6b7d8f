"""Measured: novelty on real 16S sequences with whole genera held out of the reference.

The demo's reference (72 real 16S sequences, 12 genera x 6) without Helicobacter and Treponema,
and the demo's simulated field sample (240 reads of 2x150 from 20 sources): its reads of those
two genera and of the five genera no demo reference holds are the planted ones (110 reads), the
other 130 are of known genera (other members than the reference's). simulation_truth.tsv says
which is which. Measured at the time of writing (k-mer representation, as the demo model is
not pretrained; calls with 30 bootstrap trials; min_cluster_size 3, min_samples 2):

    threshold quantile   none*   0.5     0.6     0.7     0.8     0.9     0.95
    threshold distance   0       0.112   0.151   0.210   0.287   0.378   0.456
    recall               0.82    0.82    0.82    0.82    0.80    0.77    0.57
    false-novel rate     0.385   0.223   0.138   0.069   0.046   0.008   0.038
    (* every row abstaining at genus, no distance rule)

The floors below sit under those numbers with room for library drift, and fail if the
threshold, the candidate rule or the clustering stop telling the planted genera apart.
"""

from __future__ import annotations

import csv
import json

import pytest

from bioscan_assets.core.novelty.build import NoveltySettings, build_novelty
from bioscan_assets.core.storage import Store
from bioscan_assets.demo import DEMO_LANDING
from tests.helpers import write_drop
from tests.novelty_data import call_samples, cluster_members, score
from tests.pipeline_helpers import ingest

HELD_OUT = {"Helicobacter", "Treponema"}
FIELD = "FIELD-2026-001"
TRUTH = DEMO_LANDING.parent / "simulation_truth.tsv"


def _fasta(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    name = None
    for line in text.splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            out[name] = []
        elif name is not None:
            out[name].append(line.strip())
    return {k: "".join(v) for k, v in out.items()}


def _genus(taxon: str) -> str:
    return taxon.split(";")[5].strip().removeprefix("g__")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("novelty-measure")
    landing, store = Store(str(tmp / "landing")), Store(str(tmp / "storage"))
    ref = DEMO_LANDING / "acme-lab" / "REF-16S-001"
    sequences = _fasta((ref / "reference_16S.fasta").read_text())
    with open(ref / "taxonomy.tsv", encoding="utf-8") as handle:
        taxa = {row[0]: row[1] for row in list(csv.reader(handle, delimiter="\t"))[1:]}
    kept = {k: v for k, v in sequences.items() if _genus(taxa[k]) not in HELD_OUT}
    assert len(kept) == 60
    write_drop(landing, "lab", "REF", sequences=kept, taxonomy={k: taxa[k] for k in kept})
    field = DEMO_LANDING / "acme-lab" / FIELD
    doc = json.loads((field / "sample.json").read_text())
    files = {p.name: p.read_bytes() for p in sorted(field.iterdir()) if p.name != "sample.json"}
    extra = {k: v for k, v in doc.items() if k not in ("files", "tenant", "sample_id")}
    write_drop(landing, "lab", FIELD, files=files, extra=extra)
    for sample_id in ("REF", FIELD):
        ingest(landing, store, "lab", sample_id)
    keys = ["lab/REF", f"lab/{FIELD}"]
    call_samples(store, "lab", keys, [FIELD])
    truth = {}
    with open(TRUTH, encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["sample_id"] == FIELD:
                genus = _genus(row["taxon"])
                planted = row["genus_status"] == "novel_genus" or genus in HELD_OUT
                truth[f"{row['read_name']}/{row['mate']}"] = (genus, planted)
    assert sum(p for _g, p in truth.values()) == 110 and len(truth) == 240
    return store, keys, truth


def _measure(held_out, quantile: float) -> tuple[float, float, dict]:
    store, keys, truth = held_out
    settings = NoveltySettings(threshold_quantile=quantile, map_points=0)
    manifest = build_novelty(store, "lab", keys, settings).manifest
    recall, false_novel = score(cluster_members(store, "lab"), truth)
    return recall, false_novel, manifest


def test_recall_and_false_novel_rate_at_the_default_threshold(held_out):
    recall, false_novel, manifest = _measure(held_out, NoveltySettings().threshold_quantile)
    print(
        f"\nquantile 0.8: recall {recall:.2f}, false-novel {false_novel:.3f}, {manifest['rows']} clusters"
    )
    assert manifest["representation"]["representation"] == "kmer"
    assert recall >= 0.70
    assert false_novel <= 0.08


def test_a_higher_threshold_flags_fewer_known_reads(held_out):
    low = _measure(held_out, 0.6)
    high = _measure(held_out, 0.9)
    print(f"\nquantile 0.6: recall {low[0]:.2f}, false-novel {low[1]:.3f}")
    print(f"quantile 0.9: recall {high[0]:.2f}, false-novel {high[1]:.3f}")
    assert low[2]["threshold"]["value"] < high[2]["threshold"]["value"]
    assert low[1] > high[1]  # false-novel falls as the threshold rises
    assert low[0] >= high[0]  # and recall does not rise
    assert high[0] >= 0.65
