"""`bioscan` as a new user meets it: --version, a bare `bioscan` prints help, every command's
--help has examples, the parser loads without Dagster or JAX, and `bioscan outputs` says where
the reports and profiles written by the real writers are."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from bioscan_assets.cli import build_parser, main
from bioscan_assets.core.calls.cohort_report import CohortReport, write_cohort_report
from bioscan_assets.core.calls.profile import PROFILE_SCHEMA, write_profile
from bioscan_assets.core.evaluation.report import publish_latest, write_report
from bioscan_assets.core.governance.outputs import published_outputs
from bioscan_assets.core.layout import evaluation_report_dir
from bioscan_assets.core.storage import Store
from tests.unit.test_metrics import _evaluation


def _commands() -> dict:
    (action,) = [a for a in build_parser()._actions if a.dest == "command"]
    return action.choices


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"bioscan {version('bioscan')}"


def test_bare_bioscan_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bioscan")
    assert all(f"    {name}" in out for name in _commands())


def test_every_command_help_has_examples():
    commands = _commands()
    assert {"search", "submit", "follow", "costs", "profile", "outputs"} <= set(commands)
    for name, parser in commands.items():
        assert "example" in parser.format_help(), f"bioscan {name} --help has no example"


def test_parser_loads_without_heavy_libraries():
    code = (
        "import sys; from bioscan_assets.cli import build_parser; build_parser(); "
        "print([m for m in ('dagster', 'jax', 'lancedb', 'wandb', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _published(store: Store) -> None:
    root = evaluation_report_dir("acme-lab")
    publish_latest(store, write_report(store, f"{root}/run-1", _evaluation()))
    report = CohortReport("acme-lab", "genus", "<html></html>", table_tsv="x\n")
    write_cohort_report(store, report, "run-1")
    for sample_id in ("S2", "S1"):
        write_profile(store, "acme-lab", sample_id, PROFILE_SCHEMA.empty_table())
    write_profile(store, "reef-survey", "REEF-07", PROFILE_SCHEMA.empty_table())


def test_outputs_lists_latest_reports_and_profiles(tmp_path, capsys):
    store = Store(str(tmp_path))
    assert published_outputs(store) == []
    _published(store)
    found = [(o.kind, o.tenant, o.sample_id, o.path) for o in published_outputs(store)]
    assert found == [
        (
            "evaluation report",
            "acme-lab",
            "",
            "reports/evaluation/tenant=acme-lab/latest/report.html",
        ),
        ("cohort report", "acme-lab", "", "reports/cohort/tenant=acme-lab/latest/index.html"),
        ("profile", "acme-lab", "S1", "profiles/tenant=acme-lab/sample=S1/profile.tsv"),
        ("profile", "acme-lab", "S2", "profiles/tenant=acme-lab/sample=S2/profile.tsv"),
        (
            "profile",
            "reef-survey",
            "REEF-07",
            "profiles/tenant=reef-survey/sample=REEF-07/profile.tsv",
        ),
    ]
    assert all(store.exists(path) for *_, path in found)
    assert [o.sample_id for o in published_outputs(store, "reef-survey")] == ["REEF-07"]

    assert main(["outputs", "--storage", store.root]) == 0
    text = capsys.readouterr().out
    assert re.search(rf"evaluation report acme-lab +{re.escape(store.url(found[0][3]))}\n", text)
    assert "profile reef-survey/REEF-07" in text
    assert main(["outputs", "--storage", store.root, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["url"] == store.url("reports/cohort/tenant=acme-lab/latest/index.html")


def test_outputs_refuses_a_bad_tenant(tmp_path, capsys):
    assert main(["outputs", "--storage", str(tmp_path), "--tenant", "../etc"]) == 2
    assert "not a valid tenant" in capsys.readouterr().err
