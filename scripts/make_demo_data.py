"""Build the bundled demo lab drops from the 16S reference set (run once; the output is committed).

    .venv/bin/python scripts/make_demo_data.py
    .venv/bin/python scripts/make_demo_data.py --source /work/shared/data \\
        --out bioscan_assets/demo_data/landing

Writes four drops across two tenants under --out, and next to it (in --out's parent folder)
README.md (generated: per-drop totals, composition, error model), LICENSE-data.txt and
simulation_truth.tsv (where every simulated read came from). The whole landing folder is
built in a temporary sibling and swapped in at the end, so a re-run leaves no stale files.

Deterministic for a given source and seed: the same sequences are chosen and the same reads
simulated (the compressed bytes also depend on the zlib/htslib build). The FASTQ and BAM reads
are SIMULATED from real 16S sequences; nothing here is a real sequencing run. The project's
run and test commands never call this script.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pysam

SEED = 20261122

# Reference drops: genera with at least MIN_GENUS_SIZE members, so that after PER_GENUS go
# into a reference each genus keeps members the field samples can be simulated from.
ACME_REF_GENERA, ACME_PER_GENUS = 12, 6
REEF_REF_GENERA, REEF_PER_GENUS = 3, 2
MIN_GENUS_SIZE = 8

# Field samples: sources drawn from held-out members of the reference genera ("seen" genus)
# and from genera in no reference ("novel").
FIELD_SEEN, FIELD_NOVEL, FIELD_PAIRS = 15, 5, 120
REEF_SEEN, REEF_NOVEL, REEF_PAIRS = 8, 4, 40

# Error model (see README): Phred quality per cycle, substitutions drawn from the qualities.
Q_START, Q_END, Q_SD = 33.0, 21.0, 3.0  # mean quality at the first and last cycle of a run
DIP_RATE, DIP_RANGE = 0.002, (2, 12)  # occasional low-quality calls (bubbles, dust, phasing)
Q_MIN, Q_MAX = 2, 41
N_QUALITY = 2  # a call at Q2 is written as N ("#"), as Illumina software does
INSERT_MEAN, INSERT_SD = 350.0, 30.0
FASTQ_RUN = 150  # 2x150 cycles
BAM_RUN, BAM_MIN_LENGTH = 250, 150  # 2x250 cycles, reads trimmed to 150-250 bp

TOKEN_BUDGET = 30_000
ATTRIBUTION = (
    "© 2009-2010 The Broad Institute; sequences provided by the Ribosomal Database Project; "
    "via Debian microbiomeutil-data"
)

_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
_IUPAC = {
    "R": "AG",
    "Y": "CT",
    "S": "CG",
    "W": "AT",
    "K": "GT",
    "M": "AC",
    "B": "CGT",
    "D": "AGT",
    "H": "ACT",
    "V": "ACG",
    "N": "ACGT",
}
_NON_ACGT = re.compile(r"[^ACGT]")
_ACGT_RUN = re.compile(r"[ACGT]+")


@dataclass(frozen=True)
class SourceRecord:
    """One source FASTA record, kept byte for byte (header line and sequence lines)."""

    seq_id: str
    header: str
    lines: tuple[str, ...]

    @property
    def sequence(self) -> str:
        return "".join(self.lines)


@dataclass
class SimRead:
    name: str
    sequence: str
    qualities: np.ndarray
    flag: int  # 0 for FASTQ; 77 / 141 for BAM read 1 / read 2
    substitutions: int


@dataclass
class SimPair:
    source_id: str
    strand: str
    start: int  # 0-based start of the fragment on the source's forward strand
    insert: int
    reads: tuple[SimRead, SimRead] = field(default_factory=tuple)


@dataclass
class DropStats:
    key: str
    kind: str
    files: list[str]
    sequences: int
    bases: int
    tokens: int
    notes: str


# ---------------------------------------------------------------------------- source


def read_source_fasta(path: Path) -> dict[str, SourceRecord]:
    """id -> record, in file order, with header and line wrapping exactly as in the source."""
    records: dict[str, SourceRecord] = {}
    header, lines = None, []
    with gzip.open(path, "rt", encoding="ascii") as handle:
        for line in [*handle, ">"]:
            line = line.rstrip("\r\n")
            if line.startswith(">"):
                if header is not None:
                    seq_id = header[1:].split(None, 1)[0]
                    if seq_id in records:
                        raise ValueError(f"{path}: duplicate id {seq_id}")
                    records[seq_id] = SourceRecord(seq_id, header, tuple(lines))
                header, lines = line, []
            elif line:
                lines.append(line)
    return records


def read_taxonomy(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines[0] != "Feature ID\tTaxon":
        raise ValueError(f"{path} line 1: expected the QIIME 2 header 'Feature ID<TAB>Taxon'")
    return dict(line.split("\t", 1) for line in lines[1:] if line)


def genus_of(taxon: str) -> str:
    for part in taxon.split(";"):
        part = part.strip()
        if part.startswith("g__"):
            return part[3:]
    return ""


# ---------------------------------------------------------------------------- tokens


def normalise(sequence: str) -> str:
    """As the shard writer does: upper case, U->T, every other non-ACGT code -> N."""
    return _NON_ACGT.sub("N", sequence.upper().replace("U", "T"))


def token_estimate(sequence: str) -> int:
    """Nucleotide Transformer tokens: <cls>, 6-mers per ACGT run, leftovers and Ns one each."""
    seq = normalise(sequence)
    runs = [len(m.group()) for m in _ACGT_RUN.finditer(seq)]
    return 1 + sum(n // 6 + n % 6 for n in runs) + seq.count("N")


# ---------------------------------------------------------------------------- simulation


def quality_means(run_length: int) -> np.ndarray:
    x = np.arange(run_length) / (run_length - 1)
    return Q_START - (Q_START - Q_END) * x**2


def draw_qualities(length: int, run_length: int, rng: np.random.Generator) -> np.ndarray:
    """Illumina-like Phred scores for cycles 0..length-1 of a run of run_length cycles."""
    quals = np.rint(rng.normal(quality_means(run_length)[:length], Q_SD))
    dips = rng.random(length) < DIP_RATE
    quals[dips] = rng.integers(DIP_RANGE[0], DIP_RANGE[1] + 1, int(dips.sum()))
    return np.clip(quals, Q_MIN, Q_MAX).astype(np.uint8)


def sequence_template(template: str, run_length: int, rng: np.random.Generator) -> SimRead:
    """Read `template` (ACGT only) as a sequencer would: qualities first, then errors from them."""
    quals = draw_qualities(len(template), run_length, rng)
    bases = list(template)
    error = rng.random(len(bases)) < 10.0 ** (-quals.astype(np.float64) / 10.0)
    substitutions = 0
    for i in range(len(bases)):
        if quals[i] <= N_QUALITY:
            bases[i] = "N"
        elif error[i]:
            bases[i] = "ACGT".replace(bases[i], "")[rng.integers(0, 3)]
            substitutions += 1
    return SimRead("", "".join(bases), quals, 0, substitutions)


def resolve_ambiguity(sequence: str, rng: np.random.Generator) -> str:
    """A real molecule has one base where the reference has an IUPAC code: pick one of them."""
    out = []
    for base in sequence.upper().replace("U", "T"):
        choices = _IUPAC.get(base)
        out.append(base if choices is None else choices[rng.integers(0, len(choices))])
    return "".join(out)


def reverse_complement(sequence: str) -> str:
    return sequence.translate(_COMPLEMENT)[::-1]


def simulate_pair(
    source: SourceRecord,
    lengths: tuple[int, int],
    run_length: int,
    rng: np.random.Generator,
) -> SimPair:
    """A fragment from either strand; read 1 from one end, read 2 from the other (reverse complement)."""
    seq = source.sequence
    insert = int(np.clip(round(rng.normal(INSERT_MEAN, INSERT_SD)), max(lengths), len(seq)))
    start = int(rng.integers(0, len(seq) - insert + 1))
    strand = "+" if rng.random() < 0.5 else "-"
    fragment = resolve_ambiguity(seq[start : start + insert], rng)
    if strand == "-":
        fragment = reverse_complement(fragment)
    read1 = sequence_template(fragment[: lengths[0]], run_length, rng)
    read2 = sequence_template(reverse_complement(fragment)[: lengths[1]], run_length, rng)
    return SimPair(source.seq_id, strand, start, insert, (read1, read2))


def read_counts(n_sources: int, n_pairs: int, rng: np.random.Generator) -> list[int]:
    """Uneven (log-normal) abundances, every source seen at least once."""
    weights = rng.lognormal(0.0, 1.0, n_sources)
    extra = rng.multinomial(n_pairs - n_sources, weights / weights.sum())
    return [1 + int(k) for k in extra]


def simulate_sample(
    sources: list[SourceRecord],
    n_pairs: int,
    run_length: int,
    min_length: int,
    prefix: str,
    rng: np.random.Generator,
) -> list[SimPair]:
    counts = read_counts(len(sources), n_pairs, rng)
    order = [src for src, k in zip(sources, counts, strict=True) for _ in range(k)]
    order = [order[i] for i in rng.permutation(len(order))]  # reads arrive in no source order
    pairs = []
    for n, source in enumerate(order, 1):
        lengths = (
            int(rng.integers(min_length, run_length + 1)),
            int(rng.integers(min_length, run_length + 1)),
        )
        pair = simulate_pair(source, lengths, run_length, rng)
        for read, flag in zip(pair.reads, (77, 141), strict=True):
            read.name = f"{prefix}:1:{n}"
            read.flag = flag
        pairs.append(pair)
    return pairs


def expected_substitution_rate(cycle: int, run_length: int, draws: int = 400_000) -> float:
    """Mean substitution probability at one cycle under the model (N calls excluded)."""
    rng = np.random.default_rng(0)
    means = quality_means(run_length)
    quals = np.rint(rng.normal(means[cycle], Q_SD, draws))
    dips = rng.random(draws) < DIP_RATE
    quals[dips] = rng.integers(DIP_RANGE[0], DIP_RANGE[1] + 1, int(dips.sum()))
    quals = np.clip(quals, Q_MIN, Q_MAX)
    p = np.where(quals <= N_QUALITY, 0.0, 10.0 ** (-quals / 10.0))
    return float(p.mean())


# ---------------------------------------------------------------------------- writers


def qual_string(quals: np.ndarray) -> str:
    return (quals + 33).tobytes().decode("ascii")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_gzip_text(path: Path, text: str) -> None:
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as gz:
        gz.write(text.encode("ascii"))


def write_reference(
    folder: Path, name: str, ids: list[str], records, taxonomy, *, bgzip: bool
) -> None:
    text = "".join(
        records[i].header + "\n" + "".join(line + "\n" for line in records[i].lines) for i in ids
    )
    if bgzip:
        with pysam.BGZFile(str(folder / name), "wb") as handle:
            handle.write(text.encode("ascii"))
    else:
        (folder / name).write_text(text, encoding="ascii")
    (folder / "taxonomy.tsv").write_text(
        "Feature ID\tTaxon\n" + "".join(f"{i}\t{taxonomy[i]}\n" for i in ids), encoding="utf-8"
    )


def write_paired_fastq(folder: Path, stem: str, pairs: list[SimPair]) -> list[str]:
    names = [f"{stem}_R1.fastq.gz", f"{stem}_R2.fastq.gz"]
    for mate, name in enumerate(names):
        text = "".join(
            f"@{p.reads[mate].name}\n{p.reads[mate].sequence}\n+\n"
            f"{qual_string(p.reads[mate].qualities)}\n"
            for p in pairs
        )
        write_gzip_text(folder / name, text)
    return names


def write_unaligned_bam(folder: Path, name: str, sample_id: str, pairs: list[SimPair]) -> None:
    header = {
        "HD": {"VN": "1.6", "SO": "unknown"},
        "RG": [{"ID": sample_id, "SM": sample_id, "PL": "ILLUMINA", "LB": f"{sample_id}-lib1"}],
        "CO": ["SIMULATED reads (bioscan demo data); see bioscan_assets/demo_data/README.md"],
    }
    with pysam.AlignmentFile(str(folder / name), "wb", header=header) as bam:
        for pair in pairs:
            for read in pair.reads:
                segment = pysam.AlignedSegment(bam.header)
                segment.query_name = read.name
                segment.flag = read.flag
                segment.reference_id = segment.next_reference_id = -1
                segment.reference_start = segment.next_reference_start = -1
                segment.mapping_quality = 0
                segment.query_sequence = read.sequence
                segment.query_qualities = pysam.qualitystring_to_array(qual_string(read.qualities))
                segment.set_tag("RG", sample_id)
                bam.write(segment)


def write_manifest(folder: Path, doc: dict, files: list[str]) -> None:
    """sample.json last: its presence marks the drop complete."""
    doc = {**doc, "files": [{"path": name, "sha256": sha256(folder / name)} for name in files]}
    (folder / "sample.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------- selection


@dataclass
class Selection:
    acme_genera: list[str]
    reef_genera: list[str]
    acme_ref: list[str]
    reef_ref: list[str]
    field_sources: list[str]
    reef_sources: list[str]


def select(taxonomy: dict[str, str], rng: random.Random) -> Selection:
    """Reference genera with several members; field sources from held-out members and novel genera."""
    by_genus: dict[str, list[str]] = defaultdict(list)
    for seq_id in sorted(taxonomy):
        by_genus[genus_of(taxonomy[seq_id])].append(seq_id)
    eligible = sorted(g for g, ids in by_genus.items() if g and len(ids) >= MIN_GENUS_SIZE)
    chosen = rng.sample(eligible, ACME_REF_GENERA + REEF_REF_GENERA)
    acme_genera = sorted(chosen[:ACME_REF_GENERA])
    reef_genera = sorted(chosen[ACME_REF_GENERA:])

    def split(genera: list[str], per_genus: int) -> tuple[list[str], list[str]]:
        ref, held_out = [], []
        for genus in genera:
            members = rng.sample(by_genus[genus], len(by_genus[genus]))
            ref += members[:per_genus]
            held_out += members[per_genus:]
        return sorted(ref), sorted(held_out)

    acme_ref, acme_held = split(acme_genera, ACME_PER_GENUS)
    reef_ref, reef_held = split(reef_genera, REEF_PER_GENUS)
    novel = sorted(i for i in taxonomy if genus_of(taxonomy[i]) not in set(chosen))
    novel_picks = rng.sample(novel, FIELD_NOVEL + REEF_NOVEL)
    field_sources = sorted(rng.sample(acme_held, FIELD_SEEN) + novel_picks[:FIELD_NOVEL])
    reef_sources = sorted(rng.sample(reef_held, REEF_SEEN) + novel_picks[FIELD_NOVEL:])
    return Selection(acme_genera, reef_genera, acme_ref, reef_ref, field_sources, reef_sources)


# ---------------------------------------------------------------------------- main


def build(source: Path, out: Path, seed: int) -> tuple[list[DropStats], Selection, list[str]]:
    """Write all drops under `out` (a fresh folder); return their stats and the truth rows."""
    records = read_source_fasta(source / "gold16s.fasta.gz")
    taxonomy = read_taxonomy(source / "gold16s_taxonomy.tsv")
    missing = sorted(set(taxonomy) - set(records))
    if missing:
        raise ValueError(f"{len(missing)} taxonomy ids have no sequence, e.g. {missing[0]}")
    sel = select(taxonomy, random.Random(seed))
    np_rng = np.random.default_rng(seed)
    stats: list[DropStats] = []
    truth: list[str] = []

    def reference_stats(key: str, files: list[str], ids: list[str], notes: str) -> DropStats:
        seqs = [records[i].sequence for i in ids]
        return DropStats(
            key,
            "reference (real sequences)",
            files,
            len(seqs),
            sum(map(len, seqs)),
            sum(map(token_estimate, seqs)),
            notes,
        )

    def reads_stats(key: str, kind: str, files: list[str], pairs: list[SimPair]) -> DropStats:
        reads = [r for p in pairs for r in p.reads]
        return DropStats(
            key,
            kind,
            files,
            len(reads),
            sum(len(r.sequence) for r in reads),
            sum(token_estimate(r.sequence) for r in reads),
            f"{len(pairs)} pairs from {len(set(p.source_id for p in pairs))} sources, "
            f"{sum(r.substitutions for r in reads)} substitutions, "
            f"{sum(r.sequence.count('N') for r in reads)} N calls",
        )

    def record_truth(tenant: str, sample_id: str, pairs: list[SimPair], seen: set[str]) -> None:
        for p in pairs:
            genus = genus_of(taxonomy[p.source_id])
            status = "seen_genus" if genus in seen else "novel_genus"
            for r in p.reads:
                truth.append(
                    f"{tenant}\t{sample_id}\t{r.name}\t{'1' if r.flag == 77 else '2'}\t"
                    f"{p.source_id}\t{p.strand}\t{p.start}\t{p.insert}\t{len(r.sequence)}\t"
                    f"{r.substitutions}\t{status}\t{taxonomy[p.source_id]}"
                )

    # 1. acme-lab/REF-16S-001: labelled reference, plain FASTA, labels as in the source.
    folder = out / "acme-lab" / "REF-16S-001"
    folder.mkdir(parents=True)
    write_reference(folder, "reference_16S.fasta", sel.acme_ref, records, taxonomy, bgzip=False)
    write_manifest(
        folder,
        {
            "sample_id": "REF-16S-001",
            "tenant": "acme-lab",
            "collected_at": "2026-10-01T00:00:00Z",
            "latitude": None,
            "longitude": None,
            "depth_m": None,
            "taxonomy": "taxonomy.tsv",
            "kind": "reference",
            "origin": "type strains and genome assemblies (RDP 16S gold set); no sampling site",
            "simulated": False,
        },
        ["reference_16S.fasta"],
    )
    stats.append(
        reference_stats(
            "acme-lab/REF-16S-001",
            ["reference_16S.fasta", "taxonomy.tsv"],
            sel.acme_ref,
            f"{ACME_REF_GENERA} genera x {ACME_PER_GENUS}",
        )
    )

    # 2. acme-lab/FIELD-2026-001: gzipped paired FASTQ, 2x150.
    folder = out / "acme-lab" / "FIELD-2026-001"
    folder.mkdir(parents=True)
    pairs = simulate_sample(
        [records[i] for i in sel.field_sources],
        FIELD_PAIRS,
        FASTQ_RUN,
        FASTQ_RUN,
        "FIELD-2026-001",
        np_rng,
    )
    files = write_paired_fastq(folder, "FIELD-2026-001", pairs)
    write_manifest(
        folder,
        {
            "sample_id": "FIELD-2026-001",
            "tenant": "acme-lab",
            "collected_at": "2026-11-01T10:00:00Z",
            "latitude": 10.5,
            "longitude": -45.2,
            "depth_m": 500.0,
            "kind": "field",
            "site": "mid-Atlantic station 4",
            "instrument": "simulated Illumina 2x150",
            "simulated": True,
        },
        files,
    )
    stats.append(reads_stats("acme-lab/FIELD-2026-001", "field, paired FASTQ.gz", files, pairs))
    record_truth("acme-lab", "FIELD-2026-001", pairs, set(sel.acme_genera))

    # 3. reef-survey/REEF-07: unaligned BAM, 2x250 reads trimmed to 150-250 bp.
    folder = out / "reef-survey" / "REEF-07"
    folder.mkdir(parents=True)
    pairs = simulate_sample(
        [records[i] for i in sel.reef_sources],
        REEF_PAIRS,
        BAM_RUN,
        BAM_MIN_LENGTH,
        "REEF-07",
        np_rng,
    )
    write_unaligned_bam(folder, "REEF-07.unaligned.bam", "REEF-07", pairs)
    write_manifest(
        folder,
        {
            "sample_id": "REEF-07",
            "tenant": "reef-survey",
            "collected_at": "2026-09-14T06:30:00Z",
            "latitude": -18.29,
            "longitude": 147.7,
            "depth_m": 12.0,
            "kind": "field",
            "site": "reef transect 7",
            "instrument": "simulated Illumina 2x250, reads trimmed to 150-250 bp",
            "simulated": True,
        },
        ["REEF-07.unaligned.bam"],
    )
    stats.append(
        reads_stats("reef-survey/REEF-07", "field, unaligned BAM", ["REEF-07.unaligned.bam"], pairs)
    )
    record_truth("reef-survey", "REEF-07", pairs, set(sel.reef_genera))

    # 4. reef-survey/REEF-REF-01: a small labelled reference for that tenant, bgzipped FASTA.
    folder = out / "reef-survey" / "REEF-REF-01"
    folder.mkdir(parents=True)
    write_reference(folder, "reef_reference_16S.fa.gz", sel.reef_ref, records, taxonomy, bgzip=True)
    write_manifest(
        folder,
        {
            "sample_id": "REEF-REF-01",
            "tenant": "reef-survey",
            "collected_at": "2026-09-01T00:00:00Z",
            "latitude": None,
            "longitude": None,
            "depth_m": None,
            "taxonomy": "taxonomy.tsv",
            "kind": "reference",
            "origin": "type strains and genome assemblies (RDP 16S gold set); no sampling site",
            "simulated": False,
        },
        ["reef_reference_16S.fa.gz"],
    )
    stats.append(
        reference_stats(
            "reef-survey/REEF-REF-01",
            ["reef_reference_16S.fa.gz", "taxonomy.tsv"],
            sel.reef_ref,
            f"{REEF_REF_GENERA} genera x {REEF_PER_GENUS}",
        )
    )
    return stats, sel, truth


TRUTH_HEADER = (
    "tenant\tsample_id\tread_name\tmate\tsource_id\tstrand\tfragment_start\tinsert\t"
    "read_length\tsubstitutions\tgenus_status\ttaxon"
)


def render_readme(stats: list[DropStats], sel: Selection, seed: int) -> str:
    rows = "\n".join(
        f"| `{s.key}` | {s.kind} | {', '.join(f'`{f}`' for f in s.files)} | {s.sequences:,} "
        f"| {s.bases:,} | {s.tokens:,} | {s.notes} |"
        for s in stats
    )
    total = sum(s.tokens for s in stats)
    rate = {
        run: (expected_substitution_rate(0, run), expected_substitution_rate(run - 1, run))
        for run in (FASTQ_RUN, BAM_RUN)
    }
    return f"""# Bundled demo lab drops

Generated by `scripts/make_demo_data.py --seed {seed}` from a subset of the 16S reference
set described under "Source and licence"; this file is written by that script. Each drop
follows the lab-drop contract (`landing/<tenant>/<sample_id>/`, `sample.json` last). The
project's run and test commands only read these committed files, never the source set.

**The FASTQ and BAM reads are SIMULATED** from real 16S sequences with the error model below.
They are not from a real sequencing run, and the sampling sites in their `sample.json` are
invented (`"simulated": true`). The two reference samples hold real sequences and labels.

| drop | kind | files | sequences | bases | tokens (est.) | notes |
|---|---|---|---|---|---|---|
{rows}

Tokens are Nucleotide Transformer tokens as the tokenizer counts them (`<cls>`, 6-mers per
ACGT run, leftovers and `N` one token each): **{total:,} in all**, kept under {TOKEN_BUDGET:,}
so that the demo job embeds everything in minutes on 2 CPU cores.

## The drops
- `acme-lab/REF-16S-001`: {len(sel.acme_ref)} real 16S sequences, {ACME_PER_GENUS} from each of
  {len(sel.acme_genera)} genera, so that every sequence has same-genus neighbours:
  {", ".join(sel.acme_genera)}.
  FASTA records are copied byte for byte from the source (headers `>ID organism name`,
  mixed case, IUPAC codes kept) and sorted by id; `taxonomy.tsv` rows are copied from the
  source's QIIME 2 table (seven prefixed ranks).
- `acme-lab/FIELD-2026-001`: {FIELD_PAIRS} read pairs, 2x150, gzipped FASTQ (`_R1` and `_R2`
  with the same read names `FIELD-2026-001:1:<n>` in the same order, no `/1` `/2` suffix),
  simulated from {FIELD_SEEN + FIELD_NOVEL} sequences: {FIELD_SEEN} other members of the
  reference's genera (not in the reference) and {FIELD_NOVEL} from genera in no demo reference.
- `reef-survey/REEF-07`: {REEF_PAIRS} read pairs in an unaligned BAM (flags 77/141, read group
  `REEF-07`, qualities set, no `@SQ`), reads trimmed to {BAM_MIN_LENGTH}-{BAM_RUN} bp, simulated
  from {REEF_SEEN + REEF_NOVEL} sequences: {REEF_SEEN} other members of the genera of
  `REEF-REF-01` and {REEF_NOVEL} from genera in no demo reference.
- `reef-survey/REEF-REF-01`: a small labelled reference for the second tenant as a
  bgzip-compressed FASTA, so that tenant's own index has labelled neighbours:
  {len(sel.reef_ref)} real sequences, {REEF_PER_GENUS} from each of {", ".join(sel.reef_genera)}.

`simulation_truth.tsv` (outside `landing/`, so never staged) says for every simulated read
which source sequence, strand and fragment it came from, how many substitutions it got and
whether its genus is in the tenant's reference (`seen_genus`) or not (`novel_genus`).

## How the reads are simulated
- Sources: each source gets at least one pair, the rest are spread by log-normal (sigma 1)
  abundances, and the pairs are shuffled. IUPAC codes in a source are resolved to one of
  their bases at random (a real molecule has one base there).
- Fragments: insert size N({INSERT_MEAN:.0f}, {INSERT_SD:.0f}) bp (clipped to the read length and
  the source length) at a uniform position, from either strand with equal probability
  (shotgun-like, not amplicon). Read 1 is the fragment's first bases; read 2 is the reverse
  complement of its other end.
- Qualities (Phred+33, unbinned, MiSeq-like): at cycle c of a run of L cycles the mean is
  {Q_START:.0f} - {Q_START - Q_END:.0f}*(c/(L-1))^2 (Q{Q_START:.0f} at the first cycle, Q{Q_END:.0f} at
  the last); each call is drawn from N(mean, {Q_SD:.0f}), rounded and clipped to Q{Q_MIN}-Q{Q_MAX}, and
  {DIP_RATE:.1%} of calls drop to Q{DIP_RANGE[0]}-Q{DIP_RANGE[1]}. L is {FASTQ_RUN} for the FASTQ sample and
  {BAM_RUN} for the BAM sample, whose reads are cut to a uniform length in {BAM_MIN_LENGTH}-{BAM_RUN}
  (as adapter and quality trimming leaves them).
- Errors follow the qualities: a call of quality Q is substituted (by one of the other three
  bases, uniformly) with probability 10^(-Q/10); calls at Q{N_QUALITY} are written as `N` with
  quality `#`. No insertions or deletions. The expected substitution rate rises from
  {rate[FASTQ_RUN][0]:.2%} at the first cycle to {rate[FASTQ_RUN][1]:.2%} at the last
  ({rate[BAM_RUN][0]:.2%} to {rate[BAM_RUN][1]:.2%} over a 2x250 run); `N` calls are rare
  (about 1 in 5,000 bases). The table above gives the counts actually drawn.

## Source and licence
Sequences and labels: the "rRNA16S.gold" set of the microbiomeutil project (Broad Institute,
sequences provided by the Ribosomal Database Project), as shipped by Debian's
`microbiomeutil-data` package, in the seven-rank QIIME 2 form of `gold16s_taxonomy.tsv` (six
ranks from the source lineage; the species is the organism's binomial where the organism
name starts with the genus). Label noise in the source is kept as it is.

License: BSD-3-Clause,
{ATTRIBUTION}.
The full text is in `LICENSE-data.txt`; keep it next to any copy or subset of these files.
"""


LICENSE_TEXT = """\
The 16S rRNA sequences and labels in this folder (and the reads simulated from them) come
from the "rRNA16S.gold" set of the microbiomeutil project, sequences provided by the
Ribosomal Database Project, as shipped by Debian's microbiomeutil-data package.

{attribution}

Copyright (c) 2009-2010 The Broad Institute, Inc. All rights reserved.

Redistribution and use in source and binary forms, with or without modification, are
permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this list of
   conditions and the following disclaimer.
2. Redistributions in binary form must reproduce the above copyright notice, this list of
   conditions and the following disclaimer in the documentation and/or other materials
   provided with the distribution.
3. Neither the name of the Broad Institute nor the names of its contributors may be used to
   endorse or promote products derived from this software without specific prior written
   permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS
OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF
MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE
COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL,
EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE
GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND
ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING
NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED
OF THE POSSIBILITY OF SUCH DAMAGE.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=Path("/work/shared/data"),
        help="folder with gold16s.fasta.gz and gold16s_taxonomy.tsv (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bioscan_assets/demo_data/landing"),
        help="landing folder to (re)create; README etc. go to its parent (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".landing-", dir=out.parent))
    try:
        stats, sel, truth = build(args.source, staging, args.seed)
        total = sum(s.tokens for s in stats)
        if total > TOKEN_BUDGET:
            raise SystemExit(f"demo data is {total} tokens, over the budget of {TOKEN_BUDGET}")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    (out.parent / "simulation_truth.tsv").write_text(
        TRUTH_HEADER + "\n" + "".join(row + "\n" for row in truth), encoding="utf-8"
    )
    (out.parent / "LICENSE-data.txt").write_text(
        LICENSE_TEXT.format(attribution=ATTRIBUTION), encoding="utf-8"
    )
    (out.parent / "README.md").write_text(render_readme(stats, sel, args.seed), encoding="utf-8")

    print(f"{'drop':28} {'sequences':>9} {'bases':>8} {'tokens':>7}  notes")
    for s in stats:
        print(f"{s.key:28} {s.sequences:9,} {s.bases:8,} {s.tokens:7,}  {s.notes}")
    print(
        f"{'total':28} {sum(s.sequences for s in stats):9,} {sum(s.bases for s in stats):8,} "
        f"{sum(s.tokens for s in stats):7,}"
    )


if __name__ == "__main__":
    main()
