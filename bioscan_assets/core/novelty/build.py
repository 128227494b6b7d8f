"""One tenant's novelty result end to end: inputs, threshold, clusters, ids, map, commit.

Plain data in and out, so the Dagster asset only picks the tenant and records metadata. A
build whose inputs (calls versions, reference versions, representation, settings) match the
committed result's fingerprint returns that result untouched (`unchanged`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bioscan_assets.core.calls.references import References
from bioscan_assets.core.layout import check_tenant, split_partition_key
from bioscan_assets.core.novelty.clusters import ClusterSettings, cluster_candidates
from bioscan_assets.core.novelty.describe import (
    Nearest,
    describe_clusters,
    member_keys,
    rows_by_label,
)
from bioscan_assets.core.novelty.inputs import (
    Candidates,
    choose_representation,
    embedding_vectors,
    load_candidates,
    sample_dates,
    tenant_references,
    tenant_samples,
)
from bioscan_assets.core.novelty.pictures import novelty_map, pca_from_distances
from bioscan_assets.core.novelty.spaces import (
    EMBEDDING,
    KMER,
    EmbeddingSpace,
    KmerSpace,
    Space,
    nearest_reference,
)
from bioscan_assets.core.novelty.stable_ids import PREFIX, match_clusters
from bioscan_assets.core.novelty.store import (
    CLUSTER_SCHEMA,
    MEMBER_SCHEMA,
    NOVELTY_FORMAT_VERSION,
    iter_members,
    previous_manifest,
    write_novelty,
)
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS


@dataclass(frozen=True)
class NoveltySettings:
    """Every field feeds the result's fingerprint."""

    rank: str = "genus"  # candidates abstain at this rank
    threshold_quantile: float = 0.8  # of the references' nearest-other-reference distances
    threshold: float | None = None  # a fixed threshold instead (measurements)
    min_cluster_size: int = 3
    min_samples: int | None = 2
    max_points: int = 6000
    calibration_sample: int = 2000
    k: int = 8
    min_jaccard: float = 0.5
    map_points: int = 1500  # 0: no map
    model_id: str = ""  # embeddings of this model; default: the one every partition has
    seed: int = 0


@dataclass
class NoveltyBuild:
    manifest: dict[str, Any]
    unchanged: bool


def _fingerprint(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _previous_members(store: Store, tenant: str, manifest: dict | None) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    if not manifest or not manifest.get("members"):
        return out
    for batch in iter_members(store, tenant, manifest):
        ids, samples, seqs = (
            batch.column(c).to_pylist() for c in ("cluster_id", "sample_id", "sequence_id")
        )
        for cluster_id, sample_id, sid in zip(ids, samples, seqs, strict=True):
            out.setdefault(cluster_id, set()).add(f"{sample_id}/{sid}")
    return out


def _next_number(manifest: dict | None, previous: dict[str, set[str]]) -> int:
    used = [int(i[len(PREFIX) :]) for i in previous if i[len(PREFIX) :].isdigit()]
    return max([int((manifest or {}).get("next_cluster_number", 1)), *(n + 1 for n in used)])


def _embedding_space(
    store: Store, tenant: str, model_id: str, references: References, candidates: Candidates
) -> EmbeddingSpace:
    """Vectors of every reference row and of each distinct candidate's first row; KeyError
    when the embeddings lack one."""
    wanted: dict[tuple[str, str], set[str]] = {}
    ref_rows = [tuple(ref_id.split("/", 2)) for ref_id in references.ids]
    for owner, sample_id, sid in ref_rows:
        wanted.setdefault((owner, sample_id), set()).add(sid)
    first_row: dict[int, int] = {}
    for row, distinct in enumerate(candidates.distinct_of_row):
        first_row.setdefault(distinct, row)
    query_rows = [first_row[d] for d in range(len(candidates.distinct))]
    for row in query_rows:
        wanted.setdefault((tenant, candidates.sample_ids[row]), set()).add(
            candidates.sequence_ids[row]
        )
    vectors = {
        part: embedding_vectors(store, model_id, part[0], part[1], ids)
        for part, ids in sorted(wanted.items())
    }
    refs = np.stack([vectors[(o, s)][sid] for o, s, sid in ref_rows])
    queries = [
        vectors[(tenant, candidates.sample_ids[r])][candidates.sequence_ids[r]] for r in query_rows
    ]
    matrix = np.stack(queries) if queries else np.zeros((0, refs.shape[1]), dtype=np.float32)
    return EmbeddingSpace(refs, matrix, model_id=model_id)


def _space(
    store: Store,
    tenant: str,
    rep: dict[str, Any],
    references: References,
    candidates: Candidates,
    k: int,
) -> tuple[Space, dict[str, Any]]:
    """The embedding space when chosen and every vector is there, else k-mer profiles."""
    if rep["representation"] == EMBEDDING:
        try:
            return _embedding_space(store, tenant, rep["model_id"], references, candidates), rep
        except KeyError:
            rep = {
                "representation": KMER,
                "reason": f"embeddings of model {rep['model_id']} lack some rows: k-mer "
                "profiles instead",
            }
    return KmerSpace(references.sequences, candidates.distinct, k=k), rep


def _map(
    space: Space,
    references: References,
    novel: np.ndarray,
    labels: np.ndarray,
    ids: dict[int, str],
    settings: NoveltySettings,
    title: str,
) -> tuple[bytes | None, dict[int, tuple[float, float]]]:
    rng = np.random.default_rng([settings.seed, space.n_refs])
    n_refs = min(space.n_refs, settings.map_points // 2)
    refs = np.sort(rng.choice(space.n_refs, size=n_refs, replace=False))
    clustered = novel[labels[novel] >= 0]
    loose = novel[labels[novel] < 0]
    room = max(0, settings.map_points - n_refs - clustered.size)
    queries = np.concatenate([clustered, loose[:room]])
    points = np.concatenate([refs, queries + space.n_refs])
    coords = pca_from_distances(space.dist(points, points))
    ref_xy, query_xy = coords[: refs.size], coords[refs.size :]
    phylum = RANKS.index("phylum")
    png = novelty_map(
        ref_xy,
        [references.lineages[i][phylum] for i in refs],
        query_xy,
        [ids.get(int(labels[q])) for q in queries],
        title=title,
    )
    xy = {int(q): (float(x), float(y)) for q, (x, y) in zip(queries, query_xy, strict=True)}
    return png, xy


def build_novelty(
    store: Store,
    tenant: str,
    partition_keys: Iterable[str],
    settings: NoveltySettings | None = None,
    shared_keys: Iterable[str] = (),
    force: bool = False,
) -> NoveltyBuild:
    """Build and commit `tenant`'s novelty result from its samples among `partition_keys`."""
    check_tenant(tenant)
    settings = settings or NoveltySettings()
    if settings.rank not in RANKS:
        raise ValueError(f"rank {settings.rank!r} is not one of {', '.join(RANKS)}")
    keys = sorted(set(partition_keys))
    ref_keys, references = tenant_references(store, tenant, keys, shared_keys)
    samples = tenant_samples(store, tenant, keys, ref_keys)
    partitions = [split_partition_key(k) for k in ref_keys]
    partitions += [(tenant, s) for s in samples.calls_versions]
    rep = choose_representation(store, partitions, settings.model_id)
    inputs = {
        "format": NOVELTY_FORMAT_VERSION,
        "calls": samples.calls_versions,
        "references": references.versions,
        "representation": rep,
        "settings": asdict(settings),
    }
    fingerprint = _fingerprint(inputs)
    previous = previous_manifest(store, tenant)
    if previous and previous.get("fingerprint") == fingerprint and not force:
        return NoveltyBuild(previous, unchanged=True)

    candidates = load_candidates(store, tenant, samples.calls_versions, settings.rank)
    counts: dict[str, Any] = {"rows_read": candidates.rows_read, "candidate_rows": len(candidates)}
    info: dict[str, Any] = {
        "fingerprint": fingerprint,
        "inputs": {"calls": samples.calls_versions, "references": references.versions},
        "samples_waiting_for_calls": samples.waiting,
        "settings": asdict(settings),
    }
    clusters, members, png = CLUSTER_SCHEMA.empty_table(), MEMBER_SCHEMA.empty_table(), None
    old = _previous_members(store, tenant, previous)
    next_number = _next_number(previous, old)
    matching_summary: dict[str, Any] = {"retired": sorted(old)}
    if len(references) < 2:
        info["representation"] = {"representation": rep["representation"]}
        info["reason"] = "fewer than two reference sequences: no distance to calibrate against"
    else:
        space, rep = _space(store, tenant, rep, references, candidates, settings.k)
        info["representation"] = rep | space.describe()
        calibration = space.calibration(settings.calibration_sample, settings.seed)
        threshold = (
            float(settings.threshold)
            if settings.threshold is not None
            else float(np.quantile(calibration, settings.threshold_quantile))
        )
        info["threshold"] = {
            "value": round(threshold, 6),
            "quantile": None if settings.threshold is not None else settings.threshold_quantile,
            "calibration_cases": int(calibration.size),
            "reference_nearest_distance": {
                f"p{q}": round(float(np.quantile(calibration, q / 100)), 4) for q in (10, 50, 90)
            },
            "rule": "a candidate is novel when its nearest reference is farther than this; "
            "calibrated on each reference's distance to its nearest other reference",
        }
        nearest = Nearest(*nearest_reference(space))
        novel = np.flatnonzero((nearest.distance > threshold) & space.measurable)
        reads = candidates.reads_per_distinct()
        labels, left_out = cluster_candidates(
            space,
            novel,
            reads,
            ClusterSettings(settings.min_cluster_size, settings.min_samples, settings.max_points),
        )
        rows = rows_by_label(candidates, labels)
        current = {label: member_keys(candidates, r) for label, r in rows.items()}
        matching = match_clusters(current, old, next_number, settings.min_jaccard)
        next_number, matching_summary = matching.next_number, matching.summary()
        png, xy = None, {}
        if settings.map_points > 0:
            title = f"{tenant}: references by phylum, novelty clusters outlined"
            png, xy = _map(space, references, novel, labels, matching.ids, settings, title)
        clusters, members = describe_clusters(
            space,
            candidates,
            references,
            nearest,
            rows,
            matching.ids,
            sample_dates(store, tenant, samples.calls_versions),
            xy,
        )
        counts |= {
            "candidate_sequences": len(candidates.distinct),
            "unmeasurable_rows": int(reads[~space.measurable].sum()),
            "novel_sequences": int(novel.size),
            "novel_rows": int(reads[novel].sum()),
            "clustered_rows": members.num_rows,
            "left_out_over_max_points": left_out,
        }
    info |= {"counts": counts, "id_matching": matching_summary, "next_cluster_number": next_number}
    version = _fingerprint(
        {"fingerprint": fingerprint, "previous": (previous or {}).get("version")}
    )[:12]
    manifest = write_novelty(
        store, tenant, version=version, clusters=clusters, members=members, map_png=png, info=info
    )
    return NoveltyBuild(manifest, unchanged=False)
