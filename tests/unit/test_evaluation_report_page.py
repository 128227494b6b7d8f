"""The evaluation report as a reader gets it: the summary rendered (not raw Markdown), and the
newest report at a stable path under `<storage>/reports/evaluation/`."""

from __future__ import annotations

import re

import pytest

from bioscan_assets.core.evaluation.report import publish_latest, write_report
from bioscan_assets.core.layout import evaluation_report_dir
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS
from tests.unit.test_metrics import _evaluation


def _summary_section(page: str) -> str:
    start = page.index("<h2>Summary</h2><div class='summary'>")
    return page[start : page.index("</div>", start)]


def test_summary_is_rendered_html_not_markdown(tmp_path):
    store = Store(str(tmp_path))
    evaluation = _evaluation()
    evaluation["notes"].append("a <script>alert(1)</script> in a note stays text")
    paths = write_report(store, "r", evaluation)
    page = store.read_bytes(paths["html"]).decode()
    section = _summary_section(page)
    assert "<pre>" not in section and "|---|" not in section and "| genus |" not in section
    # the table: a header cell per column, one row per rank
    assert "<table>" in section and "<th>rank</th>" in section
    assert all(f"<td>{rank}</td>" in section for rank in RANKS)
    genus_row = re.search(r"<tr>\s*<td>genus</td>(.*?)</tr>", section, re.S).group(1)
    assert "<td>50.0</td>" in genus_row and "<td>100.0</td>" in genus_row
    # the not-pretrained warning is a quoted, bold paragraph; notes are a list
    assert re.search(r"<blockquote>\s*<p><strong>The base model <code>tiny</code>", section)
    assert re.search(r"<li>\s*(<p>)?a note", section)
    assert "<script>" not in page and "&lt;script&gt;" in section
    # the Markdown file itself is unchanged Markdown
    assert "| genus |" in store.read_bytes(paths["summary"]).decode()


def test_latest_report_is_a_copy_of_the_newest_run(tmp_path):
    store = Store(str(tmp_path))
    root = evaluation_report_dir("acme-lab")
    assert root == "reports/evaluation/tenant=acme-lab"
    first = write_report(store, f"{root}/run-1", _evaluation())
    latest = publish_latest(store, first)
    assert latest == {
        "metrics": f"{root}/latest/metrics.json",
        "summary": f"{root}/latest/summary.md",
        "html": f"{root}/latest/report.html",
    }
    newer = _evaluation()
    newer["title"] = "second run"
    second = write_report(store, f"{root}/run-2", newer)
    assert publish_latest(store, second) == latest
    for key in latest:
        assert store.read_bytes(latest[key]) == store.read_bytes(second[key])
    assert b"second run" in store.read_bytes(latest["html"])
    assert b"second run" not in store.read_bytes(first["html"])  # each run keeps its own


def test_report_folder_names_a_valid_tenant_only():
    assert evaluation_report_dir("") == "reports/evaluation/_global"
    for bad in ("../x", "Acme", "a/b"):
        with pytest.raises(ValueError):
            evaluation_report_dir(bad)
