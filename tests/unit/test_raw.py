"""Content-addressed raw copies: verification while copying, immutability, the raw manifest."""

from __future__ import annotations

import hashlib
import json

import pytest

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest.raw import copy_drop, read_raw_manifest
from bioscan_assets.core.ingest.validation import validate_drop
from bioscan_assets.core.layout import raw_blob, raw_manifest
from bioscan_assets.core.storage import Store
from tests.helpers import taxonomy_text, write_drop
from tests.ingest_data import (
    fasta_text,
    fastq_text,
    random_reads,
    write_aligned_cram,
    write_reference,
)

TENANT = "acme-lab"


def setup(tmp_path, sample="S1", **files):
    folder = tmp_path / "landing" / TENANT / sample
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name.replace("__", ".")).write_bytes(data)
    return folder, Store(str(tmp_path / "landing")), Store(str(tmp_path / "storage"))


def test_copy_verifies_counts_and_writes_manifest_last(tmp_path):
    fa = fasta_text(random_reads(7, quality=False))
    fq = fastq_text(random_reads(11, seed=2))
    folder, landing, store = setup(tmp_path, a__fasta=fa, b__fq=fq)
    (folder / "taxonomy.tsv").write_bytes(taxonomy_text([("read0", "k__Bacteria")]))
    listed = ["a.fasta", "b.fq"]
    write_drop(landing, TENANT, "S1", listed=listed, taxonomy="taxonomy.tsv", extra={"note": "x"})
    raw_json = landing.read_bytes(f"{TENANT}/S1/sample.json")
    drop = validate_drop(landing, TENANT, "S1", manifest=raw_json)
    manifest = copy_drop(landing, store, drop, raw_json)
    assert [(f["path"], f["records"], f["format"]) for f in manifest["files"]] == [
        ("a.fasta", 7, "fasta"),
        ("b.fq", 11, "fastq"),
    ]
    for entry, data in zip(manifest["files"], [fa, fq], strict=True):
        sha = hashlib.sha256(data).hexdigest()
        assert entry["sha256"] == sha and entry["size"] == len(data)
        assert entry["blob"] == raw_blob(sha)
        assert (tmp_path / "storage" / entry["blob"]).read_bytes() == data
    assert manifest["taxonomy"]["rows"] == 1
    assert manifest["sample_json"].encode() == raw_json
    assert read_raw_manifest(store, TENANT, "S1") == manifest
    stored = json.loads((tmp_path / "storage" / raw_manifest(TENANT, "S1")).read_text())
    assert stored == manifest
    assert not list((tmp_path / "storage" / "raw" / "sha256" / ".staging").iterdir())


def test_existing_blobs_are_not_rewritten(tmp_path):
    fa = fasta_text(random_reads(3, quality=False))
    _folder, landing, store = setup(tmp_path, a__fasta=fa)
    write_drop(landing, TENANT, "S1", listed=["a.fasta"])
    raw_json = landing.read_bytes(f"{TENANT}/S1/sample.json")
    drop = validate_drop(landing, TENANT, "S1", manifest=raw_json)
    first = copy_drop(landing, store, drop, raw_json)
    blob = tmp_path / "storage" / first["files"][0]["blob"]
    stat = blob.stat()
    again = copy_drop(landing, store, drop, raw_json)
    assert again == first
    assert blob.stat().st_ino == stat.st_ino and blob.stat().st_mtime_ns == stat.st_mtime_ns


def test_changed_file_is_refused_and_nothing_published(tmp_path):
    folder, landing, store = setup(tmp_path, a__fasta=fasta_text(random_reads(3, quality=False)))
    write_drop(landing, TENANT, "S1", listed=["a.fasta"])
    raw_json = landing.read_bytes(f"{TENANT}/S1/sample.json")
    drop = validate_drop(landing, TENANT, "S1", manifest=raw_json)
    (folder / "a.fasta").write_bytes(fasta_text(random_reads(4, quality=False)))
    with pytest.raises(DropError) as err:
        copy_drop(landing, store, drop, raw_json)
    assert err.value.location == "a.fasta"
    assert "sha256" in err.value.reason and "sample.json lists" in err.value.reason
    assert not (tmp_path / "storage" / raw_manifest(TENANT, "S1")).exists()
    blobs = [p for p in (tmp_path / "storage" / "raw" / "sha256").rglob("*") if p.is_file()]
    assert blobs == []


def test_malformed_taxonomy_fails_at_copy_time(tmp_path):
    folder, landing, store = setup(tmp_path, a__fasta=fasta_text(random_reads(3, quality=False)))
    (folder / "taxonomy.tsv").write_bytes(b"Feature ID\tTaxon\nread0\tk__A; c__B\n")
    write_drop(landing, TENANT, "S1", listed=["a.fasta"], taxonomy="taxonomy.tsv")
    raw_json = landing.read_bytes(f"{TENANT}/S1/sample.json")
    drop = validate_drop(landing, TENANT, "S1", manifest=raw_json)
    with pytest.raises(DropError) as err:
        copy_drop(landing, store, drop, raw_json)
    assert err.value.location == "taxonomy.tsv line 2 field Taxon"


def test_cram_reference_is_copied_and_used(tmp_path):
    folder, landing, store = setup(tmp_path)
    ref_seq = write_reference(folder / "ref.fa")
    (folder / "ref.fa.fai").unlink()
    write_aligned_cram(folder / "a.cram", folder / "ref.fa", ref_seq, 25)
    write_drop(landing, TENANT, "S1", listed=[{"path": "a.cram", "reference": "ref.fa"}])
    raw_json = landing.read_bytes(f"{TENANT}/S1/sample.json")
    drop = validate_drop(landing, TENANT, "S1", manifest=raw_json)
    manifest = copy_drop(landing, store, drop, raw_json)
    assert manifest["files"][0]["records"] == 25
    assert manifest["files"][0]["reference"] == "ref.fa"
    assert [r["path"] for r in manifest["references"]] == ["ref.fa"]
    # the blob folder holds blobs only: no .fai written next to the reference
    ref_blob = tmp_path / "storage" / manifest["references"][0]["blob"]
    assert sorted(p.name for p in ref_blob.parent.iterdir()) == [ref_blob.name]
