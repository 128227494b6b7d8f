"""Planted-novelty data for the novelty tests: a reference missing whole genera, a field sample
with reads of those genera among reads of known ones, and the two measured numbers.

recall: share of the planted reads (genera absent from the reference) that land in a cluster
whose majority genus is their own. false-novel rate: share of the known-genus reads that land
in any cluster.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from bioscan_assets.core.calls.sample_calls import CallSettings, call_sample, fit_tenant_classifier
from bioscan_assets.core.novelty.store import iter_members, read_novelty_manifest
from bioscan_assets.core.storage import Store
from tests.index_helpers import make_shards
from tests.synthetic_taxa import make_reference, taxonomy_tsv

HELD_OUT = ("Genus0x2", "Genus1x1")
_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def simulate_reads(
    rng: np.random.Generator, source: str, n: int, length: int = 150, error: float = 0.01
) -> list[str]:
    """`n` reads of `length` from random positions and strands of `source`, with substitutions."""
    out = []
    for _ in range(n):
        start = int(rng.integers(0, max(1, len(source) - length + 1)))
        read = np.frombuffer(source[start : start + length].encode(), dtype=np.uint8).copy()
        hit = rng.random(read.size) < error
        read[hit] = rng.choice(np.frombuffer(b"ACGT", dtype=np.uint8), int(hit.sum()))
        text = read.tobytes().decode()
        out.append(text.translate(_COMPLEMENT)[::-1] if rng.random() < 0.5 else text)
    return out


def planted_scenario(
    tmp_path: Path,
    store: Store,
    tenant: str = "acme-lab",
    *,
    seed: int = 3,
    field_id: str = "FIELD",
    reads_per_source: int = 12,
    held_out: Iterable[str] = HELD_OUT,
) -> dict[str, tuple[str, bool]]:
    """Shards of `<tenant>/REF` (6 of 8 members of each kept genus) and `<tenant>/<field_id>`
    (reads of the other 2 members of each kept genus, and of 3 members of each held-out genus);
    returns the truth: field sequence id -> (genus, planted)."""
    held = set(held_out)
    ids, seqs, lineages = make_reference(seed=seed, per_genus=8)
    genus = [lineage[5] for lineage in lineages]
    member = [int(i.rsplit("-", 1)[1]) for i in ids]
    reference = [j for j in range(len(ids)) if genus[j] not in held and member[j] < 6]
    make_shards(
        tmp_path,
        store,
        tenant,
        "REF",
        {ids[j]: seqs[j] for j in reference},
        taxonomy_tsv([ids[j] for j in reference], [lineages[j] for j in reference]),
    )
    rng = np.random.default_rng(seed)
    field: dict[str, str] = {}
    truth: dict[str, tuple[str, bool]] = {}
    for j in range(len(ids)):
        planted = genus[j] in held
        if (planted and member[j] < 3) or (not planted and member[j] >= 6):
            for read in simulate_reads(rng, seqs[j], reads_per_source):
                name = f"{field_id}-r{len(field):04d}"
                field[name] = read
                truth[name] = (genus[j], planted)
    make_shards(tmp_path, store, tenant, field_id, field)
    return truth


def call_samples(store: Store, tenant: str, keys: list[str], samples: Iterable[str]) -> None:
    """taxonomy_calls' core for each sample of `tenant` (bootstrap kept small for speed)."""
    fitted = fit_tenant_classifier(store, tenant, keys, CallSettings(bootstrap=30))
    for sample_id in samples:
        call_sample(store, f"{tenant}/{sample_id}", fitted)


def cluster_members(store: Store, tenant: str) -> dict[str, list[str]]:
    """cluster id -> member sequence ids, from the committed result."""
    manifest = read_novelty_manifest(store, tenant)
    out: dict[str, list[str]] = collections.defaultdict(list)
    for batch in iter_members(store, tenant, manifest):
        for cluster_id, sid in zip(
            batch.column("cluster_id").to_pylist(),
            batch.column("sequence_id").to_pylist(),
            strict=True,
        ):
            out[cluster_id].append(sid)
    return dict(out)


def score(
    members: Mapping[str, list[str]], truth: Mapping[str, tuple[str, bool]]
) -> tuple[float, float]:
    """(recall, false-novel rate) of clusters against the truth (see the module docstring)."""
    planted = sum(1 for _genus, p in truth.values() if p)
    known = len(truth) - planted
    found = flagged = 0
    for sids in members.values():
        genera = [truth[s][0] for s in sids if s in truth]
        if not genera:
            continue
        majority = collections.Counter(genera).most_common(1)[0][0]
        found += sum(1 for s in sids if s in truth and truth[s] == (majority, True))
        flagged += sum(1 for s in sids if s in truth and not truth[s][1])
    return found / max(planted, 1), flagged / max(known, 1)
