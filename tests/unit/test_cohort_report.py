"""A tenant's cohort report: pictures first, sections others add, only the tenant's samples."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from bioscan_assets.core.calls.cohort_data import load_cohort, profiled_samples
from bioscan_assets.core.calls.cohort_report import (
    ReportSection,
    cohort_report,
    write_cohort_report,
)
from bioscan_assets.core.calls.profile import profile_table, write_profile
from bioscan_assets.core.layout import cohort_report_dir
from bioscan_assets.core.storage import Store
from tests.helpers import write_drop
from tests.pipeline_helpers import ingest

BAC = ("Bacteria", "Firmicutes", "Bacilli", "Bacillales", "Bacillaceae", "Bacillus", None)
VIB = ("Bacteria", "Proteobacteria", "Gamma", "Vibrionales", "Vibrionaceae", "Vibrio", None)
SECRET = ("Bacteria", "Secretes", "Hidden", "Order", "Family", "SecretGenus", None)
HALF = ("Bacteria", "Firmicutes", None, None, None, None, None)


def _sample(tmp, store, tenant, sample_id, lineages: Counter | None, **place):
    landing = tmp / "landing"
    write_drop(landing, tenant, sample_id, sequences={"r1": "ACGT" * 30}, extra=place)
    ingest(Store(str(landing)), store, tenant, sample_id)
    if lineages is not None:
        write_profile(store, tenant, sample_id, profile_table(lineages, sum(lineages.values())))


@pytest.fixture
def cohort(tmp_path):
    store = Store(str(tmp_path / "storage"))
    _sample(
        tmp_path,
        store,
        "lab",
        "S1",
        Counter({BAC: 6, VIB: 2, HALF: 2}),
        latitude=10.5,
        longitude=-45.2,
        depth_m=500.0,
        collected_at="2026-01-02T00:00:00Z",
        site="<script>alert(1)</script>",
    )
    _sample(
        tmp_path,
        store,
        "lab",
        "S2",
        Counter({VIB: 9, BAC: 1}),
        latitude=-18.3,
        longitude=147.7,
        depth_m=12.0,
        collected_at="2026-01-01T00:00:00Z",
    )
    _sample(
        tmp_path,
        store,
        "lab",
        "REF",
        Counter({BAC: 3, VIB: 3}),
        latitude=None,
        longitude=None,
        depth_m=None,
    )
    _sample(tmp_path, store, "lab", "LATE", None, latitude=1.0, longitude=2.0)
    _sample(tmp_path, store, "other", "X", Counter({SECRET: 5}), latitude=1.0, longitude=1.0)
    return store


def test_cohort_data_reads_only_the_tenants_samples(cohort):
    samples = load_cohort(cohort, "lab", ["S1", "S2", "REF", "LATE"], rank="genus")
    by_id = {s.sample_id: s for s in samples}
    assert [s.sample_id for s in samples][:2] == ["S2", "S1"]  # by collection time
    assert by_id["S1"].shares == pytest.approx({"Bacillus": 0.6, "Vibrio": 0.2, "Unassigned": 0.2})
    assert by_id["S1"].reads == 10 and by_id["S1"].placed
    assert by_id["S1"].number("depth_m") == 500.0
    assert not by_id["REF"].placed and not by_id["LATE"].has_profile
    assert profiled_samples(cohort, "lab") == ["REF", "S1", "S2"]
    with pytest.raises(ValueError):
        load_cohort(cohort, "../other", ["X"])
    with pytest.raises(ValueError):
        load_cohort(cohort, "lab", ["S1"], rank="strain")


def test_report_pictures_first_extra_sections_and_a_stable_latest(cohort):
    novelty = ReportSection("Novel clusters", "<p id='novelty'>3 clusters</p>")
    report, paths = cohort_report(
        cohort, "lab", ["S1", "S2", "REF", "LATE"], run_id="run-1", sections=[novelty]
    )
    html = report.html
    assert html.count("data:image/png;base64,") == 2
    order = [
        html.index("Composition at genus"),
        html.index("Where the samples were taken"),
        html.index("<h2>Novel clusters</h2><p id='novelty'>3 clusters</p>"),
        html.index("Top taxa per sample"),
        html.index("<h2>Samples</h2>"),
    ]
    assert order == sorted(order)
    assert re.search(r"without coordinates.*REF", html)
    assert "waiting for taxonomic_profile" in html and "LATE" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "SecretGenus" not in html and "other" not in html.split("<h2>")[0]
    root = cohort_report_dir("lab")
    assert paths["html"] == f"{root}/latest/index.html"
    assert cohort.read_bytes(paths["html"]) == cohort.read_bytes(f"{root}/run-1/index.html")
    assert cohort.read_bytes(f"{root}/latest/barplot.png").startswith(b"\x89PNG")
    assert cohort.read_bytes(f"{root}/latest/map.png").startswith(b"\x89PNG")
    tsv = cohort.read_bytes(paths["tsv"]).decode().splitlines()
    assert tsv[0] == "sample_id\ttaxon\tlineage\tfraction"
    assert "S2\tVibrio\t" in "\n".join(tsv)
    assert report.summary() == {"samples": 4, "profiled": 3, "placed": 3, "reads": 26, "taxa": 3}
    # a later report at another rank replaces latest/, the first run's folder stays
    again, _ = cohort_report(cohort, "lab", ["S1"], run_id="run-2", rank="phylum")
    assert "Composition at phylum" in cohort.read_bytes(paths["html"]).decode()
    assert cohort.exists(f"{root}/run-1/index.html")
    assert again.summary()["samples"] == 1


def test_report_run_ids_cannot_leave_the_tenants_folder(cohort):
    report, _ = cohort_report(cohort, "lab", ["S2"], run_id="ok")
    for bad in ("latest", "../x", "a/b", ""):
        with pytest.raises(ValueError):
            write_cohort_report(cohort, report, bad)
