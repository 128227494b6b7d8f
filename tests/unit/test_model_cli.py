"""`bioscan model pull|convert|inspect`: help with examples, JSON output, errors as exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bioscan_assets.cli import main
from bioscan_assets.commands.model import _size
from bioscan_assets.core.model.checkpoint import load_checkpoint
from bioscan_assets.core.model.presets import load_model
from tests.checkpoint_helpers import populate_hub_cache, random_esm, save_layout
from tests.helpers import command_env, python, run
from tests.unit.test_nt_model import TINY_HASH

REPO, COMMIT = "acme-lab/tiny-nt", "89abcdef0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def sharded_bin(tmp_path_factory) -> Path:
    return save_layout(random_esm(seed=5), tmp_path_factory.mktemp("cli") / "bin", "sharded-bin")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_shows_examples(capsys) -> None:
    for argv in (["model"], ["model", "pull"], ["model", "convert"], ["model", "inspect"]):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "example" in text and "bioscan model" in text
    with pytest.raises(SystemExit):
        main(["model", "--help"])
    text = capsys.readouterr().out
    for expected in ("pull nt-2.5b-multi-species --to", "convert", "inspect", "HF_HUB_OFFLINE"):
        assert expected in text


def test_shard_sizes() -> None:
    assert _size("2GB") == 2 * 10**9 and _size("4GiB") == 4 << 30
    assert _size("500MB") == 5 * 10**8 and _size("123") == 123 and _size("1.5 kb") == 1500


def test_inspect_a_random_preset(capsys) -> None:
    code, out, _ = _run(capsys, "model", "inspect", "tiny", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["weights_hash"] == TINY_HASH and doc["pretrained"] is False
    assert doc["layers"] == 2 and doc["hidden_size"] == 64 and doc["preset"] == "tiny"


def test_convert_then_inspect_keeps_the_weights_hash(capsys, sharded_bin, tmp_path) -> None:
    dest = tmp_path / "st"
    code, out, err = _run(
        capsys, "model", "convert", str(sharded_bin), str(dest), "--shard-size", "200KB",
        "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["from"]["format"] == "bin" and len(report["to"]["files"]) > 1
    code, out, _ = _run(capsys, "model", "inspect", str(dest), "--format", "json")
    doc = json.loads(out)
    assert doc["weights_hash"] == load_checkpoint(str(sharded_bin)).weights_hash
    assert doc["layout"]["format"] == "safetensors" and doc["stored_dtypes"] == ["float32"]
    assert doc["layers"] == 3 and doc["parameters"] == doc["stored_parameters"]
    assert "hub" not in doc and doc["preset"] is None and doc["same_shape_as"] == []
    code, out, _ = _run(capsys, "model", "inspect", str(dest))
    assert code == 0 and "weights hash     " + doc["weights_hash"] in out


def test_errors_exit_1_with_the_reason(capsys, sharded_bin, tmp_path) -> None:
    code, _, err = _run(capsys, "model", "inspect", str(tmp_path / "nope"))
    assert code == 1 and "bioscan model: error:" in err and "not found" in err
    code, _, err = _run(capsys, "model", "convert", str(sharded_bin), str(sharded_bin))
    assert code == 1 and "already holds a checkpoint" in err
    code, _, err = _run(capsys, "model", "pull", "not-a-model", "--to", str(tmp_path / "x"))
    assert code == 1 and "neither a published preset" in err


def test_pull_from_the_cache_offline(capsys, sharded_bin, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    populate_hub_cache(tmp_path / "hf" / "hub", REPO, sharded_bin, COMMIT)
    dest = tmp_path / "copy"
    code, out, err = _run(capsys, "model", "pull", REPO, "--to", str(dest), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["commit"] == COMMIT
    assert load_model(str(dest)).weights_hash == load_checkpoint(str(sharded_bin)).weights_hash
    code, out, _ = _run(capsys, "model", "pull", REPO, "--to", str(tmp_path / "again"))
    assert code == 0 and f"at commit {COMMIT}" in out and "BIOSCAN_MODEL=" in out


def test_hub_environment_is_honoured_by_a_fresh_process(sharded_bin, tmp_path) -> None:
    """HF_HOME and HF_HUB_OFFLINE set before anything is imported, as in a deployment."""
    populate_hub_cache(tmp_path / "hf" / "hub", REPO, sharded_bin, COMMIT)
    env = command_env(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    command = python("-m", "bioscan_assets.cli", "model", "inspect", REPO, "--format", "json")
    done = run(command, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["hub"]["commit"] == COMMIT and doc["source"] == f"{REPO}@{COMMIT}"
    assert doc["weights_hash"] == load_checkpoint(str(sharded_bin)).weights_hash
