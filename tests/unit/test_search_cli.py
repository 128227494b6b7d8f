"""`bioscan search` and the search API on a real index built with the tiny model (real JAX)."""

from __future__ import annotations

import itertools
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from bioscan_assets.cli import main
from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
from bioscan_assets.core.index import search as api
from bioscan_assets.core.index.upsert import upsert_partition
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store
from tests.helpers import random_dna, run
from tests.index_helpers import GENERA, make_shards


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> dict:
    """Tenant acme: REF (labelled) and FIELD (shares ids r0..r3 with REF); tenant other: OTH."""
    tmp = tmp_path_factory.mktemp("search")
    store = Store(str(tmp / "storage"))
    executor = EmbeddingExecutor(load_model("tiny"), Accelerator.discover(), token_budget=2048)
    rng = np.random.default_rng(3)
    ref = {f"r{i}": random_dna(rng, 90) for i in range(16)}
    genus = {name: list(GENERA)[i % 4] for i, name in enumerate(ref)}
    field = {f"r{i}": random_dna(rng, 90) for i in range(4)}
    drops = [
        ("acme", "REF", ref, {k: GENERA[g] for k, g in genus.items()}),
        ("acme", "FIELD", field, None),
        ("other", "OTH", ref, {k: GENERA[g] for k, g in genus.items()}),  # same reads as REF
    ]
    for tenant, sample, seqs, taxonomy in drops:
        make_shards(tmp, store, tenant, sample, seqs, taxonomy)
        embed_partition(store, tenant, sample, executor)
        upsert_partition(store, tenant, sample, "tiny")
    return {"root": store.root, "store": store, "ref": ref, "genus": genus, "tmp": tmp}


def _run(capsys, index, *args: str) -> tuple[int, str, str]:
    code = main(["search", "--storage", index["root"], "--model", "tiny", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_in_a_real_subprocess() -> None:
    exe = Path(sys.executable).parent / "bioscan"
    command = [str(exe)] if exe.exists() else [shutil.which("bioscan") or "bioscan"]
    done = run([*command, "search", "--help"], timeout=120)
    assert done.returncode == 0, done.stderr
    for text in ("--tenant", "--sequence-id", "--fasta", "--rank", "examples:", "exit status"):
        assert text in done.stdout


def test_query_by_sequence_finds_itself_first(capsys, index) -> None:
    seq = index["ref"]["r5"]
    code, out, err = _run(
        capsys, index, "--tenant", "acme", "--sequence", seq, "--k", "3", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    hits = doc["queries"][0]["hits"]
    assert doc["model_id"] == "tiny" and len(hits) == 3
    assert (hits[0]["sample_id"], hits[0]["sequence_id"]) == ("REF", "r5")
    assert hits[0]["distance"] == pytest.approx(0.0, abs=1e-4)
    assert hits[0]["ranks"]["genus"] == index["genus"]["r5"]
    assert seq not in doc["queries"][0]["query"]  # never echo raw DNA


def test_lower_case_rna_query_is_normalised(capsys, index) -> None:
    rna = index["ref"]["r2"].lower().replace("t", "u")
    code, out, _ = _run(capsys, index, "--tenant", "acme", "--sequence", rna, "--k", "1", "--json")
    assert code == 0
    assert json.loads(out)["queries"][0]["hits"][0]["sequence_id"] == "r2"


def test_query_by_id_table_output_with_assignment(capsys, index) -> None:
    code, out, _ = _run(
        capsys, index, "--tenant", "acme", "--sequence-id", "r6", "--sample", "REF", "--assign"
    )
    assert code == 0
    assert "query: sequence id r6 (REF)" in out
    assert "taxonomy call" in out and "kingdom" in out
    lines = [line for line in out.splitlines() if line.strip().startswith(("1 ", "2 "))]
    assert lines and all(" r6 " not in line for line in lines)  # the query itself is left out
    assert index["ref"]["r6"] not in out


def test_ambiguous_id_needs_its_sample(capsys, index) -> None:
    code, _, err = _run(capsys, index, "--tenant", "acme", "--sequence-id", "r1")
    assert code == 1 and "several samples" in err and "FIELD" in err and "REF" in err
    code, out, _ = _run(
        capsys,
        index,
        "--tenant",
        "acme",
        "--sequence-id",
        "r1",
        "--query-sample",
        "FIELD",
        "--sample",
        "REF",
        "--json",
    )
    assert code == 0
    hits = json.loads(out)["queries"][0]["hits"]
    assert hits and {h["sample_id"] for h in hits} == {"REF"}


def test_rank_and_sample_filters(capsys, index) -> None:
    code, out, _ = _run(
        capsys,
        index,
        "--tenant",
        "acme",
        "--sequence-id",
        "r0",
        "--sample",
        "REF",
        "--rank",
        "genus=Listeria",
        "--k",
        "10",
        "--json",
    )
    assert code == 0
    hits = json.loads(out)["queries"][0]["hits"]
    want = {n for n, g in index["genus"].items() if g == "Listeria"}
    assert {h["sequence_id"] for h in hits} == want
    assert all(h["ranks"]["genus"] == "Listeria" for h in hits)
    code, _, err = _run(
        capsys, index, "--tenant", "acme", "--sequence-id", "r0", "--rank", "genre=X"
    )
    assert code == 1 and "unknown rank" in err


def test_fasta_queries(capsys, index, tmp_path) -> None:
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">first\n{index['ref']['r3']}\n>second\n{index['ref']['r9']}\n")
    code, out, _ = _run(
        capsys, index, "--tenant", "acme", "--fasta", str(fasta), "--k", "2", "--json"
    )
    assert code == 0
    queries = json.loads(out)["queries"]
    assert [q["query"] for q in queries] == ["first", "second"]
    assert [q["hits"][0]["sequence_id"] for q in queries] == ["r3", "r9"]
    code, _, err = _run(capsys, index, "--tenant", "acme", "--fasta", str(tmp_path / "missing.fa"))
    assert code == 1 and "no such file" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nobody", "--sequence-id", "r1"], "unknown tenant 'nobody'"),
        (["--tenant", "../acme", "--sequence-id", "r1"], "not a valid tenant name"),
        (["--tenant", "acme", "--sequence", "NNNN-RYK"], "no valid bases"),
        (["--tenant", "acme", "--sequence-id", "nope", "--sample", "REF"], "not in the index"),
        (["--tenant", "acme", "--sequence-id", "r1", "--k", "0"], "--k must be"),
    ],
)
def test_errors_are_one_clear_line(capsys, index, args, message) -> None:
    code, out, err = _run(capsys, index, *args)
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1 and err.startswith("bioscan search: error:")


def test_missing_table_names_the_models_that_exist(capsys, index) -> None:
    code = main(
        [
            "search",
            "--storage",
            index["root"],
            "--model",
            "demo",
            "--tenant",
            "acme",
            "--sequence-id",
            "r1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "no index for model 'demo'" in err and "models indexed for this tenant: tiny" in err
    assert "dagster asset materialize" in err and "--select vector_index" in err


def test_usage_errors_exit_2(capsys, index) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search", "--tenant", "acme"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["search", "--tenant", "acme", "--sequence", "ACGT", "--sequence-id", "x"])


def test_api_tenant_isolation(index) -> None:
    store = index["store"]
    # OTH holds the very same reads and vectors as REF, in tenant "other"
    hits = api.search(store, "acme", "tiny", sequence=index["ref"]["r4"], k=50)
    assert {h.sample_id for h in hits} == {"REF", "FIELD"}
    hits = api.search(store, "other", "tiny", sequence_id="r4", k=50)
    assert {h.sample_id for h in hits} == {"OTH"}
    with pytest.raises(api.InvalidTenantError):
        api.search(store, "../other", "tiny", sequence_id="r4")
    with pytest.raises(api.InvalidTenantError):
        api.search(store, "acme/../other", "tiny", sequence_id="r4")


def test_api_exact_and_ann_agree_and_validate(index) -> None:
    store = index["store"]
    ann = api.search(store, "acme", "tiny", sequence_id="r7", sample_id="REF", k=5)
    exact = api.search(store, "acme", "tiny", sequence_id="r7", sample_id="REF", k=5, exact=True)
    assert [h.sequence_id for h in ann] == [h.sequence_id for h in exact]
    assert all(a.distance <= b.distance + 1e-6 for a, b in itertools.pairwise(ann))
    with pytest.raises(api.SearchError, match="exactly one"):
        api.search(store, "acme", "tiny", sequence="ACGT", sequence_id="r1")
    with pytest.raises(api.SearchError, match="unknown rank"):
        api.search(store, "acme", "tiny", sequence_id="r1", filters={"genre": "x"})
    with pytest.raises(api.SearchError, match="dimensions"):
        api.search(store, "acme", "tiny", vector=np.ones(3, np.float32))
    with pytest.raises(api.MissingTableError) as missing:
        api.search(store, "acme", "nt-2.5b-multi-species", sequence_id="r1")
    assert missing.value.models == ["tiny"]
