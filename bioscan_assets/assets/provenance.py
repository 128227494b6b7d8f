"""Dagster glue for provenance: run tags -> trigger/user, manifests -> metadata, data versions.

Assets call `record_provenance(...)` once at the end and merge what it returns into their
`MaterializeResult.metadata`; the manifest itself lands beside the outputs
(core.governance.record). `lineage_inputs` (core.governance.lineage) gives their `inputs`.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from dagster import AssetKey, DagsterEventType, DataVersion, MetadataValue

from bioscan_assets.core.governance import provenance
from bioscan_assets.core.governance.prices import Prices
from bioscan_assets.core.governance.record import record_run
from bioscan_assets.core.storage import Store

TRIGGER_TAG = "bioscan/trigger"
USER_TAG = "bioscan/user"
# Run tags worth keeping in a manifest; the rest (UI state, grpc info) is noise.
_KEPT_TAG_PREFIXES = ("dagster/", "bioscan/")
_TRUTHY = {"1", "true", "yes", "on"}


def run_trigger(tags: Mapping[str, str], environ: Mapping[str, str] | None = None) -> str:
    """What started a run: sensor, schedule, backfill, then our own tag (ci, demo, ...), then
    a CI environment, else a person in the UI or CLI ("manual")."""
    environ = os.environ if environ is None else environ
    if tags.get("dagster/sensor_name"):
        return "sensor"
    if tags.get("dagster/schedule_name"):
        return "schedule"
    if tags.get("dagster/backfill"):
        return "backfill"
    own = (tags.get(TRIGGER_TAG) or "").strip().lower()
    if own in provenance.TRIGGERS:
        return own
    if own in ("ui", "cli"):
        return "manual"
    if (environ.get("CI") or "").strip().lower() in _TRUTHY:
        return "ci"
    return "manual"


def run_user(tags: Mapping[str, str], environ: Mapping[str, str] | None = None) -> str:
    """Who: Dagster's `dagster/user` (set by Dagster+ / auth proxies), our `bioscan/user`, then
    the OS user of the process running the step."""
    environ = os.environ if environ is None else environ
    for key in ("dagster/user", USER_TAG):
        if tags.get(key):
            return tags[key]
    if environ.get("USER"):
        return environ["USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def bioscan_run_tags(trigger: str, user: str | None = None) -> dict[str, str]:
    """Tags to put on runs we launch ourselves (RunRequest, execute_in_process, schedules,
    `dagster job execute --tags`), so the trigger survives into every manifest."""
    trigger = trigger.strip().lower()
    if trigger not in provenance.TRIGGERS:
        raise ValueError(f"trigger {trigger!r} is not one of {', '.join(provenance.TRIGGERS)}")
    tags = {TRIGGER_TAG: trigger}
    if user:
        tags[USER_TAG] = user
    return tags


def _kept_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {k: str(v) for k, v in tags.items() if k.startswith(_KEPT_TAG_PREFIXES)}


def _run_identity(context: Any) -> tuple[str, dict[str, str]]:
    """(run id, run tags); a directly invoked asset (unit tests) has no run: a fresh id."""
    try:
        run = context.run
    except Exception:  # DagsterInvalidPropertyError on direct invocation
        return f"direct-{uuid.uuid4().hex}", {}
    return run.run_id, dict(run.tags)


def step_started_at(context: Any) -> float:
    """Epoch seconds at which the current step started (from the event log), else now."""
    try:
        step_key = context.get_step_execution_context().step.key
        records = context.instance.get_records_for_run(
            run_id=context.run.run_id, of_type=DagsterEventType.STEP_START, limit=1000
        ).records
    except Exception:  # direct invocation: no instance or no step
        return time.time()
    for record in records:
        entry = record.event_log_entry
        if entry.step_key == step_key:
            return float(entry.timestamp)
    return time.time()


def _asset_name(context: Any, asset: str | None) -> str:
    if asset:
        return asset
    return context.asset_key.to_user_string()


def _code_version(context: Any, asset: str) -> str | None:
    try:
        return context.assets_def.code_versions_by_key.get(AssetKey(asset))
    except Exception:  # an op without an assets definition
        return None


def record_provenance(
    context: Any,
    store: Store,
    *,
    inputs: Mapping[str, str],
    config: Any = None,
    rows: Mapping[str, int] | None = None,
    model: Mapping[str, Any] | None = None,
    asset: str | None = None,
    partition_key: str | None = None,
    device: Mapping[str, Any] | None = None,
    started_at: float | None = None,
    device_seconds: float | None = None,
    timing: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    code_version: str | None = None,
    tenant: str | None = None,
    prices: Prices | None = None,
) -> dict[str, Any]:
    """Write the run manifest of this materialisation and return metadata entries for it.

    Defaults come from the context: asset key, partition key, code version, run id and tags,
    and the step's start time (pass `started_at=time.time()` taken at the top of the asset
    for a tighter number, `device=accelerator.describe()` for accelerator steps). For a run
    over several partitions call it once per partition with `partition_key=`.
    A re-materialised shards/embeddings partition drops its retention tombstone here.
    """
    asset = _asset_name(context, asset)
    if partition_key is None and getattr(context, "has_partition_key", False):
        partition_key = context.partition_key
    run_id, tags = _run_identity(context)
    if timing is None:
        timing = provenance.make_timing(
            started_at=started_at if started_at is not None else step_started_at(context),
            device=device,
            device_seconds=device_seconds,
        )
    manifest = provenance.build_run_manifest(
        asset,
        partition_key,
        run_id=run_id,
        tags=_kept_tags(tags),
        trigger=run_trigger(tags),
        user=run_user(tags),
        inputs=inputs,
        code_version=code_version or _code_version(context, asset),
        config=config,
        rows=rows,
        model=model,
        timing=timing,
        outputs=outputs,
        tenant=tenant,
        prices=prices,
    )
    rel = record_run(store, manifest)
    flat = provenance.flat_metadata(manifest)
    out: dict[str, Any] = {
        k: MetadataValue.text(v) if isinstance(v, str) else v for k, v in flat.items()
    }
    out["provenance/run_manifest"] = MetadataValue.path(store.url(rel))
    out["provenance/input_sha256s"] = MetadataValue.json(manifest["inputs"])
    return out


# --- data versions ---------------------------------------------------------------------------


def shard_data_version(shard_manifest: Mapping[str, Any]) -> DataVersion:
    """Shards' data version: the shard version (a hash of the inputs, config and format)."""
    return DataVersion(f"shards:{shard_manifest['version']}")


def embedding_data_version(embedding_manifest: Mapping[str, Any]) -> DataVersion:
    """Embeddings' data version: shard version + weights hash, and the parts' bytes."""
    files = ",".join(f"{f['path']}:{f['sha256']}" for f in embedding_manifest.get("files", []))
    digest = hashlib.sha256(f"{embedding_manifest['key']}|{files}".encode()).hexdigest()[:16]
    return DataVersion(f"emb:{embedding_manifest['model_id']}:{digest}")


def manifest_data_version(store: Store, rel: str) -> DataVersion:
    """Data version of any output that has a manifest: the sha256 of its bytes."""
    return DataVersion(hashlib.sha256(store.read_bytes(rel)).hexdigest()[:16])


def model_code_version(base: str, model_spec: str) -> str:
    """Code version for an asset whose output depends on the configured model (BIOSCAN_MODEL):
    another model gives another code version, so the UI marks the asset stale. The spec is
    hashed, not loaded, so definitions load without JAX."""
    digest = hashlib.sha256(model_spec.encode()).hexdigest()[:8]
    return f"{base}+model-{digest}"
