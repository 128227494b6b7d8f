"""`bioscan novelty` and the report section, on a committed result written by the store module."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bioscan_assets.cli import main
from bioscan_assets.core.novelty.report import SECTION_TITLE, markdown_table, novelty_section
from bioscan_assets.core.novelty.store import CLUSTER_SCHEMA, MEMBER_SCHEMA, write_novelty
from bioscan_assets.core.storage import Store

PNG = b"\x89PNG\r\n\x1a\nnot really"


def _cluster(cluster_id: str, reads: int, agreed: str | None) -> dict:
    return {
        "cluster_id": cluster_id,
        "reads": reads,
        "distinct_sequences": max(1, reads - 1),
        "samples": ["FIELD-1", "FIELD-2"],
        "dates": ["2026-11-01T10:00:00Z"],
        "first_seen": "2026-11-01T10:00:00Z",
        "last_seen": "2026-11-01T10:00:00Z",
        "medoid_sample_id": "FIELD-1",
        "medoid_sequence_id": f"read-{cluster_id}/1",
        "nearest_reference": "acme-lab/REF/7000004",
        "nearest_taxon": "k__Bacteria; p__Firmicutes; c__Bacilli; g__Anoxybacillus",
        "nearest_distance": 0.44,
        "median_distance": 0.5,
        "agreed_rank": agreed,
        "agreed_taxon": "k__Bacteria; p__Firmicutes" if agreed else "Unassigned",
        "map_x": 0.1,
        "map_y": -0.2,
    }


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "storage"))
    clusters = pa.Table.from_pylist(
        [_cluster("N0002", 9, "phylum"), _cluster("N0001", 3, None)], schema=CLUSTER_SCHEMA
    )
    write_novelty(
        store,
        "acme-lab",
        version="abc123",
        clusters=clusters,
        members=MEMBER_SCHEMA.empty_table(),
        map_png=PNG,
        info={
            "counts": {"candidate_rows": 20, "clustered_rows": 12},
            "representation": {"representation": "kmer", "k": 8, "reason": "demo model"},
            "threshold": {"value": 0.287, "quantile": 0.8},
            "settings": {"rank": "genus"},
        },
    )
    return store


def test_table_lists_clusters_largest_first(store, capsys):
    assert main(["novelty", "--tenant", "acme-lab", "--storage", store.root]) == 0
    out = capsys.readouterr().out
    assert "2 clusters from 12 of 20 reads abstaining at genus" in out
    assert "canonical 8-mer profiles (demo model)" in out
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["cluster", "reads", "seqs"]
    assert lines[2].startswith("N0002") and lines[3].startswith("N0001")
    assert "phylum Firmicutes" in lines[2] and " Anoxybacillus " in lines[2]
    assert "__" not in out


def test_min_reads_tsv_and_json(store, capsys):
    assert main(["novelty", "--tenant", "acme-lab", "--storage", store.root, "--min-reads", "5",
                 "--format", "tsv"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[:3] == ["cluster_id", "reads", "distinct_sequences"]
    assert len(lines) == 2 and lines[1].split("\t")[:2] == ["N0002", "9"]
    assert "FIELD-1,FIELD-2" in lines[1]
    assert (
        main(["novelty", "--tenant", "acme-lab", "--storage", store.root, "--format", "json"]) == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert [c["cluster_id"] for c in doc["clusters"]] == ["N0002", "N0001"]
    assert doc["threshold"]["value"] == 0.287 and doc["tenant"] == "acme-lab"


def test_errors_and_help(store, capsys):
    assert main(["novelty", "--tenant", "other-lab", "--storage", store.root]) == 1
    assert "materialise novelty_clusters for tenant other-lab" in capsys.readouterr().err
    assert main(["novelty", "--tenant", "../acme", "--storage", store.root]) == 1
    assert "not a valid tenant name" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["novelty", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--min-reads 5 --format tsv" in out


def test_report_section_is_escaped_html_with_the_map_inline(store):
    title, html = novelty_section(store, "acme-lab")
    assert title == SECTION_TITLE
    assert "data:image/png;base64," in html
    assert html.index("N0002") < html.index("N0001")
    assert "<table>" in html and "&lt;" not in title
    missing_title, missing = novelty_section(store, "other-lab")
    assert missing_title == SECTION_TITLE and "No novelty result for tenant other-lab" in missing
    with pytest.raises(ValueError):
        novelty_section(store, "<b>x</b>")
    assert markdown_table([]) == "No novelty clusters."
