"""The lab-drop contract, rule by rule: each error names the file and the field or line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest.validation import (
    check_drop,
    parse_sample_json,
    relative_path_problem,
    validate_drop,
)
from bioscan_assets.core.storage import Store
from tests.helpers import fasta_bytes, sha256_hex, write_drop, write_manifest_json

LOC = "acme-lab/S001/sample.json"
SHA = "a" * 64


def manifest(**changes) -> dict:
    doc = {
        "tenant": "acme-lab",
        "sample_id": "S001",
        "collected_at": "2026-11-01T10:00:00Z",
        "latitude": 10.5,
        "longitude": -45.2,
        "depth_m": 500.0,
        "files": [{"path": "run1_R1.fastq.gz", "sha256": SHA}],
        "taxonomy": "taxonomy.tsv",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def parse(doc) -> object:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_sample_json(raw, location=LOC)


def parse_error(doc) -> DropError:
    with pytest.raises(DropError) as info:
        parse(doc)
    err = info.value
    assert str(err).startswith(LOC), "every error names the manifest file"
    return err


# --- parse_sample_json -------------------------------------------------------------------


def test_valid_manifest_keeps_extra_keys_as_metadata_and_hashes_raw_bytes():
    raw = json.dumps(manifest(run_center="Kiel", files=[
        {"path": "a.fa", "sha256": SHA.upper()},
        {"path": "reads/b.fq.gz", "sha256": "b" * 64},
        {"path": "c.bam", "sha256": "c" * 64},
        {"path": "d.cram", "sha256": "d" * 64, "reference": {"path": "ref.fa", "sha256": "e" * 64}},
    ])).encode()  # fmt: skip
    drop = parse_sample_json(raw, location=LOC)
    assert (drop.tenant, drop.sample_id, drop.partition_key) == (
        "acme-lab",
        "S001",
        "acme-lab/S001",
    )
    assert [f.format for f in drop.files] == ["fasta", "fastq", "bam", "cram"]
    assert drop.files[0].sha256 == SHA, "sha256 is normalised to lower case"
    assert (drop.files[3].reference, drop.files[3].reference_sha256) == ("ref.fa", "e" * 64)
    assert drop.taxonomy == "taxonomy.tsv"
    assert drop.metadata["run_center"] == "Kiel"
    assert drop.metadata["collected_at"] == "2026-11-01T10:00:00Z"
    assert not {"tenant", "sample_id", "files", "taxonomy"} & set(drop.metadata)
    assert (drop.latitude, drop.longitude, drop.depth_m) == (10.5, -45.2, 500.0)
    assert drop.manifest_sha256 == sha256_hex(raw)


def test_malformed_json_names_line_and_column():
    raw = b'{\n  "tenant": "acme-lab",\n  "sample_id": "S001"\n  "files": []\n}'
    err = parse_error(raw)
    assert err.location == f"{LOC} line 4 column 3"
    assert "malformed JSON" in err.reason


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"", LOC),
        (b"\xff\xfe{}", f"{LOC} byte 0"),
        (b"[1, 2]", LOC),
        (b'{"tenant": "a", "tenant": "b"}', f"{LOC} field tenant"),
        (b'{"tenant": NaN}', LOC),
    ],
    ids=["empty", "not-utf8", "not-object", "duplicate-key", "nan"],
)
def test_unreadable_manifests(raw, where):
    assert parse_error(raw).location == where


@pytest.mark.parametrize("missing", ["tenant", "sample_id", "files"])
def test_missing_required_field(missing):
    err = parse_error(manifest(**{missing: ...}))
    assert err.location == f"{LOC} field {missing}"
    assert "missing" in err.reason


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"tenant": 7}, "tenant", "must be a string, got number"),
        ({"files": "a.fa"}, "files", "must be an array"),
        ({"files": []}, "files", "no sequence files"),
        ({"files": ["a.fa"]}, "files[0]", "must be an object"),
        ({"files": [{"path": "a.fa"}]}, "files[0].sha256", "missing"),
        ({"files": [{"path": "a.fa", "sha256": 5}]}, "files[0].sha256", "must be a string"),
        ({"files": [{"path": "a.fa", "sha256": "xyz"}]}, "files[0].sha256", "not a sha256"),
        ({"files": [{"sha256": SHA}]}, "files[0].path", "missing"),
        ({"files": [{"path": "a.fa", "sha256": SHA, "md5": "x"}]}, "files[0].md5", "unknown key"),
        (
            {"files": [{"path": "a.fa", "sha256": SHA}, {"path": "a.fa", "sha256": SHA}]},
            "files[1].path",
            "already listed as files[0]",
        ),
        ({"taxonomy": 3}, "taxonomy", "must be a string path"),
        ({"taxonomy": "run1_R1.fastq.gz"}, "taxonomy", "also listed"),
        ({"latitude": "north"}, "latitude", "must be a number"),
        ({"latitude": 91}, "latitude", "outside"),
        ({"longitude": True}, "longitude", "must be a number"),
        ({"collected_at": 20261101}, "collected_at", "ISO 8601"),
    ],
)
def test_field_types(changes, field, text):
    err = parse_error(manifest(**changes))
    assert err.location == f"{LOC} field {field}"
    assert text in err.reason


@pytest.mark.parametrize(
    "tenant", ["Acme", "-acme", "acme_lab", "acme lab", "a" * 64, "", "acme/lab", "é"]
)
def test_invalid_tenant(tenant):
    err = parse_error(manifest(tenant=tenant))
    assert err.location == f"{LOC} field tenant"
    assert "does not match" in err.reason


@pytest.mark.parametrize("sample_id", ["S..1", "..", ".S1", "S 1", "S/1", "", "S" * 129, "-S1"])
def test_invalid_sample_id(sample_id):
    err = parse_error(manifest(sample_id=sample_id))
    assert err.location == f"{LOC} field sample_id"


@pytest.mark.parametrize("sample_id", ["S001", "s.1_rep-2", "A" * 128, "2026.11.01"])
def test_valid_sample_ids(sample_id):
    assert parse(manifest(sample_id=sample_id)).sample_id == sample_id


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("../other/S002/a.fa", "'..'"),
        ("reads/../../x.fa", "'..'"),
        ("/etc/passwd.fa", "absolute"),
        ("C:/data/a.fa", "absolute"),
        ("reads\\a.fa", "backslash"),
        ("./a.fa", "'.'"),
        ("reads//a.fa", "empty"),
        ("a\n.fa", "control"),
        ("sample.json", "manifest itself"),
    ],
)
def test_paths_must_stay_inside_the_folder(path, text):
    err = parse_error(manifest(files=[{"path": path, "sha256": SHA}]))
    assert err.location == f"{LOC} field files[0].path"
    assert text in err.reason


def test_taxonomy_path_is_checked_too():
    err = parse_error(manifest(taxonomy="../taxonomy.tsv"))
    assert err.location == f"{LOC} field taxonomy"


@pytest.mark.parametrize("path", ["reads.txt", "reads.fasta.zip", "reads.sam", "reads"])
def test_unsupported_extension_names_file_and_field(path):
    err = parse_error(
        manifest(files=[{"path": "ok.fa", "sha256": SHA}, {"path": path, "sha256": SHA}])
    )
    assert err.location == f"{LOC} field files[1].path"
    assert path in err.reason and "unsupported" in err.reason


@pytest.mark.parametrize(
    ("entry", "field", "text"),
    [
        (
            {"path": "a.fa", "sha256": SHA, "reference": {"path": "r.fa", "sha256": SHA}},
            "files[0].reference",
            "only CRAM",
        ),
        ({"path": "a.cram", "sha256": SHA, "reference": "r.fa"}, "files[0].reference", "object"),
        (
            {"path": "a.cram", "sha256": SHA, "reference": {"path": "r.bam", "sha256": SHA}},
            "files[0].reference.path",
            "FASTA",
        ),
        (
            {"path": "a.cram", "sha256": SHA, "reference": {"path": "../r.fa", "sha256": SHA}},
            "files[0].reference.path",
            "'..'",
        ),
        (
            {"path": "a.cram", "sha256": SHA, "reference": {"path": "r.fa"}},
            "files[0].reference.sha256",
            "missing",
        ),
    ],
)
def test_cram_reference_rules(entry, field, text):
    err = parse_error(manifest(files=[entry]))
    assert err.location == f"{LOC} field {field}"
    assert text in err.reason


def test_relative_path_problem_accepts_subfolders():
    assert relative_path_problem("run1/lane2/reads.fq.gz") is None


def test_long_values_are_shortened_in_messages():
    err = parse_error(manifest(tenant="X" * 5000))
    assert len(str(err)) < 300


# --- validate_drop on a landing area ------------------------------------------------------


@pytest.fixture
def landing(tmp_path) -> Store:
    return Store(str(tmp_path / "landing"))


def test_valid_drop(landing):
    doc = write_drop(landing, n_files=2, extra={"taxonomy": "taxonomy.tsv"})
    landing.write_bytes("acme-lab/S001/taxonomy.tsv", b"Feature ID\tTaxon\nseq0\tk__Bacteria\n")
    drop, verified = check_drop(landing, "acme-lab", "S001")
    assert verified
    assert [f.path for f in drop.files] == [f["path"] for f in doc["files"]]
    assert drop.manifest_sha256 == sha256_hex(landing.read_bytes("acme-lab/S001/sample.json"))


def test_listed_but_missing_file(landing):
    write_drop(landing, n_files=2)
    landing.delete("acme-lab/S001/reads_1.fasta")
    with pytest.raises(DropError) as info:
        validate_drop(landing, "acme-lab", "S001")
    assert info.value.location == f"{LOC} field files[1].path"
    assert "'reads_1.fasta' is listed but missing" in info.value.reason


def test_missing_taxonomy_file(landing):
    write_drop(landing, extra={"taxonomy": "taxonomy.tsv"})
    with pytest.raises(DropError, match=r"field taxonomy: taxonomy file 'taxonomy.tsv' is listed"):
        validate_drop(landing, "acme-lab", "S001")


def test_sha256_mismatch_names_file_and_field(landing):
    write_drop(landing, n_files=2)
    landing.write_bytes("acme-lab/S001/reads_1.fasta", fasta_bytes(seed=99))
    with pytest.raises(DropError) as info:
        validate_drop(landing, "acme-lab", "S001")
    assert info.value.location == f"{LOC} field files[1].sha256"
    assert "'reads_1.fasta'" in info.value.reason
    assert sha256_hex(fasta_bytes(seed=99)) in info.value.reason


def test_checksums_can_be_deferred(landing):
    write_drop(landing)
    landing.write_bytes("acme-lab/S001/reads_0.fasta", fasta_bytes(seed=99))
    drop = validate_drop(landing, "acme-lab", "S001", verify_checksums=False)
    assert drop.sample_id == "S001"
    _, verified = check_drop(landing, "acme-lab", "S001", checksum_max_bytes=10)
    assert not verified, "files above the limit are checked for presence only"
    with pytest.raises(DropError, match="sha256"):
        check_drop(landing, "acme-lab", "S001", checksum_max_bytes=10_000)


def test_empty_file(landing):
    landing.write_bytes("acme-lab/S001/e.fa", b"")
    files = [{"path": "e.fa", "sha256": sha256_hex(b"")}]
    write_manifest_json(
        landing, "acme-lab", "S001", {"tenant": "acme-lab", "sample_id": "S001", "files": files}
    )
    with pytest.raises(DropError, match=r"field files\[0\]\.path: file 'e.fa' is empty"):
        validate_drop(landing, "acme-lab", "S001")


def test_symlink_leaving_the_folder(landing, tmp_path):
    write_drop(landing)
    secret = tmp_path / "elsewhere.fa"
    secret.write_bytes(fasta_bytes(seed=5))
    folder = landing.local_path("acme-lab/S001")
    os.symlink(secret, folder / "linked.fa")
    doc = json.loads(landing.read_bytes("acme-lab/S001/sample.json"))
    doc["files"].append({"path": "linked.fa", "sha256": sha256_hex(fasta_bytes(seed=5))})
    write_manifest_json(landing, "acme-lab", "S001", doc)
    with pytest.raises(DropError) as info:
        validate_drop(landing, "acme-lab", "S001")
    assert info.value.location == f"{LOC} field files[1].path"
    assert "symlink leading outside" in info.value.reason


def test_symlinked_subfolder_leaving_the_folder(landing, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "r.fa").write_bytes(fasta_bytes(seed=6))
    write_drop(landing)
    os.symlink(outside, landing.local_path("acme-lab/S001") / "sub")
    doc = json.loads(landing.read_bytes("acme-lab/S001/sample.json"))
    doc["files"] = [{"path": "sub/r.fa", "sha256": sha256_hex(fasta_bytes(seed=6))}]
    write_manifest_json(landing, "acme-lab", "S001", doc)
    with pytest.raises(
        DropError, match=r"files\[0\]\.path: file 'sub/r.fa' is a symlink leading outside"
    ):
        validate_drop(landing, "acme-lab", "S001")


def test_symlink_inside_the_folder_is_fine(landing):
    write_drop(landing)
    folder = landing.local_path("acme-lab/S001")
    os.symlink("reads_0.fasta", folder / "alias.fasta")
    doc = json.loads(landing.read_bytes("acme-lab/S001/sample.json"))
    doc["files"][0]["path"] = "alias.fasta"
    write_manifest_json(landing, "acme-lab", "S001", doc)
    assert validate_drop(landing, "acme-lab", "S001").files[0].path == "alias.fasta"


def test_sample_json_symlink_leaving_the_folder(landing, tmp_path):
    write_drop(landing)
    real = tmp_path / "sample.json"
    real.write_bytes(landing.read_bytes("acme-lab/S001/sample.json"))
    manifest_path = landing.local_path("acme-lab/S001/sample.json")
    manifest_path.unlink()
    os.symlink(real, manifest_path)
    with pytest.raises(DropError, match=r"manifest 'sample\.json' is a symlink leading outside"):
        validate_drop(landing, "acme-lab", "S001")


def test_manifest_must_match_its_folder(landing):
    write_drop(landing, "acme-lab", "S001", extra={"sample_id": "S002"})
    with pytest.raises(DropError) as info:
        validate_drop(landing, "acme-lab", "S001")
    assert info.value.location == f"{LOC} field sample_id"
    assert "does not match the sample folder 'S001'" in info.value.reason
    write_drop(landing, "other-lab", "S001", extra={"tenant": "acme-lab"})
    with pytest.raises(
        DropError, match="field tenant: 'acme-lab' does not match the tenant folder"
    ):
        validate_drop(landing, "other-lab", "S001")


@pytest.mark.parametrize(("tenant", "sample_id"), [("Acme", "S001"), ("acme", "S..1")])
def test_invalid_folder_names(landing, tenant, sample_id):
    with pytest.raises(DropError, match="folder name"):
        validate_drop(landing, tenant, sample_id)


def test_missing_manifest(landing):
    write_drop(landing, write_manifest=False)
    with pytest.raises(DropError) as info:
        validate_drop(landing, "acme-lab", "S001")
    assert (info.value.location, info.value.reason) == (LOC, "sample.json is missing")


def test_directory_listed_as_file(landing):
    write_drop(landing)
    Path(landing.local_path("acme-lab/S001/dir.fa")).mkdir()
    doc = json.loads(landing.read_bytes("acme-lab/S001/sample.json"))
    doc["files"].append({"path": "dir.fa", "sha256": SHA})
    write_manifest_json(landing, "acme-lab", "S001", doc)
    with pytest.raises(DropError, match="not a regular file"):
        validate_drop(landing, "acme-lab", "S001")


@pytest.mark.integration
def test_validate_drop_on_gcs(gcs_bucket):
    landing = Store(f"gs://{gcs_bucket}/landing")
    write_drop(landing, n_files=2)
    write_drop(landing, "acme-lab", "S0010")  # a sibling sharing the prefix "S001"
    assert validate_drop(landing, "acme-lab", "S001").sample_id == "S001"

    landing.write_bytes("acme-lab/S001/reads_1.fasta", fasta_bytes(seed=42))
    with pytest.raises(DropError) as info:
        validate_drop(landing, "acme-lab", "S001")
    assert info.value.location == f"{LOC} field files[1].sha256"

    landing.delete("acme-lab/S001/reads_1.fasta")
    with pytest.raises(
        DropError, match=r"files\[1\]\.path: file 'reads_1.fasta' is listed but missing"
    ):
        validate_drop(landing, "acme-lab", "S001")
