"""Hub ids and published presets through the real huggingface_hub resolution code.

No network here: HF_HOME points at a temp dir laid out as huggingface_hub's cache (blobs named
by their Hub hash, snapshot symlinks, refs/main), with HF_HUB_OFFLINE=1; the online path is
exercised with only the two Hub API calls (`model_info`, `list_repo_tree`) answered locally and
every other request sent to a closed port.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.hf_api import ModelInfo, RepoFile

from bioscan_assets.core.model import hub, presets
from bioscan_assets.core.model.checkpoint import CheckpointError, load_checkpoint
from bioscan_assets.core.model.hub import HubRef, HubUnavailable
from bioscan_assets.core.model.presets import Published, load_model
from bioscan_assets.core.storage import Store
from tests.checkpoint_helpers import hub_listing, populate_hub_cache, random_esm, save_layout

REPO = "acme-lab/tiny-nt"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Sharded PyTorch .bin, as the published NT-2.5B is on the Hub's main branch."""
    return save_layout(random_esm(seed=3), tmp_path_factory.mktemp("hub") / "ckpt", "sharded-bin")


@pytest.fixture(scope="module")
def local_hash(checkpoint) -> str:
    return load_checkpoint(str(checkpoint)).weights_hash


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_model.cache_clear()
    yield home
    load_model.cache_clear()


@pytest.fixture
def cached(hf_home, checkpoint) -> Path:
    return populate_hub_cache(hf_home / "hub", REPO, checkpoint, COMMIT)


def test_parse_ref() -> None:
    assert hub.parse_ref("org/name") == HubRef("org/name", "main")
    assert hub.parse_ref("org/name@refs/pr/8") == HubRef("org/name", "refs/pr/8")
    assert hub.parse_ref(f"org/na.me-2@{COMMIT}") == HubRef("org/na.me-2", COMMIT)
    for spec in ("name", "gs://b/p", "a/b/c", "/abs/path", "org/name@"):
        assert hub.parse_ref(spec) is None


def test_hub_id_loads_from_the_cache_offline(cached, local_hash) -> None:
    model = load_model(REPO)
    assert model.weights_hash == local_hash and model.pretrained
    assert model.source == f"{REPO}@{COMMIT}"
    assert model.model_id == f"tiny-nt-{local_hash[:8]}"
    provenance = model.provenance()
    assert provenance["hub_commit"] == COMMIT and provenance["hub_revision"] == "main"
    assert provenance["hub_repo_id"] == REPO
    pinned = load_checkpoint(f"{REPO}@{COMMIT}")
    assert pinned.weights_hash == local_hash and pinned.origin["revision"] == COMMIT


def test_not_cached_and_offline_says_how_to_get_a_local_copy(hf_home) -> None:
    with pytest.raises(HubUnavailable) as error:
        load_checkpoint(REPO)
    message = str(error.value)
    assert f"{REPO}@main is not in the local Hugging Face cache ({hf_home / 'hub'})" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert f"bioscan model pull {REPO} --to DIR" in message and "BIOSCAN_MODEL=DIR" in message


def test_a_published_preset_offline_fails_with_directions(hf_home) -> None:
    with pytest.raises(HubUnavailable) as error:
        load_model("nt-2.5b-multi-species")
    message = str(error.value)
    assert "InstaDeepAI/nucleotide-transformer-2.5b-multi-species@main is not in" in message
    assert "Preset 'nt-2.5b-multi-species' is that checkpoint" in message
    assert "bioscan model pull nt-2.5b-multi-species --to DIR" in message
    assert "set BIOSCAN_MODEL=DIR" in message


def test_a_published_preset_is_its_hub_checkpoint(cached, local_hash, monkeypatch) -> None:
    config = load_checkpoint(str(cached)).config
    monkeypatch.setitem(presets.PUBLISHED, "nt-test", Published(REPO, config))
    model = load_model("nt-test")
    assert model.model_id == "nt-test" and model.pretrained is True
    assert model.weights_hash == local_hash and model.origin["commit"] == COMMIT
    wider = replace(config, hidden_size=128, num_heads=4)
    monkeypatch.setitem(presets.PUBLISHED, "nt-wrong", Published(REPO, wider))
    with pytest.raises(CheckpointError, match=r"config\.json gives .* not the .* of nt-wrong"):
        load_model("nt-wrong")


def test_random_shapes_are_named_as_such() -> None:
    assert presets.PRESETS["random-nt-2.5b"] == presets.PUBLISHED["nt-2.5b-multi-species"].config
    assert presets.PRESETS["random-nt-500m"] == presets.PUBLISHED["nt-500m-human-ref"].config
    assert set(presets.RANDOM) == {"random-nt-2.5b", "random-nt-500m", "demo", "tiny"}
    assert not set(presets.RANDOM) & set(presets.PUBLISHED)
    assert all(p.repo_id.startswith("InstaDeepAI/") for p in presets.PUBLISHED.values())


def test_pull_verifies_and_copies_a_loadable_directory(cached, local_hash, tmp_path) -> None:
    report = hub.pull(HubRef(REPO), str(tmp_path / "copy"))
    files = report["files"]
    assert report["commit"] == COMMIT
    assert {files[n]["verified"] for n in files if n.endswith(".bin")} == {"sha256"}
    assert files["config.json"]["verified"] == "git-sha1"
    copied = {p.name for p in (tmp_path / "copy").iterdir()}
    assert copied == set(files) | {hub.SOURCE_FILE}
    model = load_model(str(tmp_path / "copy"))
    assert model.weights_hash == local_hash and model.source == str(tmp_path / "copy")
    assert model.provenance()["hub_commit"] == COMMIT  # remembered by the copy


def test_pull_refuses_a_corrupted_cache_and_writes_nothing(cached, tmp_path) -> None:
    shard = cached / "pytorch_model-00002-of-00003.bin"
    blob = shard.resolve()
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        hub.pull(HubRef(REPO), str(tmp_path / "copy"))
    assert "pytorch_model-00002-of-00003.bin: sha256" in str(error.value)
    assert "Nothing was copied" in str(error.value)
    assert not (tmp_path / "copy").exists()


def test_pull_to_a_gcs_mirror(cached, local_hash, gcs_bucket) -> None:
    url = f"gs://{gcs_bucket}/models/tiny-nt"
    hub.pull(HubRef(REPO), url)
    assert Store(url).exists("config.json")
    model = load_checkpoint(url)
    assert model.weights_hash == local_hash and model.origin["commit"] == COMMIT


@pytest.fixture
def online(cached, checkpoint, monkeypatch):
    """The Hub API answered from `checkpoint`'s files; any other request hits a closed port."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    listing = [
        *hub_listing(checkpoint),
        {"rfilename": "tf_model.h5", "size": 10, "blobId": "0" * 40},  # never downloaded
        {"rfilename": "model.safetensors.README", "size": 1, "blobId": "1" * 40},
    ]
    calls = []

    def repo_info(self, repo_id, *, revision=None, **_):
        calls.append(("repo_info", repo_id, revision))
        return ModelInfo(id=repo_id, sha=COMMIT)

    def model_info(self, repo_id, *, revision=None, files_metadata=False, **_):
        calls.append(("model_info", repo_id, revision))
        return ModelInfo(id=repo_id, sha=COMMIT, siblings=listing)

    def list_repo_tree(self, repo_id, *, revision=None, recursive=False, **_):
        calls.append(("list_repo_tree", repo_id, revision))
        for entry in listing:
            lfs = entry.get("lfs")
            yield RepoFile(
                path=entry["rfilename"],
                size=entry["size"],
                oid=entry["blobId"],
                lfs={"oid": lfs["sha256"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
                if lfs
                else None,
            )

    monkeypatch.setattr(HfApi, "repo_info", repo_info)
    monkeypatch.setattr(HfApi, "model_info", model_info)
    monkeypatch.setattr(HfApi, "list_repo_tree", list_repo_tree)
    return listing, calls


def test_online_resolution_records_the_commit_and_fetches_one_layout(online, local_hash) -> None:
    _listing, calls = online
    model = load_checkpoint(REPO)
    assert model.weights_hash == local_hash and model.source == f"{REPO}@{COMMIT}"
    assert calls[:2] == [("repo_info", REPO, "main"), ("model_info", REPO, COMMIT)]
    assert ("list_repo_tree", REPO, COMMIT) in calls  # the snapshot is taken at the commit


def test_online_resolution_is_remembered_for_offline_use(online, local_hash, monkeypatch) -> None:
    refs = Path(hub.cache_dir()) / f"models--{REPO.replace('/', '--')}" / "refs"
    (refs / "main").unlink()  # as if this cache had only ever seen the commit
    load_checkpoint(REPO)
    assert (refs / "main").read_text() == COMMIT
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_checkpoint(REPO).weights_hash == local_hash


def test_online_pull_checks_the_hashes_the_hub_publishes(online, tmp_path) -> None:
    listing, _calls = online
    report = hub.pull(HubRef(REPO), str(tmp_path / "ok"))
    assert "tf_model.h5" not in report["files"]
    shard = next(e for e in listing if e["rfilename"] == "pytorch_model-00001-of-00003.bin")
    shard["lfs"]["sha256"] = "f" * 64
    with pytest.raises(CheckpointError, match=r"00001-of-00003\.bin: sha256 .* published f{64}"):
        hub.pull(HubRef(REPO), str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def test_pull_record_lists_every_file(cached, tmp_path) -> None:
    hub.pull(HubRef(REPO), str(tmp_path / "copy"))
    record = json.loads((tmp_path / "copy" / hub.SOURCE_FILE).read_text())
    assert record["repo_id"] == REPO and record["commit"] == COMMIT
    assert set(record["files"]) == {"config.json", "vocab.txt", "pytorch_model.bin.index.json"} | {
        f"pytorch_model-0000{i}-of-00003.bin" for i in (1, 2, 3)
    }
