"""raw_sequences and sequence_shards (with their checks) on a real Dagster instance.

Covers the file-level bad-input matrix of the foundation issue: each bad drop fails with an
error naming the file and line or field, a valid sample next to it still materialises, and
what an earlier good run wrote stays intact.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from bioscan_resources.storage import StorageResource
from dagster import DagsterInstance, materialize

from bioscan_assets.assets.ingest import (
    ShardsConfig,
    ingest_assets,
    ingest_checks,
    raw_sequences,
    sequence_shards,
)
from bioscan_assets.core.ingest.shard_checks import duplicate_sequence_ids
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches, read_shard_manifest
from bioscan_assets.core.layout import raw_manifest, run_manifest, shard_dir
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions
from tests.helpers import taxonomy_text, write_drop
from tests.ingest_data import (
    Read,
    fasta_text,
    fastq_text,
    random_reads,
    write_aligned_cram,
    write_bytes,
    write_reference,
    write_unaligned_bam,
)

pytestmark = pytest.mark.integration

TENANT = "acme-lab"


class Env:
    def __init__(self, root: Path, storage: str | None = None):
        self.landing = root / "landing"
        self.storage = storage or str(root / "storage")
        self.instance = DagsterInstance.ephemeral()
        self.resources = {
            "storage": StorageResource(landing=str(self.landing), storage=self.storage)
        }

    @property
    def store(self) -> Store:
        return Store(self.storage)

    def folder(self, sample: str, tenant: str = TENANT) -> Path:
        path = self.landing / tenant / sample
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, sample: str, *, tenant: str = TENANT, config: dict | None = None):
        key = f"{tenant}/{sample}"
        self.instance.add_dynamic_partitions(samples_partitions.name, [key])
        run_config = {"ops": {"sequence_shards": {"config": config}}} if config else None
        return materialize(
            [*ingest_assets, *ingest_checks],
            partition_key=key,
            instance=self.instance,
            resources=self.resources,
            run_config=run_config,
            raise_on_error=False,
        )

    def storage_bytes(self) -> dict[str, bytes]:
        root = Path(self.storage)
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and "manifests" not in p.parts  # run manifests carry run ids
        }


def failure_text(result) -> str:
    parts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None:
            parts.append(data.user_failure_data.description or "")
        if data.error is not None:
            parts.append(data.error.message)
    return "\n".join(parts)


def good_sample(env: Env, sample: str = "GOOD") -> None:
    folder = env.folder(sample)
    reads = random_reads(40, seed=11, length=(120, 160))
    (folder / "ref.fasta").write_bytes(fasta_text(reads))
    (folder / "taxonomy.tsv").write_bytes(
        taxonomy_text([(r.name, "k__Bacteria; p__Firmicutes") for r in reads[:30]] + [("x", "")])
    )
    write_drop(env.landing, TENANT, sample, listed=["ref.fasta"], taxonomy="taxonomy.tsv")


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(tmp_path)


def test_good_drop_materialises_with_metadata_and_checks(env):
    folder = env.folder("S1")
    r1 = random_reads(60, seed=1, length=(150, 150), prefix="frag")
    r2 = random_reads(60, seed=2, length=(150, 150), prefix="frag")
    write_bytes(folder / "run1_R1.fastq.gz", fastq_text(r1), compression="gzip")
    write_bytes(folder / "run1_R2.fastq.gz", fastq_text(r2), compression="bgzip")
    write_unaligned_bam(
        folder / "lane.bam",
        [Read("b1", "ACGT" * 30, "I" * 120, 77), Read("b1", "TTGCA" * 24, "5" * 120, 141)],
    )
    write_drop(
        env.landing, TENANT, "S1", listed=["run1_R1.fastq.gz", "run1_R2.fastq.gz", "lane.bam"]
    )
    result = env.run("S1")
    assert result.success, failure_text(result)

    raw_md = result.asset_materializations_for_node("raw_sequences")[0].metadata
    assert raw_md["records"].value == 122
    assert raw_md["record_counts"].value == {
        "run1_R1.fastq.gz": 60,
        "run1_R2.fastq.gz": 60,
        "lane.bam": 2,
    }
    assert "fastq" in raw_md["formats"].value and "bam" in raw_md["formats"].value
    assert "| run1_R1.fastq.gz | fastq |" in raw_md["files"].value

    md = result.asset_materializations_for_node("sequence_shards")[0].metadata
    assert md["dagster/row_count"].value == 122
    assert md["records_read"].value == 122
    assert md["dropped_too_short"].value == 0
    assert md["Mbases_per_s"].value > 0
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"shard_row_count": True, "shard_unique_ids": True, "shard_schema": True}

    ids = {
        row["sequence_id"]
        for batch in iter_shard_batches(env.store, TENANT, "S1")
        for row in batch.to_pylist()
    }
    assert {"frag0/1", "frag0/2", "b1/1", "b1/2"} <= ids
    assert (Path(env.storage) / run_manifest("sequence_shards", TENANT, "S1")).exists()


def test_rematerialising_gives_identical_bytes(env):
    good_sample(env, "S2")
    first = env.run("S2", config={"rows_per_part": 15})
    assert first.success, failure_text(first)
    before = env.storage_bytes()
    second = env.run("S2", config={"rows_per_part": 15})
    assert second.success
    assert env.storage_bytes() == before
    md = second.asset_materializations_for_node("sequence_shards")[0].metadata
    assert md["taxonomy_unmatched_ids"].value == 1
    assert md["taxonomy_unmatched_examples"].value == ["x"]
    assert md["rows_without_taxonomy"].value == 10
    assert md["parts"].value == 3


def test_sequence_shards_reads_raw_only(env):
    good_sample(env, "S3")
    assert env.run("S3").success
    # the lab cleans its landing area; shards rebuild from raw/ alone
    for path in sorted(env.folder("S3").iterdir()):
        path.unlink()
    result = materialize(
        [raw_sequences.to_source_asset(), sequence_shards, *ingest_checks],
        partition_key=f"{TENANT}/S3",
        instance=env.instance,
        resources=env.resources,
        run_config={"ops": {"sequence_shards": {"config": {"min_length": 140}}}},
    )
    assert result.success
    manifest = read_shard_manifest(env.store, TENANT, "S3")
    assert manifest["config"]["min_length"] == 140
    assert manifest["rows"] == manifest["records_read"] - manifest["dropped"]["too_short"]


def _truncated_gzip(folder: Path) -> tuple[list, str]:
    data = gzip.compress(fastq_text(random_reads(3000, seed=3, length=(150, 150))), mtime=0)
    (folder / "run1_R1.fastq.gz").write_bytes(data[: len(data) // 2])
    return ["run1_R1.fastq.gz"], "run1_R1.fastq.gz line "


def _qual_mismatch(folder: Path) -> tuple[list, str]:
    reads = random_reads(30, seed=4, length=(150, 150))
    reads[9] = Read(reads[9].name, reads[9].seq, reads[9].qual[:100])
    (folder / "reads.fq").write_bytes(fastq_text(reads))
    return ["reads.fq"], "reads.fq line 40: record 10: quality has 100 characters"


def _garbage(folder: Path) -> tuple[list, str]:
    (folder / "x.fasta").write_bytes(bytes(range(256)) * 16)
    return ["x.fasta"], "x.fasta line 1: binary data"


def _empty_file(folder: Path) -> tuple[list, str]:
    (folder / "e.fastq").write_bytes(b"")
    return ["e.fastq"], "field files[0].path: file 'e.fastq' is empty"


def _empty_gzip(folder: Path) -> tuple[list, str]:
    (folder / "e.fastq.gz").write_bytes(gzip.compress(b"", mtime=0))
    return ["e.fastq.gz"], "e.fastq.gz: contains no sequence records"


def _cram_without_reference(folder: Path) -> tuple[list, str]:
    ref_dir = folder.parent.parent.parent / "refs"
    ref_seq = write_reference(ref_dir / "ref.fa")
    write_aligned_cram(folder / "run1.cram", ref_dir / "ref.fa", ref_seq, 12)
    for leftover in ref_dir.iterdir():
        leftover.unlink()
    return ["run1.cram"], "run1.cram record 1: cannot decode the CRAM without its reference"


def _bad_taxonomy(folder: Path) -> tuple[list, str]:
    (folder / "r.fasta").write_bytes(fasta_text(random_reads(5, quality=False)))
    (folder / "taxonomy.tsv").write_bytes(b"Feature ID\tTaxon\nread0\tk__A\nread1 k__B\n")
    return ["r.fasta"], "taxonomy.tsv line 3: expected 'Feature ID<TAB>Taxon' (no tab found)"


BAD_DROPS = {
    "truncated_gzip": _truncated_gzip,
    "quality_length_mismatch": _qual_mismatch,
    "binary_garbage": _garbage,
    "empty_file": _empty_file,
    "empty_gzip": _empty_gzip,
    "cram_without_reference": _cram_without_reference,
    "malformed_taxonomy": _bad_taxonomy,
}


@pytest.mark.parametrize("case", sorted(BAD_DROPS))
def test_bad_drop_fails_clearly_and_damages_nothing(env, case):
    # An earlier good run of the same sample, and a good sample beside it.
    good_sample(env, "S9")
    good_sample(env, "NEIGHBOUR")
    assert env.run("S9").success
    before = env.storage_bytes()

    folder = env.folder("S9")
    for path in folder.iterdir():
        path.unlink()
    files, expected = BAD_DROPS[case](folder)
    taxonomy = "taxonomy.tsv" if (folder / "taxonomy.tsv").exists() else None
    write_drop(env.landing, TENANT, "S9", listed=files, taxonomy=taxonomy)

    result = env.run("S9")
    assert not result.success
    assert expected in failure_text(result)
    assert env.storage_bytes() == before  # raw manifest, blobs and shards of the good run

    neighbour = env.run("NEIGHBOUR")
    assert neighbour.success, failure_text(neighbour)
    assert read_shard_manifest(env.store, TENANT, "NEIGHBOUR")["rows"] == 40


def test_file_changed_after_listing_is_refused(env):
    good_sample(env, "S5")
    assert env.run("S5").success
    before = env.storage_bytes()
    (env.folder("S5") / "ref.fasta").write_bytes(fasta_text(random_reads(41, seed=11)))
    result = env.run("S5")
    assert not result.success
    text = failure_text(result)
    assert "ref.fasta: sha256 is " in text and "sample.json lists" in text
    assert env.storage_bytes() == before


def test_cram_with_its_reference_materialises(env):
    folder = env.folder("C1")
    ref_seq = write_reference(folder / "ref.fa")
    (folder / "ref.fa.fai").unlink()
    write_aligned_cram(folder / "run1.cram", folder / "ref.fa", ref_seq, 30)
    write_drop(env.landing, TENANT, "C1", listed=[{"path": "run1.cram", "reference": "ref.fa"}])
    result = env.run("C1")
    assert result.success, failure_text(result)
    assert read_shard_manifest(env.store, TENANT, "C1")["rows"] == 30


def test_shards_config_validation():
    config = ShardsConfig(min_length=10, rows_per_part=5).to_core()
    assert (config.min_length, config.rows_per_part, config.compression) == (10, 5, "zstd")


def test_unique_id_check_catches_a_duplicate(env, tmp_path):
    good_sample(env, "D1")
    assert env.run("D1").success
    assert duplicate_sequence_ids(env.store, TENANT, "D1") == (0, [])
    # Tamper: a second part holding the same rows under another version name.
    folder = Path(env.storage) / shard_dir(TENANT, "D1")
    manifest = read_shard_manifest(env.store, TENANT, "D1")
    part = manifest["files"][0]
    copy = dict(part, path=part["path"].replace("-00000", "-00099"))
    (folder / copy["path"]).write_bytes((folder / part["path"]).read_bytes())
    manifest["files"].append(copy)
    (folder / "_manifest.json").write_text(json.dumps(manifest))
    count, examples = duplicate_sequence_ids(env.store, TENANT, "D1")
    assert count == 40 and len(examples) == 5


def test_gcs_storage(tmp_path, gcs_bucket):
    env = Env(tmp_path, storage=f"gs://{gcs_bucket}/bioscan")
    good_sample(env, "G1")
    result = env.run("G1", config={"rows_per_part": 25})
    assert result.success, failure_text(result)
    store = env.store
    assert store.exists(raw_manifest(TENANT, "G1"))
    manifest = read_shard_manifest(store, TENANT, "G1")
    assert len(manifest["files"]) == 2 and manifest["rows"] == 40
    names = {rel.rsplit("/", 1)[-1] for rel in store.list_files(shard_dir(TENANT, "G1"))}
    assert names == {"_manifest.json", *(f["path"] for f in manifest["files"])}
    rows = [r for b in iter_shard_batches(store, TENANT, "G1") for r in b.to_pylist()]
    assert len(rows) == 40 and rows[0]["taxonomy"] == "k__Bacteria; p__Firmicutes"
    assert os.environ["STORAGE_EMULATOR_HOST"]
