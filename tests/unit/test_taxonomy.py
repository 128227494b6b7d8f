"""taxonomy.tsv parsing (QIIME 2 format) and rank helpers."""

from __future__ import annotations

import pytest

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.taxonomy import (
    RANKS,
    format_taxon,
    parse_taxonomy,
    split_taxon,
    taxon_at_rank,
)


def test_parses_prefixed_plain_empty_and_extra_columns():
    text = (
        "Feature ID\tTaxon\tConfidence\n"
        "#q2:types\tcategorical\tnumeric\n"
        "a\tk__Bacteria; p__Firmicutes; c__Bacilli; o__; f__; g__; s__\t0.9\n"
        "b\tBacteria;Proteobacteria\t0.5\n"
        "\n"
        "c\t\t1\n"
        "d\td__Archaea; p__Euryarchaeota\n"
    )
    table = parse_taxonomy(text.encode(), name="taxonomy.tsv")
    assert table == {
        "a": "k__Bacteria; p__Firmicutes; c__Bacilli; o__; f__; g__; s__",
        "b": "Bacteria;Proteobacteria",
        "c": "",
        "d": "d__Archaea; p__Euryarchaeota",
    }
    assert split_taxon(table["a"]) == ("Bacteria", "Firmicutes", "Bacilli", None, None, None, None)
    assert split_taxon(table["b"])[:3] == ("Bacteria", "Proteobacteria", None)
    assert split_taxon(table["c"]) == (None,) * 7
    assert split_taxon(None) == (None,) * 7
    assert taxon_at_rank(table["a"], "class") == "Bacilli"
    assert len(RANKS) == 7 and RANKS[0] == "kingdom" and RANKS[-1] == "species"


def test_format_round_trips():
    text = format_taxon(["Bacteria", "Firmicutes", None, "Lactobacillales"])
    assert text == "k__Bacteria; p__Firmicutes; c__; o__Lactobacillales; f__; g__; s__"
    assert split_taxon(text)[:4] == ("Bacteria", "Firmicutes", None, "Lactobacillales")


@pytest.mark.parametrize(
    ("text", "location", "words"),
    [
        (b"", "taxonomy.tsv", "empty"),
        (b"id\ttaxon\na\tk__B\n", "taxonomy.tsv line 1", "header"),
        (b"Feature ID\tTaxon\na k__B\n", "taxonomy.tsv line 2", "no tab"),
        (
            b"Feature ID\tTaxon\na\tk__B\n\na\tk__C\n",
            "taxonomy.tsv line 4 field Feature ID",
            "line 2",
        ),
        (b"Feature ID\tTaxon\n\tk__B\n", "taxonomy.tsv line 2 field Feature ID", "empty"),
        (
            b"Feature ID\tTaxon\na\t" + b";".join([b"x"] * 8) + b"\n",
            "taxonomy.tsv line 2 field Taxon",
            "8",
        ),
        (b"Feature ID\tTaxon\na\tk__B; c__C\n", "taxonomy.tsv line 2 field Taxon", "'c__'"),
        (b"Feature ID\tTaxon\na\tk__B\n\xff\xfe\tx\n", "taxonomy.tsv line 3", "UTF-8"),
        (b"\x00\x01\x02garbage", "taxonomy.tsv line 1", "binary"),
        (b"# only a comment\n", "taxonomy.tsv", "no header"),
    ],
)
def test_malformed_files_name_the_line(text, location, words):
    with pytest.raises(DropError) as err:
        parse_taxonomy(text, name="taxonomy.tsv")
    assert err.value.location == location
    assert words in err.value.reason
