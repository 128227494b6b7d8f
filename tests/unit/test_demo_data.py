"""The bundled demo drops are valid lab drops with the shapes their README promises.

Reads only the committed files (never /work/shared) and no project module, so it holds on a
fresh clone whatever state the pipeline code is in.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path, PurePosixPath

import pysam
import pytest

DEMO = Path(__file__).resolve().parents[2] / "bioscan_assets" / "demo_data"
LANDING = DEMO / "landing"
DROPS = [
    ("acme-lab", "REF-16S-001"),
    ("acme-lab", "FIELD-2026-001"),
    ("reef-survey", "REEF-07"),
    ("reef-survey", "REEF-REF-01"),
]
REFERENCES = [
    ("acme-lab", "REF-16S-001", "reference_16S.fasta"),
    ("reef-survey", "REEF-REF-01", "reef_reference_16S.fa.gz"),
]
TENANT_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SAMPLE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ATTRIBUTION = (
    "© 2009-2010 The Broad Institute; sequences provided by the Ribosomal Database Project; "
    "via Debian microbiomeutil-data"
)
TOKEN_BUDGET = 30_000


def manifest(tenant: str, sample_id: str) -> dict:
    return json.loads((LANDING / tenant / sample_id / "sample.json").read_text(encoding="utf-8"))


def tokens(sequence: str) -> int:
    """NT v1 token count of a normalised sequence: <cls>, 6-mers per ACGT run, rest one each."""
    seq = re.sub(r"[^ACGT]", "N", sequence.upper().replace("U", "T"))
    runs = [len(run) for run in re.findall(r"[ACGT]+", seq)]
    return 1 + sum(n // 6 + n % 6 for n in runs) + seq.count("N")


def test_the_drops_cover_two_tenants() -> None:
    found = sorted(
        tuple(p.parent.relative_to(LANDING).parts) for p in LANDING.glob("*/*/sample.json")
    )
    assert found == sorted(DROPS)
    assert len({tenant for tenant, _ in found}) == 2


@pytest.mark.parametrize(("tenant", "sample_id"), DROPS)
def test_sample_json_follows_the_contract(tenant: str, sample_id: str) -> None:
    folder = LANDING / tenant / sample_id
    doc = manifest(tenant, sample_id)
    assert doc["tenant"] == tenant and TENANT_RE.fullmatch(tenant)
    assert doc["sample_id"] == sample_id and SAMPLE_ID_RE.fullmatch(sample_id)
    assert ".." not in sample_id
    datetime.fromisoformat(doc["collected_at"])
    for key, bound in (("latitude", 90), ("longitude", 180), ("depth_m", None)):
        value = doc[key]
        assert value is None or (
            isinstance(value, float) and (bound is None or abs(value) <= bound)
        )
    assert doc["files"], "a drop lists at least one sequence file"
    listed = set()
    for entry in doc["files"]:
        assert set(entry) == {"path", "sha256"}
        rel = PurePosixPath(entry["path"])
        assert not rel.is_absolute() and ".." not in rel.parts
        path = folder / rel
        assert path.is_file() and not path.is_symlink()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], entry["path"]
        listed.add(entry["path"])
    if "taxonomy" in doc:
        assert (folder / doc["taxonomy"]).is_file()
        listed.add(doc["taxonomy"])
    # Staging copies the whole folder: nothing may lie there that the manifest does not name.
    assert {p.name for p in folder.iterdir()} == listed | {"sample.json"}


def test_paired_fastq_names_qualities_and_error_model() -> None:
    folder = LANDING / "acme-lab" / "FIELD-2026-001"
    with (
        pysam.FastxFile(str(folder / "FIELD-2026-001_R1.fastq.gz")) as r1,
        pysam.FastxFile(str(folder / "FIELD-2026-001_R2.fastq.gz")) as r2,
    ):
        pairs = list(zip(r1, r2, strict=True))
    assert len(pairs) == 120
    first, last = [], []
    for n, (a, b) in enumerate(pairs, 1):
        assert a.name == b.name == f"FIELD-2026-001:1:{n}"
        for read in (a, b):
            assert len(read.sequence) == len(read.quality) == 150
            assert set(read.sequence) <= set("ACGTN")
            quals = read.get_quality_array()
            assert min(quals) >= 2 and max(quals) <= 41
            # N calls, and only they, carry the lowest quality ('#' = Q2).
            assert [c == "N" for c in read.sequence] == [q == 2 for q in quals]
            first += quals[:10]
            last += quals[-10:]
    # Illumina-like: high at the 5' end, decaying towards the 3' end.
    assert sum(first) / len(first) > sum(last) / len(last) + 5


def test_unaligned_bam_is_paired_unmapped_with_qualities() -> None:
    path = LANDING / "reef-survey" / "REEF-07" / "REEF-07.unaligned.bam"
    with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
        header = bam.header.to_dict()
        reads = list(bam.fetch(until_eof=True))
    assert header["HD"] == {"VN": "1.6", "SO": "unknown"} and not header.get("SQ")
    assert [rg["ID"] for rg in header["RG"]] == ["REEF-07"]
    assert len(reads) == 80
    for r1, r2 in zip(reads[::2], reads[1::2], strict=True):
        assert (r1.flag, r2.flag) == (77, 141)
        assert r1.query_name == r2.query_name
    for read in reads:
        assert read.is_unmapped and read.get_tag("RG") == "REEF-07"
        assert 150 <= read.query_length <= 250
        assert read.query_qualities is not None
        assert len(read.query_qualities) == read.query_length
        assert set(read.query_sequence) <= set("ACGTN")


@pytest.mark.parametrize(("tenant", "sample_id", "fasta"), REFERENCES)
def test_reference_labels_cover_the_fasta(tenant: str, sample_id: str, fasta: str) -> None:
    folder = LANDING / tenant / sample_id
    assert manifest(tenant, sample_id)["taxonomy"] == "taxonomy.tsv"
    with pysam.FastxFile(str(folder / fasta)) as handle:
        entries = [(entry.name, entry.comment) for entry in handle]
    ids = [name for name, _ in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(comment for _, comment in entries), "headers keep the organism name"
    lines = (folder / "taxonomy.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Feature ID\tTaxon"
    labels = dict(line.split("\t") for line in lines[1:])
    assert sorted(labels) == ids
    genera = Counter()
    for taxon in labels.values():
        ranks = [rank.strip() for rank in taxon.split(";")]
        assert [rank[:3] for rank in ranks] == ["k__", "p__", "c__", "o__", "f__", "g__", "s__"]
        genera[ranks[5]] += 1
    assert min(genera.values()) >= 2, "every reference sequence has a same-genus neighbour"


def test_acme_reference_is_large_enough_for_the_tuning_demo() -> None:
    lines = (LANDING / "acme-lab" / "REF-16S-001" / "taxonomy.tsv").read_text().splitlines()
    genera = Counter(line.split("; ")[5] for line in lines[1:])
    assert len(lines) - 1 >= 60 and len(genera) >= 10


def test_demo_fits_the_embedding_budget() -> None:
    total = 0
    for path in LANDING.glob("*/*/*"):
        if path.name.endswith((".fasta", ".fa.gz", ".fastq.gz")):
            with pysam.FastxFile(str(path)) as handle:
                total += sum(tokens(entry.sequence) for entry in handle)
        elif path.suffix == ".bam":
            with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
                total += sum(tokens(read.query_sequence) for read in bam.fetch(until_eof=True))
    assert 20_000 < total <= TOKEN_BUDGET


def test_simulation_truth_names_every_simulated_read() -> None:
    with open(DEMO / "simulation_truth.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    per_sample = Counter((row["tenant"], row["sample_id"]) for row in rows)
    assert per_sample == {("acme-lab", "FIELD-2026-001"): 240, ("reef-survey", "REEF-07"): 80}
    assert {row["genus_status"] for row in rows} == {"seen_genus", "novel_genus"}


def test_attribution_and_simulation_notice_ship_with_the_data() -> None:
    licence = (DEMO / "LICENSE-data.txt").read_text(encoding="utf-8")
    assert ATTRIBUTION in licence
    assert "Redistribution and use in source and binary forms" in licence
    readme = (DEMO / "README.md").read_text(encoding="utf-8")
    assert ATTRIBUTION in readme
    assert "SIMULATED" in readme and "LICENSE-data.txt" in readme
    for tenant, sample_id in DROPS:
        doc = manifest(tenant, sample_id)
        assert doc["simulated"] is (doc["kind"] == "field")
