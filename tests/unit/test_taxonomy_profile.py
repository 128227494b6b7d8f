"""Profiles count every read (duplicates too) and keep the unassigned share at every rank."""

from __future__ import annotations

import numpy as np
import pytest

from bioscan_assets.core.calls.calls import CallCache, call_table
from bioscan_assets.core.calls.plots import stacked_barplot
from bioscan_assets.core.calls.profile import (
    profile_from_calls,
    rank_rows,
    rank_shares,
    top_taxa_markdown,
)

A = ("Bacteria", "Firmicutes", "Bacilli", "Bacillales", "Bacillaceae", "Bacillus", None)
B = ("Bacteria", "Firmicutes", None, None, None, None, None)


class _Fixed:
    """A classifier that answers from a table (sequence -> lineage)."""

    method = "fixed"

    def __init__(self, answers):
        self.answers = answers

    def predict(self, sequences):
        class _P:
            pass

        p = _P()
        p.labels = [self.answers.get(s, (None,) * 7) for s in sequences]
        p.confidence = np.ones((len(sequences), 7))
        p.reversed = np.zeros(len(sequences), bool)
        return p

    def describe(self):
        return {"method": self.method}


def test_profile_counts_every_read_and_sums_to_one_per_rank():
    cache = CallCache(_Fixed({"AAA": A, "CCC": B}))
    table = call_table(["r1", "r2", "r3", "r4"], ["AAA", "AAA", "CCC", "GGG"], cache)
    assert cache.classified == 3  # the duplicate is classified once ...
    profile = profile_from_calls(table.to_batches())
    genus = {r["taxon"]: r for r in rank_rows(profile, "genus")}
    assert genus["Bacillus"]["reads"] == 2  # ... and counted twice
    unassigned = [r for r in rank_rows(profile, "genus") if r["taxon"] == "Unassigned"]
    assert sorted(r["lineage"] for r in unassigned) == ["Unassigned", "k__Bacteria; p__Firmicutes"]
    for rank in ("kingdom", "phylum", "genus", "species"):
        rows = rank_rows(profile, rank)
        assert sum(r["reads"] for r in rows) == 4
        assert sum(r["fraction"] for r in rows) == pytest.approx(1.0)
        # the barplot's bar: unassigned under different parents is one segment, and it fills up
        shares = rank_shares(rows)
        assert sum(shares.values()) == pytest.approx(1.0)
        assert list(shares).count("Unassigned") <= 1
    assert rank_shares(rank_rows(profile, "genus"))["Unassigned"] == pytest.approx(0.5)
    md = top_taxa_markdown(profile, "genus")
    assert "| Bacillus |" in md and "50.0" in md


def test_barplot_is_a_png():
    png = stacked_barplot({"S1": {"Bacillus": 0.5, "Unassigned": 0.5}}, title="genus")
    assert png is None or png.startswith(b"\x89PNG")
