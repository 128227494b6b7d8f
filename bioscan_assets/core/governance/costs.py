"""What a tenant costs: its runs' compute (from their run manifests) and what it stores now.

Per-run estimates are made when a manifest is built (`prices.estimate_cost`); this module adds
them up per asset and prices the bytes under the tenant's storage prefixes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bioscan_assets.core import layout
from bioscan_assets.core.governance.listing import child_dirs
from bioscan_assets.core.governance.prices import GB, Prices, default_prices
from bioscan_assets.core.governance.provenance import iter_run_manifests, list_manifest_assets
from bioscan_assets.core.layout import TENANT_RE
from bioscan_assets.core.storage import Store


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
    """Storage prefixes that belong to one tenant (embeddings, vectors, adapters: per model)."""
    prefixes = [
        layout.raw_tenant_dir(tenant),
        layout.shard_tenant_dir(tenant),
        layout.lancedb_dir(tenant),
        layout.quarantine_dir(tenant),
        layout.taxonomy_tenant_dir(tenant),
        layout.profile_tenant_dir(tenant),
        layout.novelty_dir(tenant),
        layout.evaluation_report_dir(tenant),
        layout.cohort_report_dir(tenant),
    ]
    models = child_dirs(store, layout.embeddings_root(), hidden=True)
    prefixes += [layout.embedding_tenant_dir(model, tenant) for model in models]
    for model in child_dirs(store, layout.hash_store_root()):
        for weights in child_dirs(store, layout.hash_store_model_dir(model)):
            prefixes.append(layout.hash_store_dir(model, weights, tenant))
    for model in child_dirs(store, layout.adapters_root()):
        prefixes.append(layout.adapter_root(model, tenant))
    prefixes += [
        layout.run_manifest_tenant_dir(asset, tenant) for asset in list_manifest_assets(store)
    ]
    return prefixes


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
    storage_month = round(total_bytes / GB * prices.storage_gb_month, 6)
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
