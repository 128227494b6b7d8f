"""A sample's taxonomic profile: per rank, each taxon's reads and fraction of all reads.

Every row of the calls counts (duplicates included, as abundance), and so does every read
not called at a rank: those are "Unassigned" there, kept apart by the deepest lineage they
did get (a read called down to Firmicutes is "Unassigned" at genus within
`k__Bacteria; p__Firmicutes`), so the fractions of a rank always sum to 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bioscan_assets.core.calls.calls import qiime_taxon
from bioscan_assets.core.layout import profile_dir
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS

UNASSIGNED = "Unassigned"
PROFILE_SCHEMA = pa.schema(
    [
        pa.field("rank", pa.string(), nullable=False),
        pa.field("taxon", pa.string(), nullable=False),
        pa.field("lineage", pa.string(), nullable=False),
        pa.field("reads", pa.int64(), nullable=False),
        pa.field("fraction", pa.float64(), nullable=False),
    ]
)


def count_lineages(batches: Iterable[pa.RecordBatch]) -> tuple[Counter, int]:
    """(Counter of called lineages, reads) over the calls' rank columns."""
    counts: Counter = Counter()
    reads = 0
    for batch in batches:
        columns = [batch.column(rank).to_pylist() for rank in RANKS]
        counts.update(zip(*columns, strict=True))
        reads += batch.num_rows
    return counts, reads


def profile_table(counts: Counter, reads: int) -> pa.Table:
    """Rows ordered by rank, then reads (most first), then lineage."""
    rows: list[tuple[str, str, str, int]] = []
    for r, rank in enumerate(RANKS):
        at_rank: Counter = Counter()
        for lineage, n in counts.items():
            called = lineage[: r + 1]
            label = called[-1]
            taxon = label if label is not None else UNASSIGNED
            at_rank[(taxon, qiime_taxon(called))] += n
        ordered = sorted(at_rank.items(), key=lambda item: (-item[1], item[0][1], item[0][0]))
        rows += [(rank, taxon, lineage, n) for (taxon, lineage), n in ordered]
    return pa.Table.from_pydict(
        {
            "rank": [r[0] for r in rows],
            "taxon": [r[1] for r in rows],
            "lineage": [r[2] for r in rows],
            "reads": [r[3] for r in rows],
            "fraction": [r[3] / reads if reads else 0.0 for r in rows],
        },
        schema=PROFILE_SCHEMA,
    )


def profile_from_calls(batches: Iterable[pa.RecordBatch]) -> pa.Table:
    counts, reads = count_lineages(batches)
    return profile_table(counts, reads)


def rank_rows(profile: pa.Table, rank: str) -> list[dict[str, Any]]:
    return [row for row in profile.to_pylist() if row["rank"] == rank]


def rank_shares(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Fraction of reads per taxon name among one rank's `rank_rows`; reads unassigned under
    different parents pooled (a rank's shares sum to 1, as a stacked bar must)."""
    shares: dict[str, float] = {}
    for row in rows:
        shares[row["taxon"]] = shares.get(row["taxon"], 0.0) + row["fraction"]
    return shares


def top_taxa_markdown(profile: pa.Table, rank: str = "genus", top: int = 10) -> str:
    """The `top` taxa at `rank` as a Markdown table (the rest summed into one line)."""
    rows = rank_rows(profile, rank)
    lines = [f"| {rank} | lineage | reads | % |", "|---|---|---:|---:|"]
    for row in rows[:top]:
        lines.append(
            f"| {row['taxon']} | {row['lineage']} | {row['reads']} | {100 * row['fraction']:.1f} |"
        )
    rest = rows[top:]
    if rest:
        reads = sum(r["reads"] for r in rest)
        share = sum(r["fraction"] for r in rest)
        lines.append(f"| ({len(rest)} more) | | {reads} | {100 * share:.1f} |")
    return "\n".join(lines) + "\n"


def profile_tsv(profile: pa.Table) -> str:
    lines = ["rank\ttaxon\tlineage\treads\tfraction"]
    for row in profile.to_pylist():
        lines.append(
            f"{row['rank']}\t{row['taxon']}\t{row['lineage']}\t{row['reads']}\t{row['fraction']:.6f}"
        )
    return "\n".join(lines) + "\n"


def write_profile(store: Store, tenant: str, sample_id: str, profile: pa.Table) -> dict[str, str]:
    """`profile.parquet` and `profile.tsv` in the sample's profile folder; returns their paths."""
    folder = profile_dir(tenant, sample_id)
    sink = pa.BufferOutputStream()
    pq.write_table(profile, sink, compression="zstd")
    paths = {"parquet": f"{folder}/profile.parquet", "tsv": f"{folder}/profile.tsv"}
    store.write_bytes(paths["parquet"], sink.getvalue().to_pybytes())
    store.write_bytes(paths["tsv"], profile_tsv(profile).encode())
    return paths
