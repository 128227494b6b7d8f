"""Shards from raw copies: normalisation, QC, ids, joins, layout, atomicity, idempotency."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest.drops import DropFile
from bioscan_assets.core.ingest.normalise import normalise, segment_counts
from bioscan_assets.core.ingest.raw import copy_drop, read_raw_manifest
from bioscan_assets.core.ingest.sequence_hash import sequence_hash
from bioscan_assets.core.ingest.sequence_ids import HashSet64, IdAssigner, pair_read_numbers
from bioscan_assets.core.ingest.shard_config import ShardConfig
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches, read_shard_manifest
from bioscan_assets.core.ingest.shard_writer import write_shards
from bioscan_assets.core.ingest.validation import parse_sample_json, validate_drop
from bioscan_assets.core.layout import raw_blob, shard_dir
from bioscan_assets.core.schema import SHARD_SCHEMA
from bioscan_assets.core.storage import Store
from tests.helpers import random_dna, taxonomy_text, write_drop
from tests.ingest_data import (
    Read,
    fasta_text,
    fastq_text,
    random_reads,
    write_bytes,
    write_unaligned_bam,
)

TENANT, SAMPLE = "acme-lab", "S1"


def make_drop(root: Path, files: dict[str, bytes], *, sample: str = SAMPLE, **manifest) -> Path:
    entries = manifest.pop("entries", None) or [
        n for n in files if n not in ("taxonomy.tsv",) and not n.endswith(".fa.ref")
    ]
    write_drop(root / "landing", TENANT, sample, files, listed=entries, extra=manifest)
    return root / "landing" / TENANT / sample


def ingest(root: Path, config: ShardConfig | None = None, *, sample: str = SAMPLE):
    landing, store = Store(str(root / "landing")), Store(str(root / "storage"))
    raw_json = (root / "landing" / TENANT / sample / "sample.json").read_bytes()
    drop = validate_drop(landing, TENANT, sample, manifest=raw_json)
    raw = copy_drop(landing, store, drop, raw_json)
    return store, write_shards(store, drop, raw, config)


def rows(store: Store, sample: str = SAMPLE) -> list[dict]:
    return [row for b in iter_shard_batches(store, TENANT, sample) for row in b.to_pylist()]


def part_bytes(root: Path, sample: str = SAMPLE) -> dict[str, bytes]:
    folder = root / "storage" / shard_dir(TENANT, sample)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- batch arithmetic ------------------------------------------------------------------------


def test_normalise_maps_every_byte():
    text = "acgtuACGTU" + "NRYSWKMBDHV" + "nry-*.? " + "é"
    out = normalise(text.encode("ascii", "replace"))
    assert out.decode() == "ACGTTACGTT" + "N" * 11 + "N" * 8 + "N"
    assert len(out) == len(text)


@pytest.mark.parametrize("seed", range(5))
def test_segment_counts_matches_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 200, size=300)
    lengths[::7] = 0
    lengths[::11] = 64
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    mask = rng.random(int(offsets[-1])) < 0.3
    expected = [int(mask[a:b].sum()) for a, b in itertools.pairwise(offsets)]
    assert segment_counts(mask, offsets).tolist() == expected


def test_hash_set_membership_across_merges():
    seen = HashSet64()
    values = np.random.default_rng(0).integers(0, 2**63, size=5000, dtype=np.uint64)
    for chunk in np.array_split(values, 37):
        seen.add(chunk)
    assert len(seen) == 5000 and seen.nbytes == 5000 * 8
    assert seen.contains(values).all()
    assert not seen.contains(values + np.uint64(1)).any()


def test_duplicate_ids_get_numbered_deterministically():
    ids = IdAssigner()
    first = ids.assign(["a", "b", "a", "c#2", "a"])
    second = ids.assign(["c", "c", "b", "a#2"])
    assert first == ["a", "b", "a#2", "c#2", "a#3"]
    # 'c#2' is taken by a real read, so the second 'c' becomes 'c#3'; 'a#2' was generated.
    assert second == ["c", "c#3", "b#2", "a#2#2"]
    assert ids.renamed == 5
    assert len(set(first + second)) == 9


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["run1_R1.fastq.gz", "run1_R2.fastq.gz"], [1, 2]),
        (["s_R1_001.fq", "s_R2_001.fq", "other.fq"], [1, 2, 0]),
        (["lib.1.fastq", "lib.2.fastq"], [1, 2]),
        (["x_1.fq.gz", "x_2.fq.gz"], [1, 2]),
        (["lonely_R1.fastq"], [0]),
        (["a_R1.fq", "b_R2.fq"], [0, 0]),
        (["run1.fasta", "run2.fasta"], [0, 0]),
        (["d1/s_R1.fq", "d2/s_R2.fq"], [0, 0]),
    ],
)
def test_pairing_by_file_name(paths, expected):
    assert [pair_read_numbers(paths)[p] for p in paths] == expected


# --- whole samples ---------------------------------------------------------------------------


def test_rows_normalised_measured_and_joined(tmp_path):
    reads = [
        Read("r1", "acgtu" * 20),  # 100 bases, lower case and U
        Read("r2", "GGCCNNAT" * 10),  # 80 bases, 25% N -> dropped
        Read("r3", "ACGT" * 5),  # 20 bases -> too short
        Read("r4", "GCGCGCGCRY" * 6),  # 60 bases, 2 codes -> N (20%)... dropped too
        Read("r5", "GGGGCCCCAT" * 6),  # 60 bases, 80% GC
    ]
    tax = taxonomy_text([("r1", "k__Bacteria; p__Firmicutes"), ("r5", "k__Archaea"), ("gone", "")])
    make_drop(
        tmp_path,
        {"ref.fasta": fasta_text(reads), "taxonomy.tsv": tax},
        taxonomy="taxonomy.tsv",
        entries=["ref.fasta"],
    )
    store, manifest = ingest(tmp_path, ShardConfig(min_length=50, max_n_fraction=0.1))
    got = {row["sequence_id"]: row for row in rows(store)}
    assert sorted(got) == ["r1", "r5"]
    r1 = got["r1"]
    assert r1["dna_sequence"] == "ACGTT" * 20
    assert r1["length"] == 100
    assert r1["gc_fraction"] == pytest.approx(0.4)
    assert r1["n_fraction"] == 0.0
    assert r1["mean_quality"] is None
    assert r1["taxonomy"] == "k__Bacteria; p__Firmicutes"
    assert (r1["depth"], r1["latitude"], r1["longitude"]) == (500.0, 10.5, -45.2)
    assert (r1["tenant"], r1["sample_id"], r1["source_file"]) == (TENANT, SAMPLE, "ref.fasta")
    assert r1["read_number"] == 0
    assert got["r5"]["gc_fraction"] == pytest.approx(0.8)
    assert manifest["records_read"] == 5
    assert manifest["dropped"] == {"too_short": 1, "too_many_n": 2}
    assert manifest["rows"] == 2
    assert manifest["taxonomy"]["unmatched_ids"] == 1
    assert manifest["taxonomy"]["unmatched_examples"] == ["gone"]
    assert manifest["taxonomy"]["rows_without_taxonomy"] == 0


def test_paired_fastq_and_bam_ids_and_qualities(tmp_path):
    r1 = random_reads(30, seed=1, length=(150, 150), prefix="frag")
    r2 = random_reads(30, seed=2, length=(150, 150), prefix="frag")
    bam = [
        Read("b1", "ACGT" * 20, "I" * 80, 77),
        Read("b1", "TTGCA" * 16, "5" * 80, 141),
        Read("b2", "ACGTA" * 16, None, 4),
    ]
    make_drop(
        tmp_path,
        {
            "run1_R1.fastq.gz": write_bytes(
                tmp_path / "a", fastq_text(r1), compression="gzip"
            ).read_bytes(),
            "run1_R2.fastq.gz": write_bytes(
                tmp_path / "b", fastq_text(r2), compression="bgzip"
            ).read_bytes(),
            "lane.bam": write_unaligned_bam(tmp_path / "c.bam", bam).read_bytes(),
        },
    )
    store, manifest = ingest(tmp_path)
    got = {row["sequence_id"]: row for row in rows(store)}
    assert len(got) == 63
    assert got["frag0/1"]["read_number"] == 1 and got["frag0/2"]["read_number"] == 2
    assert got["frag0/1"]["source_file"] == "run1_R1.fastq.gz"
    q = [ord(c) - 33 for c in r2[5].qual]
    assert got["frag5/2"]["mean_quality"] == pytest.approx(sum(q) / len(q), rel=1e-6)
    assert got["b1/1"]["mean_quality"] == pytest.approx(40.0)
    assert got["b1/2"]["mean_quality"] == pytest.approx(20.0)
    assert got["b2"]["mean_quality"] is None and got["b2"]["read_number"] == 0
    files = {f["path"]: f for f in manifest["inputs"]["files"]}
    assert files["run1_R1.fastq.gz"]["read_number"] == 1
    assert files["lane.bam"]["read_number"] == "flags"


def test_duplicate_names_across_files_are_counted(tmp_path):
    make_drop(
        tmp_path,
        {
            "a.fasta": fasta_text(random_reads(5, seed=1, length=(60, 60), quality=False)),
            "b.fasta": fasta_text(random_reads(5, seed=2, length=(60, 60), quality=False)),
        },
    )
    store, manifest = ingest(tmp_path)
    ids = [row["sequence_id"] for row in rows(store)]
    assert ids == [f"read{i}" for i in range(5)] + [f"read{i}#2" for i in range(5)]
    assert manifest["duplicate_ids_renamed"] == 5


def test_layout_parts_manifest_and_schema(tmp_path):
    reads = random_reads(500, seed=9, length=(60, 200))
    make_drop(tmp_path, {"r.fastq": fastq_text(reads)})
    config = ShardConfig(rows_per_part=70, batch_records=256)
    store, manifest = ingest(tmp_path, config)
    folder = tmp_path / "storage" / shard_dir(TENANT, SAMPLE)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f["path"] for f in manifest["files"]] + ["_manifest.json"])
    assert all(f["rows"] <= 70 for f in manifest["files"])
    assert sum(f["rows"] for f in manifest["files"]) == manifest["rows"] == 500
    assert json.loads((folder / "_manifest.json").read_text()) == manifest
    for entry in manifest["files"]:
        assert entry["path"].startswith(f"part-{manifest['version']}-")
        data = (folder / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        parquet = pq.ParquetFile(folder / entry["path"])
        assert parquet.schema_arrow.equals(SHARD_SCHEMA, check_metadata=False)
        assert parquet.metadata.num_rows == entry["rows"]
    # all 500 reads, each once, in manifest order
    ids = [row["sequence_id"] for row in rows(store)]
    assert sorted(ids) == sorted(r.name for r in reads)
    assert read_shard_manifest(store, TENANT, SAMPLE) == manifest
    batches = list(iter_shard_batches(store, TENANT, SAMPLE, columns=["length"], batch_rows=33))
    assert all(b.schema.names == ["length"] and b.num_rows <= 33 for b in batches)


def test_long_reads_split_by_bases(tmp_path):
    reads = random_reads(12, seed=4, length=(5000, 9000), quality=False)
    make_drop(tmp_path, {"long.fa": fasta_text(reads, wrap=80)})
    store, manifest = ingest(tmp_path, ShardConfig(bases_per_part=20_000, batch_bases=30_000))
    assert len(manifest["files"]) >= 4
    for entry in manifest["files"]:
        table = pq.read_table(tmp_path / "storage" / shard_dir(TENANT, SAMPLE) / entry["path"])
        assert pa.compute.sum(table["length"]).as_py() <= 20_000 or table.num_rows == 1
    assert sorted(r["dna_sequence"] for r in rows(store)) == sorted(r.seq for r in reads)


def test_rerun_is_byte_identical_and_config_change_replaces_parts(tmp_path):
    make_drop(tmp_path, {"r.fq": fastq_text(random_reads(400, seed=3))})
    store, first = ingest(tmp_path, ShardConfig(rows_per_part=150))
    before = part_bytes(tmp_path)
    _, again = ingest(tmp_path, ShardConfig(rows_per_part=150))
    assert again == first
    assert part_bytes(tmp_path) == before
    _, changed = ingest(tmp_path, ShardConfig(rows_per_part=150, min_length=120))
    assert changed["version"] != first["version"]
    after = part_bytes(tmp_path)
    assert set(after) == {"_manifest.json", *(f["path"] for f in changed["files"])}
    assert changed["rows"] == sum(1 for r in rows(store) if r["length"] >= 120)


def test_failed_run_leaves_the_committed_shards_alone(tmp_path):
    make_drop(tmp_path, {"r.fq": fastq_text(random_reads(300, seed=3))})
    store, good = ingest(tmp_path, ShardConfig(rows_per_part=50))
    before = part_bytes(tmp_path)
    # A later raw copy whose second file turns out corrupt when parsed for shards.
    raw = read_raw_manifest(store, TENANT, SAMPLE)
    drop = parse_sample_json(raw["sample_json"].encode(), location="sample.json")
    bad_blob = tmp_path / "storage" / raw_blob("f" * 64)
    bad_blob.parent.mkdir(parents=True, exist_ok=True)
    bad_blob.write_bytes(b"@x\nACGT\n+\nII\n")
    raw["files"].append(
        {"path": "bad.fq", "format": "fastq", "sha256": "f" * 64, "blob": raw_blob("f" * 64)}
    )
    drop = type(drop)(
        drop.tenant,
        drop.sample_id,
        (*drop.files, DropFile("bad.fq", "f" * 64, "fastq")),
        drop.taxonomy,
        drop.metadata,
        drop.manifest_sha256,
    )
    with pytest.raises(DropError) as err:
        write_shards(store, drop, raw, ShardConfig(rows_per_part=40))
    assert err.value.location == "bad.fq line 4"
    assert part_bytes(tmp_path) == before
    assert read_shard_manifest(store, TENANT, SAMPLE) == good


def test_all_reads_filtered_still_writes_a_schema(tmp_path):
    make_drop(tmp_path, {"r.fa": fasta_text(random_reads(5, length=(10, 20), quality=False))})
    store, manifest = ingest(tmp_path)
    assert manifest["rows"] == 0 and manifest["dropped"]["too_short"] == 5
    assert len(manifest["files"]) == 1
    folder = tmp_path / "storage" / shard_dir(TENANT, SAMPLE)
    assert pq.read_schema(folder / manifest["files"][0]["path"]).equals(
        SHARD_SCHEMA, check_metadata=False
    )
    assert rows(store) == []


def test_missing_manifest_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialise sequence_shards"):
        read_shard_manifest(Store(str(tmp_path)), TENANT, "nope")


def test_sequences_never_appear_in_errors(tmp_path):
    seq = random_dna(np.random.default_rng(1), 150)
    path = tmp_path / "x.fq"
    path.write_text(f"@r1\n{seq}\n+\n{'I' * 100}\n")
    make_drop(tmp_path, {"x.fq": path.read_bytes()})
    with pytest.raises(DropError) as err:
        ingest(tmp_path)
    assert seq[:20] not in str(err.value)


# --- the sequence hash (shard format 2) ------------------------------------------------------


def test_rows_carry_the_hash_of_their_normalised_sequence(tmp_path):
    reads = [Read("lower", "acgtu" * 20), Read("upper", "ACGTT" * 20), Read("other", "GATC" * 25)]
    make_drop(tmp_path, {"r.fa": fasta_text(reads)})
    store, manifest = ingest(tmp_path)
    assert manifest["format_version"] == 2
    got = {row["sequence_id"]: row["sequence_hash"] for row in rows(store)}
    assert got["lower"] == got["upper"] == xxhash.xxh3_128_hexdigest(b"ACGTT" * 20)
    assert got["other"] == sequence_hash("GATC" * 25) != got["upper"]
    assert all(len(h) == 32 and int(h, 16) >= 0 for h in got.values())
    assert SHARD_SCHEMA.names[:6] == [
        "sequence_id",
        "dna_sequence",
        "taxonomy",
        "depth",
        "latitude",
        "longitude",
    ]
    assert SHARD_SCHEMA.names[-1] == "sequence_hash"


def test_format_1_shards_get_their_hash_computed_by_the_reader(tmp_path):
    make_drop(tmp_path, {"r.fq": fastq_text(random_reads(60, seed=5))})
    store, manifest = ingest(tmp_path, ShardConfig(rows_per_part=25))
    expected = [(r["sequence_id"], r["sequence_hash"]) for r in rows(store)]
    folder = tmp_path / "storage" / shard_dir(TENANT, SAMPLE)
    for entry in manifest["files"]:  # rewrite as the format-1 writer did: no hash column
        table = pq.read_table(folder / entry["path"]).drop_columns(["sequence_hash"])
        pq.write_table(table, folder / entry["path"])
        entry["sha256"] = hashlib.sha256((folder / entry["path"]).read_bytes()).hexdigest()
    manifest["format_version"] = 1
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    for columns in (["sequence_id", "sequence_hash"], None):
        got = [
            (r["sequence_id"], r["sequence_hash"])
            for b in iter_shard_batches(store, TENANT, SAMPLE, columns=columns, batch_rows=7)
            for r in b.to_pylist()
        ]
        assert got == expected
