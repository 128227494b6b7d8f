"""Each cluster as a row: reads, sequences, samples and dates, medoid, nearest reference, the
rank its members' calls agree down to; and its members as rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bioscan_assets.core.calls.calls import qiime_taxon
from bioscan_assets.core.calls.references import References
from bioscan_assets.core.novelty.clusters import agreed_rank, medoid
from bioscan_assets.core.novelty.inputs import Candidates
from bioscan_assets.core.novelty.spaces import Space
from bioscan_assets.core.novelty.store import CLUSTER_SCHEMA, MEMBER_SCHEMA


@dataclass
class Nearest:
    """Each candidate (distinct sequence)'s nearest reference and its distance."""

    index: np.ndarray
    distance: np.ndarray


def member_keys(candidates: Candidates, rows: Sequence[int]) -> set[str]:
    return {f"{candidates.sample_ids[r]}/{candidates.sequence_ids[r]}" for r in rows}


def rows_by_label(candidates: Candidates, labels: np.ndarray) -> dict[int, list[int]]:
    """Cluster label -> candidate rows (in row order), for the clustered distinct sequences."""
    out: dict[int, list[int]] = {}
    for row, distinct in enumerate(candidates.distinct_of_row):
        label = int(labels[distinct])
        if label >= 0:
            out.setdefault(label, []).append(row)
    return out


def describe_clusters(
    space: Space,
    candidates: Candidates,
    references: References,
    nearest: Nearest,
    rows: Mapping[int, list[int]],
    ids: Mapping[int, str],
    dates: Mapping[str, str | None],
    map_xy: Mapping[int, tuple[float, float]],
) -> tuple[pa.Table, pa.Table]:
    """(clusters, members) tables, clusters by reads (most first), then id."""
    reads = candidates.reads_per_distinct()
    distinct_of_row = np.asarray(candidates.distinct_of_row, dtype=np.int64)
    records, member_rows = [], []
    for label, cluster_rows in rows.items():
        distinct = np.unique(distinct_of_row[cluster_rows])
        centre = medoid(space, distinct, reads[distinct])
        medoid_row = min(r for r in cluster_rows if distinct_of_row[r] == centre)
        samples = sorted({candidates.sample_ids[r] for r in cluster_rows})
        seen = sorted({d for s in samples if (d := dates.get(s))})
        ref = int(nearest.index[centre])
        rank, labels = agreed_rank([candidates.calls[r] for r in cluster_rows])
        x, y = map_xy.get(centre, (None, None))
        records.append(
            {
                "cluster_id": ids[label],
                "reads": len(cluster_rows),
                "distinct_sequences": int(distinct.size),
                "samples": samples,
                "dates": seen,
                "first_seen": seen[0] if seen else None,
                "last_seen": seen[-1] if seen else None,
                "medoid_sample_id": candidates.sample_ids[medoid_row],
                "medoid_sequence_id": candidates.sequence_ids[medoid_row],
                "nearest_reference": references.ids[ref],
                "nearest_taxon": qiime_taxon(references.lineages[ref]),
                "nearest_distance": float(nearest.distance[centre]),
                "median_distance": float(
                    np.median(nearest.distance[distinct_of_row[cluster_rows]])
                ),
                "agreed_rank": rank,
                "agreed_taxon": qiime_taxon(labels),
                "map_x": x,
                "map_y": y,
            }
        )
        for r in cluster_rows:
            member_rows.append(
                {
                    "cluster_id": ids[label],
                    "sample_id": candidates.sample_ids[r],
                    "sequence_id": candidates.sequence_ids[r],
                    "distance": float(nearest.distance[distinct_of_row[r]]),
                    "medoid": r == medoid_row,
                }
            )
    records.sort(key=lambda rec: (-rec["reads"], rec["cluster_id"]))
    member_rows.sort(key=lambda rec: (rec["cluster_id"], rec["sample_id"], rec["sequence_id"]))
    return (
        pa.Table.from_pylist(records, schema=CLUSTER_SCHEMA),
        pa.Table.from_pylist(member_rows, schema=MEMBER_SCHEMA),
    )
