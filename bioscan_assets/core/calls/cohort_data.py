"""What a tenant's cohort report shows, read from storage: each sample's profile at one rank and
where and when it was taken (the sample.json kept in its raw manifest).

Only the given tenant's folders are read (paths are built from the validated tenant name), so
one tenant's report can never show another's samples.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from bioscan_assets.core.calls.profile import UNASSIGNED, rank_rows, rank_shares
from bioscan_assets.core.ingest.raw import read_raw_manifest
from bioscan_assets.core.layout import (
    check_sample_id,
    check_tenant,
    profile_dir,
    profile_tenant_dir,
)
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import RANKS

PLACE_KEYS = ("latitude", "longitude", "depth_m")


@dataclass
class CohortSample:
    sample_id: str
    metadata: dict[str, Any] = field(default_factory=dict)  # sample.json, `files` left out
    shares: dict[str, float] = field(default_factory=dict)  # taxon at the rank -> fraction
    lineages: dict[str, str] = field(default_factory=dict)  # taxon -> its QIIME 2 lineage
    reads: int = 0
    has_profile: bool = False

    def number(self, name: str) -> float | None:
        value = self.metadata.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) else None

    @property
    def placed(self) -> bool:
        return self.number("latitude") is not None and self.number("longitude") is not None


def _metadata(store: Store, tenant: str, sample_id: str) -> dict[str, Any]:
    try:
        manifest = read_raw_manifest(store, tenant, sample_id)
    except FileNotFoundError:
        return {}
    doc = json.loads(manifest["sample_json"])
    return {k: v for k, v in doc.items() if k != "files"} if isinstance(doc, dict) else {}


def load_sample(store: Store, tenant: str, sample_id: str, rank: str) -> CohortSample:
    """One sample's profile at `rank` (unassigned reads pooled) and its sample.json."""
    sample = CohortSample(check_sample_id(sample_id), _metadata(store, tenant, sample_id))
    try:
        data = store.read_bytes(f"{profile_dir(tenant, sample_id)}/profile.parquet")
    except FileNotFoundError:
        return sample
    sample.has_profile = True
    profile = pq.read_table(io.BytesIO(data))
    sample.reads = sum(row["reads"] for row in rank_rows(profile, RANKS[0]))
    rows = rank_rows(profile, rank)
    sample.shares = rank_shares(rows)
    for row in rows:
        if row["taxon"] != UNASSIGNED:
            sample.lineages.setdefault(row["taxon"], row["lineage"])
    return sample


def _order(sample: CohortSample) -> tuple:
    return (str(sample.metadata.get("collected_at") or ""), sample.sample_id)


def load_cohort(
    store: Store, tenant: str, sample_ids: Iterable[str], rank: str = "genus"
) -> list[CohortSample]:
    """The tenant's samples at `rank`, ordered by collection time then id."""
    check_tenant(tenant)
    if rank not in RANKS:
        raise ValueError(f"rank {rank!r} is not one of {', '.join(RANKS)}")
    samples = [load_sample(store, tenant, s, rank) for s in sorted(set(sample_ids))]
    return sorted(samples, key=_order)


def profiled_samples(store: Store, tenant: str) -> list[str]:
    """Sample ids with a profile under the tenant's profiles folder."""
    prefix = profile_tenant_dir(check_tenant(tenant)) + "/"
    found = set()
    for rel in store.list_files(prefix.rstrip("/")):
        part = rel.removeprefix(prefix).split("/", 1)[0]
        if part.startswith("sample=") and rel.endswith("/profile.parquet"):
            found.add(part.removeprefix("sample="))
    return sorted(found)
