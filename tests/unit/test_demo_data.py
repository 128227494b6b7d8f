"""The bundled demo drops are valid lab drops with the shapes the README promises."""

from __future__ import annotations

import pysam
import pytest

from bioscan_assets.core.drop_validation import validate_drop
from bioscan_assets.core.storage import Store
from bioscan_assets.demo import DEMO_LANDING

DROPS = [("acme-lab", "REF-16S-001"), ("acme-lab", "FIELD-2026-001"), ("reef-survey", "REEF-07")]


@pytest.mark.parametrize(("tenant", "sample_id"), DROPS)
def test_demo_drop_validates(tenant: str, sample_id: str) -> None:
    drop = validate_drop(Store(str(DEMO_LANDING)), tenant, sample_id)
    assert drop.partition_key == f"{tenant}/{sample_id}"


def test_paired_fastq_names_and_qualities_match() -> None:
    folder = DEMO_LANDING / "acme-lab" / "FIELD-2026-001"
    with (
        pysam.FastxFile(str(folder / "FIELD-2026-001_R1.fastq.gz")) as r1,
        pysam.FastxFile(str(folder / "FIELD-2026-001_R2.fastq.gz")) as r2,
    ):
        pairs = list(zip(r1, r2, strict=True))
    assert len(pairs) == 120
    for a, b in pairs:
        assert a.name == b.name
        assert len(a.sequence) == len(a.quality) == len(b.sequence) == len(b.quality) == 150


def test_unaligned_bam_is_paired_and_unmapped() -> None:
    path = DEMO_LANDING / "reef-survey" / "REEF-07" / "REEF-07.unaligned.bam"
    with pysam.AlignmentFile(str(path), "rb", check_sq=False) as bam:
        reads = list(bam.fetch(until_eof=True))
    assert len(reads) == 80
    assert all(r.is_unmapped and r.query_qualities is not None for r in reads)
    assert sum(r.is_read1 for r in reads) == sum(r.is_read2 for r in reads) == 40


def test_reference_labels_cover_the_fasta() -> None:
    folder = DEMO_LANDING / "acme-lab" / "REF-16S-001"
    with pysam.FastxFile(str(folder / "reference_16S.fasta")) as fasta:
        ids = [entry.name for entry in fasta]
    labelled = [
        line.split("\t")[0] for line in (folder / "taxonomy.tsv").read_text().splitlines()[1:]
    ]
    assert sorted(ids) == sorted(labelled)
    assert (DEMO_LANDING.parent / "LICENSE-data.txt").read_text().count("Broad Institute") >= 2
