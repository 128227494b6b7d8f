"""`bioscan profile`: the profile taxonomic_profile wrote, as a table, TSV or JSON."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bioscan_assets.cli import main
from bioscan_assets.core.calls.profile import profile_table, write_profile
from bioscan_assets.core.storage import Store

BAC = ("Bacteria", "Firmicutes", "Bacilli", "Bacillales", "Bacillaceae", "Bacillus", None)
VIB = ("Bacteria", "Proteobacteria", "Gamma", "Vibrionales", "Vibrionaceae", "Vibrio", None)
HALF = ("Bacteria", "Firmicutes", None, None, None, None, None)


@pytest.fixture
def root(tmp_path) -> str:
    store = Store(str(tmp_path / "storage"))
    counts = Counter({BAC: 5, VIB: 3, HALF: 2})
    write_profile(store, "acme-lab", "S1", profile_table(counts, 10))
    return store.root


def _run(capsys, root, *args: str) -> tuple[int, str, str]:
    code = main(["profile", "--storage", root, "--tenant", "acme-lab", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_tsv_and_table(capsys, root):
    code, out, _ = _run(capsys, root, "--sample", "S1", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["sample_id"], doc["rank"], doc["reads"]) == ("S1", "genus", 10)
    taxa = {t["taxon"]: t for t in doc["taxa"]}
    assert taxa["Bacillus"]["reads"] == 5 and taxa["Vibrio"]["fraction"] == pytest.approx(0.3)
    assert taxa["Unassigned"]["lineage"] == "k__Bacteria; p__Firmicutes"
    code, out, _ = _run(capsys, root, "--sample", "S1", "--rank", "phylum", "--format", "tsv")
    lines = out.splitlines()
    assert lines[0] == "rank\ttaxon\tlineage\treads\tfraction"
    assert lines[1].startswith("phylum\tFirmicutes\tk__Bacteria; p__Firmicutes\t7\t0.7")
    assert len(lines) == 3
    code, out, _ = _run(capsys, root, "--sample", "S1", "--top", "1")
    assert code == 0
    assert "acme-lab/S1: 10 reads at rank genus, 3 taxa" in out
    assert "Bacillus" in out and "Vibrio" not in out and "(2 more)" in out


def test_missing_profile_says_what_to_materialise(capsys, root):
    code, _, err = _run(capsys, root, "--sample", "S9")
    assert code == 1
    assert "materialise taxonomic_profile" in err and "acme-lab/S9" in err
    assert "profiled samples of acme-lab: S1" in err
    code, _, err = _run(capsys, root, "--sample", "../S1")
    assert code == 1 and "not a valid sample id" in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as done:
        main(["profile", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for text in ("--tenant", "--sample", "--rank", "--format", "examples:", "exit status"):
        assert text in out
