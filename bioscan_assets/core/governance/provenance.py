"""Run manifests: what one materialisation read, ran and wrote, stored beside the outputs.

A manifest answers "where did these rows come from" months later, without the Dagster
instance: input sha256s, code and library versions, model id + weights hash, the config and
its hash, row counts, the device it ran on and what it cost, and who or what started it.

Layout (under the storage root; one immutable file per run plus a `latest.json` pointer):
    manifests/<asset>/tenant=<t>/sample=<s>/<run_id>.json   partitioned by sample
    manifests/<asset>/tenant=<t>/_all/<run_id>.json          a tenant-wide step
    manifests/<asset>/_global/<run_id>.json                  everything else
Manifests are never expired by retention. They hold ids, counts and hashes only: never a
sequence.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from bioscan_assets.core import layout
from bioscan_assets.core.governance.listing import child_dirs
from bioscan_assets.core.governance.prices import (
    Prices,
    default_prices,
    device_class,
    estimate_cost,
)
from bioscan_assets.core.layout import TENANT_RE, split_partition_key
from bioscan_assets.core.storage import Store

MANIFEST_VERSION = 1
LATEST = "latest.json"

# Distributions whose versions decide the bytes we write (importlib.metadata names).
LIBRARIES = (
    "bioscan",
    "dagster",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "pyarrow",
    "lancedb",
    "pysam",
    "numpy",
)
TRIGGERS = ("sensor", "schedule", "backfill", "ci", "demo", "manual")
_ASSET_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_RUN_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


# --- hashing ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-able form of config values: dataclasses, tuples, sets, paths, numpy scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config value {value!r} is not finite: canonical JSON cannot hold it")
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: equal configs give equal bytes on every machine."""
    return json.dumps(
        _plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def config_hash(config: Any) -> str:
    """sha256 (hex) of the canonical JSON of a config."""
    return hashlib.sha256(canonical_json(config)).hexdigest()


# --- environment -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that shape our outputs, plus Python's."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def code_info(code_version: str | None) -> dict[str, Any]:
    """The asset's code version plus what identifies the deployed code as a whole.

    `BIOSCAN_GIT_SHA` is set by the image build (deploy/); a dev checkout records None.
    """
    return {
        "code_version": code_version,
        "bioscan": library_versions().get("bioscan"),
        "git_sha": os.environ.get("BIOSCAN_GIT_SHA") or None,
        "python_executable": PurePath(sys.executable).name,
    }


# --- timing and devices ------------------------------------------------------------------------


def make_timing(
    *,
    started_at: float,
    finished_at: float | None = None,
    device: Mapping[str, Any] | None = None,
    device_seconds: float | None = None,
) -> dict[str, Any]:
    """Timing block of a manifest from epoch seconds and an accelerator description.

    `device` takes `Accelerator.describe()` (platform, device_kind, device_count) or any
    mapping with `kind`/`platform`, `name`/`device_kind` and `count`/`device_count`; omitted,
    the step counts as one CPU device. Device-seconds default to wall time x device count.
    """
    finished_at = time.time() if finished_at is None else finished_at
    device = dict(device or {})
    kind = device_class(device.get("platform") or device.get("kind"))
    count = int(device.get("device_count") or device.get("count") or 1)
    wall = max(finished_at - started_at, 0.0)
    return {
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "wall_seconds": round(wall, 3),
        "device_kind": kind,
        "device_name": str(device.get("device_kind") or device.get("name") or kind),
        "device_count": count,
        "device_seconds": round(wall * count if device_seconds is None else device_seconds, 3),
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


# --- the manifest ----------------------------------------------------------------------------


def _check_asset(asset: str) -> str:
    if not _ASSET_RE.fullmatch(asset):
        raise ValueError(f"asset name {asset!r} is not a plain identifier")
    return asset


def _check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.fullmatch(run_id) or run_id in (".", ".."):
        raise ValueError(f"run id {run_id!r} has characters not allowed in a file name")
    return run_id


def _scope(
    partition_key: str | None, tenant: str | None
) -> tuple[str | None, str | None, str | None]:
    """(partition_key, tenant, sample_id) with the tenant checked against the partition."""
    if partition_key is None:
        if tenant is not None and not TENANT_RE.fullmatch(tenant):
            raise ValueError(f"tenant {tenant!r} is not a valid tenant name")
        return None, tenant, None
    part_tenant, sample_id = split_partition_key(partition_key)
    if tenant is not None and tenant != part_tenant:
        raise ValueError(f"tenant {tenant!r} does not own partition {partition_key!r}")
    return partition_key, part_tenant, sample_id


def build_run_manifest(
    asset: str,
    partition_key: str | None,
    *,
    run_id: str,
    tags: Mapping[str, str] | None = None,
    trigger: str = "manual",
    user: str | None = None,
    inputs: Mapping[str, str] | None = None,
    code_version: str | None = None,
    config: Any = None,
    rows: Mapping[str, int] | None = None,
    model: Mapping[str, Any] | None = None,
    timing: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    tenant: str | None = None,
    prices: Prices | None = None,
) -> dict[str, Any]:
    """One materialisation's provenance as a JSON-able dict (see the module docstring).

    `inputs` maps an input's name (file path, upstream asset) to its sha256 or content
    version; `outputs` may carry `bytes` (stored size, for the storage cost) and paths.
    `prices`: None uses the bundled defaults.
    """
    partition_key, tenant, sample_id = _scope(partition_key, tenant)
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger {trigger!r} is not one of {', '.join(TRIGGERS)}")
    timing = dict(timing or make_timing(started_at=time.time()))
    outputs = _plain(dict(outputs or {}))
    config_doc = _plain(config if config is not None else {})
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "asset": _check_asset(asset),
        "partition_key": partition_key,
        "tenant": tenant,
        "sample_id": sample_id,
        "run_id": _check_run_id(run_id),
        "run": {
            "trigger": trigger,
            "user": user,
            "tags": dict(sorted((tags or {}).items())),
        },
        "code": code_info(code_version),
        "code_version": code_version,
        "inputs": dict(sorted((inputs or {}).items())),
        "config": config_doc,
        "config_hash": config_hash(config_doc),
        "model": _plain(dict(model)) if model else None,
        "libraries": library_versions(),
        "rows": {k: int(v) for k, v in sorted((rows or {}).items())},
        "outputs": outputs,
        "timing": timing,
    }
    manifest["cost"] = estimate_cost(
        prices or default_prices(),
        device_kind=timing.get("device_kind", "cpu"),
        device_seconds=float(timing.get("device_seconds", 0.0)),
        wall_seconds=float(timing.get("wall_seconds", 0.0)),
        bytes_stored=int(outputs.get("bytes", 0) or 0),
    )
    return manifest


def manifest_dir(asset: str, tenant: str | None = None, sample_id: str | None = None) -> str:
    """The folder of an asset's run manifests; names are checked first (they become paths)."""
    _check_asset(asset)
    if sample_id is not None:
        if tenant is None:
            raise ValueError("a sample manifest needs its tenant")
        split_partition_key(f"{tenant}/{sample_id}")  # validates both
    elif tenant is not None and not TENANT_RE.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r} is not a valid tenant name")
    return layout.run_manifest_dir(asset, tenant, sample_id)


def manifest_path(manifest: Mapping[str, Any]) -> str:
    folder = manifest_dir(manifest["asset"], manifest.get("tenant"), manifest.get("sample_id"))
    return f"{folder}/{_check_run_id(manifest['run_id'])}.json"


def _encode(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_run_manifest(store: Store, manifest: Mapping[str, Any]) -> str:
    """Write `<run_id>.json` (then `latest.json`) atomically; returns the run file's path.

    A second write for the same run (a retried step) replaces that run's file: the last
    attempt is the one whose outputs stand.
    """
    rel = manifest_path(manifest)
    data = _encode(manifest)
    store.write_bytes(rel, data)
    store.write_bytes(f"{rel.rsplit('/', 1)[0]}/{LATEST}", data)
    return rel


def read_latest_manifest(
    store: Store, asset: str, tenant: str | None = None, sample_id: str | None = None
) -> dict[str, Any] | None:
    """The newest manifest of an asset (partition), or None when it never ran."""
    rel = f"{manifest_dir(asset, tenant, sample_id)}/{LATEST}"
    try:
        return json.loads(store.read_bytes(rel))
    except FileNotFoundError:
        return None


def iter_run_manifests(store: Store, tenant: str, assets: list[str] | None = None):
    """Every run manifest recorded for `tenant` (sample and tenant-wide ones), oldest path first.

    Only the tenant's own prefix `manifests/<asset>/tenant=<tenant>/` is listed; a name that
    is not a valid tenant is refused, so a crafted name cannot reach another prefix.
    """
    if not TENANT_RE.fullmatch(tenant or ""):
        raise ValueError(f"tenant {tenant!r} is not a valid tenant name")
    for asset in assets if assets is not None else list_manifest_assets(store):
        prefix = layout.run_manifest_tenant_dir(_check_asset(asset), tenant)
        tenant_wide = layout.run_manifest_dir(asset, tenant).rsplit("/", 1)[-1]
        for rel in store.list_files(prefix):
            folder, _, name = rel.rpartition("/")
            last = folder.rsplit("/", 1)[-1]
            if name == LATEST or not name.endswith(".json"):
                continue
            if not (last.startswith("sample=") or last == tenant_wide):
                continue
            try:
                doc = json.loads(store.read_bytes(rel))
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            if doc.get("manifest_version") and doc.get("tenant") == tenant:
                yield rel, doc


def list_manifest_assets(store: Store) -> list[str]:
    """Asset names that have a folder under `manifests/`."""
    names = child_dirs(store, layout.manifests_root(), hidden=True)
    return sorted({n for n in names if _ASSET_RE.fullmatch(n)})


def flat_metadata(manifest: Mapping[str, Any], manifest_url: str | None = None) -> dict[str, Any]:
    """Scalar entries for Dagster metadata (prefixed `provenance/` and `cost/`)."""
    timing = manifest.get("timing") or {}
    cost = manifest.get("cost") or {}
    model = manifest.get("model") or {}
    run = manifest.get("run") or {}
    out: dict[str, Any] = {
        "provenance/code_version": manifest.get("code_version") or "",
        "provenance/config_hash": manifest["config_hash"],
        "provenance/inputs": len(manifest.get("inputs") or {}),
        "provenance/inputs_sha256": config_hash(manifest.get("inputs") or {}),
        "provenance/trigger": run.get("trigger") or "",
        "provenance/user": run.get("user") or "",
        "provenance/bioscan": (manifest.get("code") or {}).get("bioscan") or "",
        "provenance/libraries": ", ".join(
            f"{k}={v}" for k, v in sorted((manifest.get("libraries") or {}).items()) if v
        ),
        "cost/device_kind": timing.get("device_kind", "cpu"),
        "cost/device_count": int(timing.get("device_count", 1)),
        "cost/device_seconds": float(timing.get("device_seconds", 0.0)),
        "cost/wall_seconds": float(timing.get("wall_seconds", 0.0)),
        "cost/compute_usd": float(cost.get("compute_usd", 0.0)),
        "cost/storage_usd_per_month": float(cost.get("storage_usd_per_month", 0.0)),
    }
    if model:
        out["provenance/model_id"] = str(model.get("model_id", ""))
        out["provenance/weights_hash"] = str(model.get("weights_hash", ""))
    for name, count in (manifest.get("rows") or {}).items():
        out[f"provenance/rows/{name}"] = int(count)
    if manifest_url:
        out["provenance/run_manifest"] = manifest_url
    return out
