"""Build the bundled demo lab drops from the 16S reference set (run once; output is committed).

    python scripts/make_demo_data.py --source ../shared/data --out bioscan_assets/demo_data/landing

Deterministic for a given source and seed. The FASTQ and BAM reads are SIMULATED from the 16S
sequences with the error model described in bioscan_assets/demo_data/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pysam

COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
READ_LENGTH = 150


def read_fasta(path: Path) -> dict[str, tuple[str, str]]:
    """id -> (header description, sequence) in file order."""
    records: dict[str, tuple[str, str]] = {}
    with pysam.FastxFile(str(path)) as handle:
        for entry in handle:
            records[entry.name] = (entry.comment or "", entry.sequence)
    return records


def read_taxonomy(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()[1:]
    return dict(line.split("\t", 1) for line in lines if line)


def genus_of(taxon: str) -> str:
    for part in taxon.split(";"):
        part = part.strip()
        if part.startswith("g__"):
            return part[3:]
    return ""


def pick_reference(
    taxonomy: dict[str, str], genera: int, per_genus: int, rng: random.Random
) -> list[str]:
    """`genera` genera with at least `per_genus` members, `per_genus` ids each (same-genus neighbours)."""
    by_genus: dict[str, list[str]] = defaultdict(list)
    for seq_id, taxon in taxonomy.items():
        if genus_of(taxon):
            by_genus[genus_of(taxon)].append(seq_id)
    eligible = sorted(g for g, ids in by_genus.items() if len(ids) >= per_genus)
    chosen = rng.sample(eligible, genera)
    return sorted(seq_id for g in chosen for seq_id in rng.sample(sorted(by_genus[g]), per_genus))


def simulate_read(fragment: str, rng: np.random.Generator) -> tuple[str, list[int]]:
    """Illumina-like read: Phred quality decays towards the 3' end; errors drawn from the qualities."""
    n = len(fragment)
    position = np.arange(n) / max(n - 1, 1)
    mean_q = 38 - 14 * position**2  # Q38 at the 5' end down to ~Q24 at the 3' end
    quals = np.clip(np.rint(rng.normal(mean_q, 2.5)), 2, 41).astype(int)
    dips = rng.random(n) < 0.01  # occasional low-quality calls
    quals[dips] = rng.integers(2, 8, dips.sum())
    error_p = 10 ** (-quals / 10)
    bases = np.frombuffer(fragment.upper().encode(), dtype="S1").copy()
    errors = rng.random(n) < error_p
    for i in np.flatnonzero(errors):
        choices = [b for b in b"ACGT" if bytes([b]) != bases[i]]
        bases[i] = bytes([choices[rng.integers(0, 3)]])
    bases[quals <= 3] = b"N"  # the lowest calls are reported as N
    return b"".join(bases).decode(), quals.tolist()


def simulate_pairs(
    sources: list[str], pairs: int, rng: np.random.Generator
) -> list[tuple[str, list[int], str, list[int]]]:
    out = []
    for _ in range(pairs):
        seq = sources[rng.integers(0, len(sources))].upper()
        insert = int(np.clip(rng.normal(350, 30), READ_LENGTH + 20, len(seq)))
        start = int(rng.integers(0, len(seq) - insert + 1))
        fragment = seq[start : start + insert]
        r1, q1 = simulate_read(fragment[:READ_LENGTH], rng)
        r2, q2 = simulate_read(fragment[-READ_LENGTH:].translate(COMPLEMENT)[::-1], rng)
        out.append((r1, q1, r2, q2))
    return out


def qual_string(quals: list[int]) -> str:
    return "".join(chr(q + 33) for q in quals)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(folder: Path, doc: dict, files: list[str]) -> None:
    """sample.json last: its presence marks the drop complete."""
    doc["files"] = [{"path": name, "sha256": sha256(folder / name)} for name in files]
    (folder / "sample.json").write_text(json.dumps(doc, indent=2) + "\n")


def gzip_text(path: Path, text: str) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("bioscan_assets/demo_data/landing"))
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()

    records = read_fasta(args.source / "gold16s.fasta.gz")
    taxonomy = read_taxonomy(args.source / "gold16s_taxonomy.tsv")
    py_rng = random.Random(args.seed)
    np_rng = np.random.default_rng(args.seed)

    # 1. labelled reference sample: real 16S sequences + taxonomy.tsv
    ref_ids = pick_reference(taxonomy, genera=12, per_genus=6, rng=py_rng)
    ref = args.out / "acme-lab" / "REF-16S-001"
    ref.mkdir(parents=True, exist_ok=True)
    with open(ref / "reference_16S.fasta", "w") as handle:
        for seq_id in ref_ids:
            description, seq = records[seq_id]
            handle.write(f">{seq_id} {description}\n")
            for i in range(0, len(seq), 80):
                handle.write(seq[i : i + 80] + "\n")
    (ref / "taxonomy.tsv").write_text(
        "Feature ID\tTaxon\n" + "".join(f"{i}\t{taxonomy[i]}\n" for i in ref_ids)
    )
    write_manifest(
        ref,
        {
            "sample_id": "REF-16S-001",
            "tenant": "acme-lab",
            "collected_at": "2026-10-01T00:00:00Z",
            "taxonomy": "taxonomy.tsv",
            "kind": "reference",
            "source": "RDP 16S gold set (type strains), see demo_data/README.md",
        },
        ["reference_16S.fasta"],
    )

    remaining = sorted(set(records) - set(ref_ids))
    # 2. field sample: paired gzipped FASTQ simulated from 20 sequences
    field_sources = [records[i][1] for i in py_rng.sample(remaining, 20)]
    field = args.out / "acme-lab" / "FIELD-2026-001"
    field.mkdir(parents=True, exist_ok=True)
    pairs = simulate_pairs(field_sources, 120, np_rng)
    r1_text = "".join(
        f"@FIELD-2026-001:1:{n}\n{r1}\n+\n{qual_string(q1)}\n"
        for n, (r1, q1, _, _) in enumerate(pairs, 1)
    )
    r2_text = "".join(
        f"@FIELD-2026-001:1:{n}\n{r2}\n+\n{qual_string(q2)}\n"
        for n, (_, _, r2, q2) in enumerate(pairs, 1)
    )
    gzip_text(field / "FIELD-2026-001_R1.fastq.gz", r1_text)
    gzip_text(field / "FIELD-2026-001_R2.fastq.gz", r2_text)
    write_manifest(
        field,
        {
            "sample_id": "FIELD-2026-001",
            "tenant": "acme-lab",
            "collected_at": "2026-11-01T10:00:00Z",
            "latitude": 10.5,
            "longitude": -45.2,
            "depth_m": 500.0,
            "site": "mid-Atlantic station 4",
            "instrument": "simulated Illumina 2x150",
            "simulated": True,
        },
        ["FIELD-2026-001_R1.fastq.gz", "FIELD-2026-001_R2.fastq.gz"],
    )

    # 3. field sample of another tenant: unaligned BAM (paired flags 77/141)
    bam_sources = [records[i][1] for i in py_rng.sample(remaining, 15)]
    reef = args.out / "reef-survey" / "REEF-07"
    reef.mkdir(parents=True, exist_ok=True)
    header = {
        "HD": {"VN": "1.6", "SO": "unknown"},
        "RG": [{"ID": "REEF-07", "SM": "REEF-07", "PL": "ILLUMINA"}],
    }
    with pysam.AlignmentFile(str(reef / "REEF-07.unaligned.bam"), "wb", header=header) as bam:
        for n, (r1, q1, r2, q2) in enumerate(simulate_pairs(bam_sources, 40, np_rng), 1):
            for flag, seq, quals in ((77, r1, q1), (141, r2, q2)):
                read = pysam.AlignedSegment(bam.header)
                read.query_name = f"REEF-07:{n}"
                read.flag = flag
                read.query_sequence = seq
                read.query_qualities = pysam.qualitystring_to_array(qual_string(quals))
                read.set_tag("RG", "REEF-07")
                bam.write(read)
    write_manifest(
        reef,
        {
            "sample_id": "REEF-07",
            "tenant": "reef-survey",
            "collected_at": "2026-09-14T06:30:00Z",
            "latitude": -18.29,
            "longitude": 147.7,
            "depth_m": 12.0,
            "site": "reef transect 7",
            "instrument": "simulated Illumina 2x150",
            "simulated": True,
        },
        ["REEF-07.unaligned.bam"],
    )

    for folder in sorted(args.out.glob("*/*")):
        print(
            folder.relative_to(args.out), json.loads((folder / "sample.json").read_text())["files"]
        )


if __name__ == "__main__":
    main()
