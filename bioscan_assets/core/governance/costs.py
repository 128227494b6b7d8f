"""Estimated cost of runs and of storage, so a lab sees what a run and a month cost.

Prices are list-price placeholders from `config/retention.yaml` (`prices:`), overridable per
deployment. Compute: device-hours x the device class's hourly price; a GPU/TPU step also
pays its host's wall time at the CPU price. Storage: bytes x price per GB-month.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bioscan_assets.core.layout import TENANT_RE
from bioscan_assets.core.storage import Store

DEVICE_CLASSES = ("cpu", "gpu", "tpu")
_GB = 1e9


@dataclass(frozen=True)
class Prices:
    """Hourly price per device of each class, and storage per GB-month."""

    device_hour: Mapping[str, float] = field(
        default_factory=lambda: {"cpu": 0.10, "gpu": 3.00, "tpu": 1.20}
    )
    storage_gb_month: float = 0.020
    currency: str = "USD"

    def __post_init__(self) -> None:
        missing = [c for c in DEVICE_CLASSES if c not in self.device_hour]
        if missing:
            raise ValueError(f"prices.device_hour lacks {', '.join(missing)}")
        bad = {k: v for k, v in self.device_hour.items() if float(v) < 0}
        if bad or self.storage_gb_month < 0:
            raise ValueError(f"prices must be >= 0 (got {bad or self.storage_gb_month})")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> Prices:
        doc = dict(doc or {})
        base = cls()
        hourly = {
            **base.device_hour,
            **{k: float(v) for k, v in (doc.get("device_hour") or {}).items()},
        }
        return cls(
            device_hour=hourly,
            storage_gb_month=float(doc.get("storage_gb_month", base.storage_gb_month)),
            currency=str(doc.get("currency", base.currency)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "device_hour": dict(sorted(self.device_hour.items())),
            "storage_gb_month": self.storage_gb_month,
            "currency": self.currency,
        }


def default_prices() -> Prices:
    """The prices of the bundled policy file."""
    from bioscan_assets.core.governance.retention import load_policy_file

    return Prices.from_dict(load_policy_file().get("prices"))


def estimate_cost(
    prices: Prices,
    *,
    device_kind: str,
    device_seconds: float,
    wall_seconds: float,
    bytes_stored: int = 0,
) -> dict[str, Any]:
    """Compute and monthly storage cost of one run (rounded to 1e-6 of the currency)."""
    from bioscan_assets.core.governance.provenance import device_class

    kind = device_class(device_kind)
    compute = device_seconds / 3600.0 * float(prices.device_hour[kind])
    host = 0.0 if kind == "cpu" else wall_seconds / 3600.0 * float(prices.device_hour["cpu"])
    storage = bytes_stored / _GB * prices.storage_gb_month
    return {
        "currency": prices.currency,
        "device_kind": kind,
        "device_hours": round(device_seconds / 3600.0, 6),
        "compute_usd": round(compute + host, 6),
        "storage_bytes": int(bytes_stored),
        "storage_usd_per_month": round(storage, 6),
        "prices": prices.as_dict(),
    }


def sum_costs(manifests: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over run manifests, by asset: what the evaluation report adds up."""
    by_asset: dict[str, dict[str, float]] = {}
    for doc in manifests:
        entry = by_asset.setdefault(
            doc["asset"],
            {"runs": 0, "device_seconds": 0.0, "wall_seconds": 0.0, "compute_usd": 0.0},
        )
        timing, cost = doc.get("timing") or {}, doc.get("cost") or {}
        entry["runs"] += 1
        entry["device_seconds"] += float(timing.get("device_seconds", 0.0))
        entry["wall_seconds"] += float(timing.get("wall_seconds", 0.0))
        entry["compute_usd"] += float(cost.get("compute_usd", 0.0))
    for entry in by_asset.values():
        for key in ("device_seconds", "wall_seconds", "compute_usd"):
            entry[key] = round(entry[key], 6)
    return {
        "runs": sum(int(e["runs"]) for e in by_asset.values()),
        "device_seconds": round(sum(e["device_seconds"] for e in by_asset.values()), 3),
        "wall_seconds": round(sum(e["wall_seconds"] for e in by_asset.values()), 3),
        "compute_usd": round(sum(e["compute_usd"] for e in by_asset.values()), 6),
        "by_asset": dict(sorted(by_asset.items())),
    }


def tenant_prefixes(store: Store, tenant: str) -> list[str]:
    """Storage prefixes that belong to one tenant (embeddings: one per model)."""
    prefixes = [
        f"raw/tenant={tenant}",
        f"shards/tenant={tenant}",
        f"lancedb/{tenant}",
        f"quarantine/{tenant}",
    ]
    from bioscan_assets.core.governance.provenance import list_manifest_assets

    prefixes += [f"embeddings/{model}/tenant={tenant}" for model in _children(store, "embeddings")]
    prefixes += [f"manifests/{asset}/tenant={tenant}" for asset in list_manifest_assets(store)]
    return prefixes


def _children(store: Store, prefix: str) -> list[str]:
    local = store.local_path(prefix)
    if local is not None:
        return sorted(p.name for p in local.iterdir() if p.is_dir()) if local.is_dir() else []
    try:
        entries = store.fs.ls(store.url(prefix).removeprefix("gs://"), detail=True)
    except FileNotFoundError:
        return []
    return sorted(
        e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"
    )


def storage_bytes(store: Store, tenant: str) -> dict[str, int]:
    """Bytes stored for a tenant, by area. Raw blobs are content-addressed and shared, so a
    tenant is charged for the blobs its raw manifests list (each blob once)."""
    by_area: dict[str, int] = {}
    blobs: dict[str, int] = {}
    for prefix in tenant_prefixes(store, tenant):
        area = prefix.split("/", 1)[0]
        sizes = store.list_sizes(prefix)
        by_area[area] = by_area.get(area, 0) + sum(sizes.values())
        if area == "raw":
            for rel in sizes:
                if rel.endswith("/manifest.json"):
                    doc = json.loads(store.read_bytes(rel))
                    if doc.get("tenant") != tenant:
                        continue
                    for entry in [
                        *doc.get("files", []),
                        *doc.get("references", []),
                        *([doc["taxonomy"]] if doc.get("taxonomy") else []),
                    ]:
                        blobs[entry["sha256"]] = int(entry.get("size", 0))
    by_area["raw"] = by_area.get("raw", 0) + sum(blobs.values())
    return dict(sorted(by_area.items()))


def tenant_summary(
    store: Store, tenant: str, *, month: str | None = None, prices: Prices | None = None
) -> dict[str, Any]:
    """Compute cost of a tenant's runs (those finished in `month`, YYYY-MM, if given) and the
    monthly cost of what it stores now."""
    from bioscan_assets.core.governance.provenance import iter_run_manifests

    if not TENANT_RE.fullmatch(tenant or ""):
        raise ValueError(f"tenant {tenant!r} is not a valid tenant name")
    if month is not None and not (
        len(month) == 7 and month[4] == "-" and month[:4].isdigit() and month[5:].isdigit()
    ):
        raise ValueError(f"month {month!r} must look like 2026-11")
    prices = prices or default_prices()
    runs = []
    for _rel, doc in iter_run_manifests(store, tenant):
        finished = (doc.get("timing") or {}).get("finished_at", "")
        if month is None or finished.startswith(month):
            runs.append(doc)
    compute = sum_costs(runs)
    stored = storage_bytes(store, tenant)
    total_bytes = sum(stored.values())
    storage_month = round(total_bytes / _GB * prices.storage_gb_month, 6)
    return {
        "tenant": tenant,
        "month": month,
        "currency": prices.currency,
        "compute": compute,
        "storage_bytes": stored,
        "storage_total_bytes": total_bytes,
        "storage_usd_per_month": storage_month,
        "total_usd": round(compute["compute_usd"] + storage_month, 6),
        "prices": prices.as_dict(),
    }
