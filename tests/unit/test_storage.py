"""Store on a local directory and on GCS (the emulator, through gcsfs and the real client)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bioscan_assets.core.storage import Store
from tests.gcs_emulator import gcs_client


@pytest.fixture(params=["local", "gcs"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "root"))
    bucket = request.getfixturevalue("gcs_bucket")
    return Store(f"gs://{bucket}/root/prefix")


def test_write_read_and_metadata(store):
    store.write_bytes("a/b/c.txt", b"hello")
    assert store.exists("a/b/c.txt")
    assert not store.exists("a/b/missing.txt")
    assert store.read_bytes("a/b/c.txt") == b"hello"
    with store.open_read("a/b/c.txt") as handle:
        assert handle.read() == b"hello"
    assert store.size("a/b/c.txt") == 5
    assert store.sha256("a/b/c.txt") == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        5,
    )
    stat = store.stat("a/b/c.txt")
    assert (stat.rel, stat.size) == ("a/b/c.txt", 5)
    assert store.stat("a/b/nope.txt") is None


def test_overwrite_changes_fingerprint(store):
    store.write_bytes("x/sample.json", b"{}")
    first = store.stat("x/sample.json").fingerprint
    store.write_bytes("x/sample.json", b'{"a": 1}')
    assert store.read_bytes("x/sample.json") == b'{"a": 1}'
    assert store.stat("x/sample.json").fingerprint != first


def test_listing_is_sorted_and_respects_folder_boundaries(store):
    for rel in ["t/S1/a.fa", "t/S1/sub/b.fa", "t/S10/a.fa", "t/S2/a.fa", "u/x"]:
        store.write_bytes(rel, rel.encode())
    assert store.list_files("t/S1") == ["t/S1/a.fa", "t/S1/sub/b.fa"], "S10 is not under S1"
    assert store.list_files() == ["t/S1/a.fa", "t/S1/sub/b.fa", "t/S10/a.fa", "t/S2/a.fa", "u/x"]
    assert store.list_files("nothing/here") == []
    assert store.list_sizes("t/S10") == {"t/S10/a.fa": len(b"t/S10/a.fa")}
    assert [s.rel for s in store.list_stats("u")] == ["u/x"]


def test_find_named_only_at_the_given_depth(store):
    for rel in ["acme/S1/sample.json", "acme/S2/sample.json", "acme/S2/x.fa",
                "acme/S3/deeper/sample.json", "acme/sample.json", "sample.json",
                "beta/S9/sample.json.bak", "beta/S9/not-sample.json"]:  # fmt: skip
        store.write_bytes(rel, b"{}")
    found = store.find_named("sample.json", 2)
    assert [s.rel for s in found] == ["acme/S1/sample.json", "acme/S2/sample.json"]
    assert all(s.size == 2 and s.fingerprint for s in found)
    with pytest.raises(ValueError):
        store.find_named("a/b", 1)


def test_find_named_on_missing_root(tmp_path):
    assert Store(str(tmp_path / "absent")).find_named("sample.json", 2) == []


def test_put_file_and_local_copy(store, tmp_path):
    local = tmp_path / "part-0.parquet"
    local.write_bytes(b"PAR1" * 1000)
    store.put_file(local, "shards/tenant=t/sample=s/part-0.parquet")
    with store.local_copy("shards/tenant=t/sample=s/part-0.parquet") as copy:
        assert copy.read_bytes() == b"PAR1" * 1000
        assert copy.exists()
    assert store.size("shards/tenant=t/sample=s/part-0.parquet") == 4000


def test_delete_is_idempotent(store):
    store.write_bytes("q/r.json", b"1")
    store.delete("q/r.json")
    store.delete("q/r.json")
    assert not store.exists("q/r.json")


def test_child_and_url(store):
    child = store.child("quarantine/acme")
    child.write_bytes("S1.json", b"{}")
    assert store.exists("quarantine/acme/S1.json")
    assert child.url("S1.json") == store.url("quarantine/acme/S1.json")


@pytest.mark.parametrize("bad", ["../x", "a/../b", "a//b"])
def test_paths_cannot_escape_the_root(store, bad):
    with pytest.raises(ValueError, match="must be relative"):
        store.url(bad)


def test_local_write_is_atomic(tmp_path):
    store = Store(str(tmp_path))
    store.write_bytes("d/f.bin", b"old")

    with pytest.raises(TypeError):  # fails mid-write, after the temp file exists
        store.write_bytes("d/f.bin", 12345)  # type: ignore[arg-type]
    assert Path(tmp_path, "d/f.bin").read_bytes() == b"old", "a failed write leaves the old file"
    assert os.listdir(tmp_path / "d") == ["f.bin"], "no temp file left behind"


def test_local_put_file_is_atomic(tmp_path):
    store = Store(str(tmp_path / "root"))
    store.write_bytes("f.bin", b"old")
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "missing", "f.bin")
    assert store.read_bytes("f.bin") == b"old"
    assert sorted(os.listdir(tmp_path / "root")) == ["f.bin"]


def test_local_path_only_for_local_roots(tmp_path):
    assert Store(str(tmp_path)).local_path("a") == tmp_path / "a"
    assert Store("gs://bucket/prefix").local_path("a") is None
    assert Store("gs://bucket/prefix/").url("a/b") == "gs://bucket/prefix/a/b"


@pytest.mark.integration
def test_gcs_store_and_real_client_see_the_same_objects(gcs_bucket):
    store = Store(f"gs://{gcs_bucket}/landing")
    client = gcs_client()
    client.bucket(gcs_bucket).blob("landing/acme/S1/sample.json").upload_from_string(b'{"a":1}')
    assert store.read_bytes("acme/S1/sample.json") == b'{"a":1}'
    assert [s.rel for s in store.find_named("sample.json", 2)] == ["acme/S1/sample.json"]

    store.write_bytes("acme/S2/sample.json", b'{"b":2}')
    blob = client.bucket(gcs_bucket).get_blob("landing/acme/S2/sample.json")
    assert blob.download_as_bytes() == b'{"b":2}'
    listed = {s.rel: s.fingerprint for s in store.find_named("sample.json", 2)}
    assert store.stat("acme/S2/sample.json").fingerprint == listed["acme/S2/sample.json"]

    # A new object appears to the same Store at once: no stale listing cache between ticks.
    client.bucket(gcs_bucket).blob("landing/acme/S3/sample.json").upload_from_string(b"{}")
    assert len(store.find_named("sample.json", 2)) == 3
    assert store.exists("acme/S3/sample.json")


@pytest.mark.integration
def test_gcs_bucket_root_without_prefix(gcs_bucket):
    store = Store(f"gs://{gcs_bucket}")
    store.write_bytes("t/S1/sample.json", b"{}")
    store.write_bytes("t/S1/a.fa", b">a\nA\n")
    assert [s.rel for s in store.find_named("sample.json", 2)] == ["t/S1/sample.json"]
    assert store.list_files() == ["t/S1/a.fa", "t/S1/sample.json"]
