"""Retention: expire intermediates by policy, only once their downstream holds what they held.

`plan_retention` decides, `apply_retention` deletes exactly what the plan lists (a dry run
prints the plan and stops). Lineage rules:
- a sample's shards expire `expire_after_days` after every embedding of that sample (one per
  model) was computed from exactly the current shard version (`shard_version` in the
  embeddings manifest; the manifest file's write time is when it was computed) and the vector
  index was materialised from it too (`inputs["sequence_shards"]` of its run manifest);
- a sample's embeddings (per model) expire `expire_after_days` after the vector index was
  materialised from exactly the current embeddings manifest (the index run manifest's
  `inputs["sequence_embeddings/<model_id>"]` holds the manifest's sha256);
- training checkpoints keep the newest K steps plus named ones; LanceDB versions older than
  N days are cleaned, never the latest; the JAX compilation cache and synced W&B runs under
  `$BIOSCAN_HOME` are capped by age and size.

Expiring a partition writes `_expired.json` (a tombstone keeping the manifest and file list)
first, then deletes the manifest, so readers see "expired" rather than half a partition, then
the parts. A run that dies half way leaves the rest in place; the next plan finds the
tombstone and finishes the job. Materialising the partition again writes a new manifest,
which wins over the tombstone (and `clear_tombstone` removes it).

Every deletion is appended to the audit log under `<storage>/audit/retention/` (JSON lines,
one file per run, appended locally; on GCS, which cannot append, one object per record).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bioscan_assets.core.layout import SAMPLE_ID_RE, TENANT_RE
from bioscan_assets.core.storage import Store

MANIFEST = "_manifest.json"
TOMBSTONE = "_expired.json"
AUDIT_DIR = "audit/retention"
INDEX_ASSET = "vector_index"
# Never deleted, whatever a policy file says.
BUILTIN_PROTECTED = (
    "raw/",
    "manifests/",
    "audit/",
    "quarantine/",
    "sensor_state/",
    "adapters/",
    "reports/",
)
POLICY_NAMES = (
    "sequence_shards",
    "sequence_embeddings",
    "checkpoints",
    "lancedb",
    "jax_cache",
    "wandb",
)
_PARTITION_DIR = re.compile(r"tenant=([^/]+)/sample=([^/]+)")
# `_COMMITTED`: core.training's marker of a step copied to storage; the others are Orbax's.
_ORBAX_COMMIT_MARKERS = ("_COMMITTED", "_CHECKPOINT_METADATA", "commit_success.txt")
_WANDB_RUN = re.compile(r"(offline-)?run-(\d{8}_\d{6})-[A-Za-z0-9]+")


class ProtectedPathError(RuntimeError):
    """A deletion reached a path retention must never delete."""


# --- policies --------------------------------------------------------------------------------


def load_policy_file(path: str | Path | None = None) -> dict[str, Any]:
    """The bundled `config/retention.yaml`, or another file of the same shape."""
    if path:
        text = Path(path).read_text()
        name = str(path)
    else:
        text = resources.files("bioscan_assets").joinpath("config/retention.yaml").read_text()
        name = "bioscan_assets/config/retention.yaml"
    doc = yaml.safe_load(text) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{name}: expected a mapping at the top level")
    return doc


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Policies:
    """Validated retention settings (see config/retention.yaml)."""

    policies: dict[str, dict[str, Any]]
    protected: tuple[str, ...]
    prices: dict[str, Any]

    def get(self, name: str) -> dict[str, Any] | None:
        """The policy's settings, or None when it is switched off."""
        doc = self.policies.get(name)
        if not doc or not doc.get("enabled", True):
            return None
        return doc


_REQUIRED = {
    "sequence_shards": ("expire_after_days",),
    "sequence_embeddings": ("expire_after_days",),
    "checkpoints": ("roots", "keep_last"),
    "lancedb": ("cleanup_older_than_days",),
    "jax_cache": ("path",),
    "wandb": ("path",),
}


def load_policies(
    path: str | Path | None = None, overrides: Mapping[str, Any] | str | None = None
) -> Policies:
    """Policies from the file (bundled by default) with `overrides` (a mapping or YAML text)
    merged on top key by key. Unknown policy names and missing fields are errors."""
    doc = load_policy_file(path)
    if isinstance(overrides, str):
        overrides = yaml.safe_load(overrides) or {}
        if not isinstance(overrides, dict):
            raise ValueError("retention overrides must be a YAML mapping")
    if overrides:
        doc = _merge(doc, overrides)
    policies = doc.get("policies") or {}
    unknown = sorted(set(policies) - set(POLICY_NAMES))
    if unknown:
        raise ValueError(
            f"unknown retention policy {', '.join(unknown)}; known: {', '.join(POLICY_NAMES)}"
        )
    for name, fields in _REQUIRED.items():
        settings = policies.get(name)
        if not settings or not settings.get("enabled", True):
            continue
        for key in fields:
            if settings.get(key) is None:
                raise ValueError(f"retention policy {name}: `{key}` is required")
    lance_tags = (policies.get("lancedb") or {}).get("tags", "keep")
    if lance_tags not in ("keep", "move", "delete"):
        raise ValueError(
            f"retention policy lancedb: tags must be keep, move or delete, not {lance_tags!r}"
        )
    extra = [p if p.endswith("/") else p + "/" for p in doc.get("protected") or []]
    protected = tuple(dict.fromkeys([*BUILTIN_PROTECTED, *extra]))
    return Policies(policies=policies, protected=protected, prices=dict(doc.get("prices") or {}))


# --- the plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deletion:
    """One unit of work: everything it lists goes, in `files` order, or the run stops there.

    `root` is "storage" (the output store) or "home" ($BIOSCAN_HOME). `guard` is the sha256
    of the manifest the decision was based on; it is checked again just before deleting, so a
    partition re-materialised since the plan is left alone.
    """

    policy: str
    root: str
    target: str
    files: tuple[str, ...]
    bytes: int
    reason: str
    asset: str | None = None
    partition_key: str | None = None
    model_id: str | None = None
    tombstone: str | None = None
    guard: str | None = None
    versions: tuple[int, ...] = ()
    tag_actions: tuple[tuple[str, str, int], ...] = ()
    cutoff: str | None = None
    details: tuple[tuple[str, Any], ...] = ()

    def lines(self) -> list[str]:
        """What this deletion removes, one line per file or version (the dry-run listing)."""
        out = [f"{self.root}:{rel}" for rel in self.files]
        out += [f"{self.root}:{self.target}@version={v}" for v in self.versions]
        return out

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["files"] = list(self.files)
        doc["versions"] = list(self.versions)
        doc["tag_actions"] = [list(t) for t in self.tag_actions]
        doc["details"] = dict(self.details)
        return doc


def format_plan(plan: list[Deletion]) -> list[str]:
    """Every file and table version a plan deletes, in the order it deletes them."""
    return [line for item in plan for line in item.lines()]


def modified_at(store: Store, rel: str) -> datetime | None:
    """When a file was last written (UTC), or None when it does not exist."""
    local = store.local_path(rel)
    if local is not None:
        try:
            return datetime.fromtimestamp(local.stat().st_mtime, UTC)
        except FileNotFoundError:
            return None
    try:
        info = store.fs.info(store.url(rel).removeprefix("gs://"))
    except FileNotFoundError:
        return None
    stamp = info.get("updated") or info.get("mtime") or info.get("timeCreated")
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return None


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    stamp = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _days(value: Any) -> timedelta:
    return timedelta(days=float(value))


def _read_json(store: Store, rel: str) -> tuple[dict[str, Any], bytes] | None:
    try:
        data = store.read_bytes(rel)
    except FileNotFoundError:
        return None
    return json.loads(data), data


def _partitions(sizes: Mapping[str, int], prefix: str) -> dict[tuple[str, str], dict[str, int]]:
    """Files grouped by `<prefix>/tenant=<t>/sample=<s>/`; other paths are ignored."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for rel, size in sizes.items():
        rest = rel[len(prefix) + 1 :]
        match = _PARTITION_DIR.match(rest)
        if not match or rest[match.end() : match.end() + 1] != "/":
            continue
        tenant, sample_id = match.groups()
        if not TENANT_RE.fullmatch(tenant) or not SAMPLE_ID_RE.fullmatch(sample_id):
            continue
        out.setdefault((tenant, sample_id), {})[rel] = size
    return out


def _deletable_files(folder: str, files: Mapping[str, int]) -> list[str]:
    """The manifest first (readers then see the partition as gone), then the rest, sorted.

    Names starting with "." are a writer's temp files: a write in progress owns them.
    """
    names = {}
    for rel in files:
        name = rel[len(folder) + 1 :]
        if "/" in name or name.startswith(".") or name == TOMBSTONE:
            continue
        names[name] = rel
    ordered = ([names.pop(MANIFEST)] if MANIFEST in names else []) + sorted(names.values())
    return ordered


@dataclass
class _Consumer:
    """A downstream record: which upstream version it was made from, and when."""

    source: str
    version: str | None
    at: datetime | None


def _embedding_consumers(store: Store, tenant: str, sample_id: str) -> list[_Consumer]:
    """Every model's embeddings of a sample (live manifest or tombstone of an expired one)."""
    out = []
    for model_id in _child_dirs(store, "embeddings"):
        folder = f"embeddings/{model_id}/tenant={tenant}/sample={sample_id}"
        found = _read_json(store, f"{folder}/{MANIFEST}")
        if found is not None:
            doc, _ = found
            at = _parse_time(doc.get("created_at")) or modified_at(store, f"{folder}/{MANIFEST}")
            out.append(_Consumer(f"{folder}/{MANIFEST}", doc.get("shard_version"), at))
            continue
        stone = _read_json(store, f"{folder}/{TOMBSTONE}")
        if stone is not None:
            doc = stone[0]
            out.append(
                _Consumer(
                    f"{folder}/{TOMBSTONE}",
                    (doc.get("manifest") or {}).get("shard_version"),
                    _parse_time(doc.get("manifest_modified_at")),
                )
            )
    return out


def _index_consumer(store: Store, input_name: str, tenant: str, sample_id: str) -> _Consumer | None:
    """What the vector index of a sample was last materialised from: its run manifest's
    `inputs[input_name]` (`sequence_shards` -> shard version, `sequence_embeddings/<model>` ->
    sha256 of the embeddings manifest) and when."""
    from bioscan_assets.core.governance.provenance import read_latest_manifest

    doc = read_latest_manifest(store, INDEX_ASSET, tenant, sample_id)
    if doc is None:
        return None
    version = (doc.get("inputs") or {}).get(input_name)
    at = _parse_time((doc.get("timing") or {}).get("finished_at"))
    return _Consumer(f"manifests/{INDEX_ASSET}/tenant={tenant}/sample={sample_id}", version, at)


def _child_dirs(store: Store, prefix: str) -> list[str]:
    local = store.local_path(prefix)
    if local is not None:
        if not local.is_dir():
            return []
        return sorted(p.name for p in local.iterdir() if p.is_dir() and not p.name.startswith("."))
    try:
        entries = store.fs.ls(store.url(prefix).removeprefix("gs://"), detail=True)
    except FileNotFoundError:
        return []
    return sorted(
        e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"
    )


def _partition_deletions(
    store: Store,
    *,
    policy: str,
    asset: str,
    prefix: str,
    model_id: str | None,
    after: timedelta,
    now: datetime,
    consumers: Callable[[str, str, dict[str, Any], str], tuple[list[_Consumer], str]],
) -> list[Deletion]:
    """Expiry of one partitioned intermediate: `consumers` says what downstream made of it."""
    out = []
    for (tenant, sample_id), files in sorted(_partitions(store.list_sizes(prefix), prefix).items()):
        folder = f"{prefix}/tenant={tenant}/sample={sample_id}"
        key = f"{tenant}/{sample_id}"
        deletable = _deletable_files(folder, files)
        manifest = (
            _read_json(store, f"{folder}/{MANIFEST}") if f"{folder}/{MANIFEST}" in files else None
        )
        common = {
            "policy": policy,
            "root": "storage",
            "target": folder,
            "asset": asset,
            "partition_key": key,
            "model_id": model_id,
        }
        if manifest is None:
            # No manifest: either being written (leave it) or an interrupted expiry (finish it).
            if f"{folder}/{TOMBSTONE}" in files and deletable:
                out.append(
                    Deletion(
                        **common,
                        files=tuple(deletable),
                        bytes=sum(files[r] for r in deletable),
                        reason="finishing an interrupted expiry (tombstone present)",
                    )
                )
            continue
        doc, raw = manifest
        found, version = consumers(tenant, sample_id, doc, folder)
        if not found or any(c.version != version or c.at is None for c in found):
            continue  # no downstream yet, or one made from another version: still needed
        consumed = max(c.at for c in found if c.at is not None)
        if now - consumed < after:
            continue
        out.append(
            Deletion(
                **common,
                files=tuple(deletable),
                bytes=sum(files[r] for r in deletable),
                reason=(
                    f"downstream materialised from version {version} at "
                    f"{consumed.isoformat(timespec='seconds')}, more than {after.days} day(s) ago "
                    f"({', '.join(c.source for c in found)})"
                ),
                tombstone=f"{folder}/{TOMBSTONE}",
                guard=hashlib.sha256(raw).hexdigest(),
                details=(("version", version), ("consumed_at", consumed.isoformat())),
            )
        )
    return out


def _plan_shards(store: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    def consumers(tenant, sample_id, doc, _folder):
        # Both readers of shards: every model's embeddings, and the vector index (its rows'
        # metadata columns come from the shards), per its run manifest.
        found = _embedding_consumers(store, tenant, sample_id)
        index = _index_consumer(store, "sequence_shards", tenant, sample_id)
        if not found or index is None:
            return [], doc.get("version")
        return [*found, index], doc.get("version")

    return _partition_deletions(
        store,
        policy="sequence_shards",
        asset="sequence_shards",
        prefix="shards",
        model_id=None,
        after=_days(settings["expire_after_days"]),
        now=now,
        consumers=consumers,
    )


def _plan_embeddings(store: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    out = []
    for model_id in _child_dirs(store, "embeddings"):

        def consumers(tenant, sample_id, _doc, folder, model_id=model_id):
            digest = hashlib.sha256(store.read_bytes(f"{folder}/{MANIFEST}")).hexdigest()
            found = _index_consumer(store, f"sequence_embeddings/{model_id}", tenant, sample_id)
            return ([found] if found else []), digest

        out += _partition_deletions(
            store,
            policy="sequence_embeddings",
            asset="sequence_embeddings",
            prefix=f"embeddings/{model_id}",
            model_id=model_id,
            after=_days(settings["expire_after_days"]),
            now=now,
            consumers=consumers,
        )
    return out


def _plan_checkpoints(
    root_store: Store, root_name: str, prefix: str, settings: Mapping[str, Any], now: datetime
) -> list[Deletion]:
    """Training checkpoints: `<prefix>/.../<run>/<step>/` folders, a step being an all-digit
    folder holding a commit marker (`_COMMITTED` in storage, Orbax's `_CHECKPOINT_METADATA`
    locally). Per run the newest `keep_last` committed steps stay (the final checkpoint is the
    newest step); older steps go, marker first, so an interrupted deletion leaves a step without
    marker, which is finished next time. Runs written to within `idle_hours` are left alone: a
    training may be rotating its own checkpoints.
    """
    prefix = prefix.strip("/")
    keep_last = max(int(settings["keep_last"]), 1)
    keep_names = set(settings.get("keep_names") or [])
    idle = timedelta(hours=float(settings.get("idle_hours", 24)))
    sizes = root_store.list_sizes(prefix)
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for rel in sizes:
        parts = rel.split("/")
        if len(parts) >= 3 and parts[-1] in _ORBAX_COMMIT_MARKERS and parts[-2].isdigit():
            runs.setdefault("/".join(parts[:-2]), {})
    for rel, size in sizes.items():
        for run, steps in runs.items():
            if not rel.startswith(run + "/"):
                continue
            name, _, rest = rel[len(run) + 1 :].partition("/")
            if name.isdigit() and rest and name not in keep_names:
                entry = steps.setdefault(int(name), {"folder": f"{run}/{name}", "files": {}})
                entry["files"][rel] = size
                if rest in _ORBAX_COMMIT_MARKERS:
                    entry["marker"] = rel
    out = []
    for run, steps in sorted(runs.items()):
        committed = sorted(step for step, entry in steps.items() if entry.get("marker"))
        if not committed:
            continue
        newest = steps[committed[-1]]
        touched = modified_at(root_store, newest["marker"])
        if touched is None or now - touched < idle:
            continue
        kept = committed[-keep_last:]
        for step in sorted(steps):
            entry = steps[step]
            if step in kept or step > committed[-1]:
                continue  # kept, or a newer step still being written
            files = sorted(entry["files"])
            marker = entry.get("marker")
            ordered = ([marker] if marker else []) + [r for r in files if r != marker]
            why = (
                f"step {step} of {run}: the newest {keep_last} committed step(s) {kept} are kept"
                if marker
                else f"step {step} of {run} has no commit marker (an interrupted save or "
                "deletion) and a newer step is committed"
            )
            out.append(
                Deletion(
                    policy="checkpoints",
                    root=root_name,
                    target=entry["folder"],
                    files=tuple(ordered),
                    bytes=sum(entry["files"].values()),
                    reason=why,
                    asset="lora_adapter",
                    details=(("step", step), ("kept_steps", kept)),
                )
            )
    return out


def _lance_tables(store: Store) -> Iterator[tuple[str, str, Any]]:
    """(tenant, table name, table) of every LanceDB database under `lancedb/`."""
    import lancedb

    for tenant in _child_dirs(store, "lancedb"):
        if not TENANT_RE.fullmatch(tenant):
            continue
        db = lancedb.connect(store.url(f"lancedb/{tenant}"))
        names: list[str] = []
        token = None
        while True:  # list_tables pages its answer
            page = db.list_tables(page_token=token)
            names += list(getattr(page, "tables", page))
            token = getattr(page, "page_token", None)
            if not token:
                break
        for name in sorted(names):
            yield tenant, name, db.open_table(name)


def _version_time(entry: Mapping[str, Any]) -> datetime:
    # LanceDB reports naive local times; astimezone() reads a naive time as local.
    return entry["timestamp"].astimezone(UTC)


def _plan_lancedb(store: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    """Versions older than the cutoff, never the latest; tags per the policy's `tags`."""
    older = _days(settings["cleanup_older_than_days"])
    tag_mode = settings.get("tags", "keep")
    out = []
    for tenant, name, table in _lance_tables(store):
        versions = sorted(table.list_versions(), key=lambda v: v["version"])
        if len(versions) < 2:
            continue
        times = {int(v["version"]): _version_time(v) for v in versions}
        latest = max(times)
        cutoff = min(now - older, times[latest])
        tags = {name_: int(info["version"]) for name_, info in table.tags.list().items()}
        actions: list[tuple[str, str, int]] = []
        old_tagged = {t: v for t, v in tags.items() if v != latest and times.get(v, now) < cutoff}
        if old_tagged:
            if tag_mode == "keep":
                cutoff = min(times[v] for v in old_tagged.values())
            else:
                actions = [(tag_mode, t, v) for t, v in sorted(old_tagged.items())]
        doomed = [v for v, t in sorted(times.items()) if t < cutoff and v != latest]
        if not doomed:
            continue
        kept = [t for v, t in times.items() if v not in doomed]
        # The cut lies halfway between the newest version that goes and the oldest that stays,
        # so the clock moving on between plan and cleanup does not change what goes.
        last_out, first_in = max(times[v] for v in doomed), min(kept)
        cut = last_out + (first_in - last_out) / 2
        out.append(
            Deletion(
                policy="lancedb",
                root="storage",
                target=f"lancedb/{tenant}/{name}",
                files=(),
                bytes=0,
                reason=f"table versions older than {older.days} day(s) (latest {latest} kept"
                + (
                    f"; tagged versions {sorted(old_tagged.values())} {tag_mode}"
                    if old_tagged
                    else ""
                )
                + ")",
                asset=INDEX_ASSET,
                versions=tuple(doomed),
                tag_actions=tuple(actions),
                cutoff=cut.isoformat(),
                details=(("tenant", tenant), ("table", name), ("latest", latest)),
            )
        )
    return out


def _plan_jax_cache(home: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    root = str(settings["path"]).strip("/")
    sizes = home.list_sizes(root)
    entries: dict[str, dict[str, Any]] = {}
    for rel, size in sizes.items():
        name = rel.rsplit("/", 1)[-1]
        for suffix in ("-cache", "-atime"):
            if name.endswith(suffix) and rel.count("/") == root.count("/") + 1:
                key = f"{root}/{name.removesuffix(suffix)}"
                entries.setdefault(key, {"files": {}, "bytes": 0})["files"][suffix] = rel
                entries[key]["bytes"] += size
    for entry in entries.values():
        atime = entry["files"].get("-atime")
        stamp = None
        if atime:
            with contextlib.suppress(FileNotFoundError, ValueError):
                stamp = datetime.fromtimestamp(
                    int.from_bytes(home.read_bytes(atime), "little") / 1e9, UTC
                )
        entry["used"] = stamp or modified_at(home, entry["files"].get("-cache") or atime)
    max_age = settings.get("max_age_days")
    cap = settings.get("max_bytes")
    order = sorted(entries, key=lambda k: (entries[k]["used"], k))
    total = sum(e["bytes"] for e in entries.values())
    out = []
    for key in order:
        entry = entries[key]
        too_old = max_age is not None and now - entry["used"] > _days(max_age)
        too_big = cap is not None and total > int(cap)
        if not (too_old or too_big):
            continue
        total -= entry["bytes"]
        # The entry first, its access time after: JAX's own eviction reads the atime of every
        # entry that exists, so an entry must never outlive its atime file.
        files = [entry["files"][s] for s in ("-cache", "-atime") if s in entry["files"]]
        out.append(
            Deletion(
                policy="jax_cache",
                root="home",
                target=root,
                files=tuple(files),
                bytes=entry["bytes"],
                reason=f"unused since {entry['used'].isoformat(timespec='seconds')}"
                if too_old
                else f"cache above {cap} bytes: least recently used",
                details=(("entry", key.rsplit("/", 1)[-1]),),
            )
        )
    return out


def _wandb_run_time(home: Store, folder: str, name: str) -> datetime | None:
    match = _WANDB_RUN.fullmatch(name)
    if match:
        # W&B names runs in the local time of the machine that ran them.
        return datetime.strptime(match.group(2), "%Y%m%d_%H%M%S").astimezone(UTC)
    return modified_at(home, folder)


def _plan_wandb(home: Store, settings: Mapping[str, Any], now: datetime) -> list[Deletion]:
    root = str(settings["path"]).strip("/")
    runs: dict[str, dict[str, int]] = {}
    for rel, size in home.list_sizes(root).items():
        parts = rel[len(root) + 1 :].split("/")
        for i, part in enumerate(parts[:-1]):
            if _WANDB_RUN.fullmatch(part):
                runs.setdefault("/".join([root, *parts[: i + 1]]), {})[rel] = size
                break
    total = sum(sum(f.values()) for f in runs.values())
    candidates = []
    for folder, files in runs.items():
        name = folder.rsplit("/", 1)[-1]
        synced = not name.startswith("offline-") or any(r.endswith(".wandb.synced") for r in files)
        started = _wandb_run_time(home, folder, name)
        if not synced or started is None or now - started < _days(settings.get("min_age_days", 1)):
            continue
        candidates.append((started, folder, files))
    out = []
    max_age, cap = settings.get("max_age_days"), settings.get("max_bytes")
    for started, folder, files in sorted(candidates):
        too_old = max_age is not None and now - started > _days(max_age)
        too_big = cap is not None and total > int(cap)
        if not (too_old or too_big):
            continue
        total -= sum(files.values())
        markers = sorted(r for r in files if r.endswith(".wandb.synced"))
        rest = sorted(r for r in files if r not in markers)
        out.append(
            Deletion(
                policy="wandb",
                root="home",
                target=folder,
                files=tuple(rest + markers),  # the synced marker last
                bytes=sum(files.values()),
                reason=f"synced run from {started.isoformat(timespec='seconds')}: "
                + ("older than the limit" if too_old else f"local W&B runs above {cap} bytes"),
            )
        )
    return out


def plan_retention(
    store: Store,
    policies: Policies,
    now: datetime | None = None,
    *,
    home: Store | None = None,
) -> list[Deletion]:
    """Everything retention would delete now, in the order it would delete it."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    plan: list[Deletion] = []
    # Embeddings are planned before shards read their manifests, so both decisions see the
    # same state; shards' lineage also reads embedding tombstones.
    if settings := policies.get("sequence_embeddings"):
        plan += _plan_embeddings(store, settings, now)
    if settings := policies.get("sequence_shards"):
        plan += _plan_shards(store, settings, now)
    if settings := policies.get("checkpoints"):
        for spec in settings.get("roots") or []:
            root_name, _, prefix = str(spec).partition(":")
            if root_name == "storage":
                plan += _plan_checkpoints(store, "storage", prefix, settings, now)
            elif root_name == "home" and home is not None:
                plan += _plan_checkpoints(home, "home", prefix, settings, now)
    if settings := policies.get("lancedb"):
        plan += _plan_lancedb(store, settings, now)
    if home is not None:
        if settings := policies.get("jax_cache"):
            plan += _plan_jax_cache(home, settings, now)
        if settings := policies.get("wandb"):
            plan += _plan_wandb(home, settings, now)
    for item in plan:
        check_deletion(item, policies)
    return plan


def check_deletion(item: Deletion, policies: Policies) -> None:
    """Refuse a deletion outside its target or inside the protected set."""
    if item.root not in ("storage", "home"):
        raise ProtectedPathError(f"unknown root {item.root!r}")
    target = item.target.strip("/")
    if ".." in target.split("/") or not target:
        raise ProtectedPathError(f"target {item.target!r} is not a plain relative path")
    for rel in [target, *item.files]:
        if item.root == "storage" and any(
            rel == p.rstrip("/") or rel.startswith(p) for p in policies.protected
        ):
            raise ProtectedPathError(f"retention may not delete protected path {rel!r}")
    for rel in item.files:
        if not rel.startswith(target + "/") or ".." in rel.split("/"):
            raise ProtectedPathError(f"{rel!r} lies outside the deletion's target {target!r}")
        if item.root == "storage" and rel.startswith("lancedb/"):
            raise ProtectedPathError(f"{rel!r}: LanceDB files are only removed through LanceDB")
        if rel.rsplit("/", 1)[-1] == TOMBSTONE:
            raise ProtectedPathError(f"{rel!r}: a tombstone is the record of an expiry")
    if item.versions and item.policy != "lancedb":
        raise ProtectedPathError("only the lancedb policy removes table versions")


# --- audit -----------------------------------------------------------------------------------


class AuditLog:
    """Append-only JSON lines under `<storage>/audit/retention/<date>/`.

    Local: one file per run, opened for append and fsynced per record. GCS objects cannot be
    appended to, so there each record is its own object `<run_id>/<seq>.jsonl`, never rewritten.
    """

    def __init__(self, store: Store, run_id: str, now: datetime | None = None):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", run_id):
            raise ValueError(f"run id {run_id!r} is not usable in a file name")
        self.store, self.run_id = store, run_id
        day = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
        self.folder = f"{AUDIT_DIR}/{day}"
        self._seq = 0

    @property
    def location(self) -> str:
        if self.store.is_gcs:
            return self.store.url(f"{self.folder}/{self.run_id}")
        return self.store.url(f"{self.folder}/{self.run_id}.jsonl")

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        if self.store.is_gcs:
            self._seq += 1
            rel = f"{self.folder}/{self.run_id}/{self._seq:06d}.jsonl"
            while self.store.exists(rel):  # a re-run with the same id never overwrites
                self._seq += 1
                rel = f"{self.folder}/{self.run_id}/{self._seq:06d}.jsonl"
            self.store.write_bytes(rel, line)
            return
        path = Path(self.store.url(f"{self.folder}/{self.run_id}.jsonl"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def read_audit(store: Store) -> list[dict[str, Any]]:
    """Every audit record, in file order."""
    out = []
    for rel in store.list_files(AUDIT_DIR):
        if rel.endswith(".jsonl"):
            out += [json.loads(line) for line in store.read_bytes(rel).splitlines() if line]
    return out


# --- applying --------------------------------------------------------------------------------


@dataclass
class RetentionResult:
    applied: list[Deletion] = field(default_factory=list)
    skipped: list[tuple[Deletion, str]] = field(default_factory=list)
    deleted_lines: list[str] = field(default_factory=list)
    bytes: int = 0
    lance_bytes: int = 0


def _remove_empty_dirs(store: Store, target: str) -> None:
    local = store.local_path(target)
    if local is None or not local.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(local), key=lambda x: -len(x[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def _write_tombstone(store: Store, item: Deletion, run_id: str, now: datetime) -> None:
    assert item.tombstone is not None
    manifest_rel = f"{item.target}/{MANIFEST}"
    found = _read_json(store, manifest_rel)
    stamp = modified_at(store, manifest_rel)
    doc = {
        "expired": True,
        "asset": item.asset,
        "partition_key": item.partition_key,
        "model_id": item.model_id,
        "policy": item.policy,
        "run_id": run_id,
        "expired_at": now.isoformat(),
        "reason": item.reason,
        "manifest": found[0] if found else None,
        "manifest_sha256": item.guard,
        "manifest_modified_at": stamp.isoformat() if stamp else None,
        "files": list(item.files),
        "bytes": item.bytes,
    }
    store.write_bytes(item.tombstone, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def _apply_lancedb(store: Store, item: Deletion) -> int:
    """Tag actions, then `optimize` with the plan's cut; returns the bytes the table shrank by.

    `optimize` also compacts (new versions, newer than the cut); the versions it removes are
    checked against the plan.
    """
    import lancedb

    from bioscan_assets.core.index.vector_index import writer_lock

    tenant, name = item.target.split("/")[1:3]
    # optimize() writes (compaction): the index writer's lock keeps it one writer per table
    with writer_lock(store, tenant, name):
        return _optimize_table(store, item, lancedb, tenant, name)


def _optimize_table(store: Store, item: Deletion, lancedb: Any, tenant: str, name: str) -> int:
    table = lancedb.connect(store.url(f"lancedb/{tenant}")).open_table(name)
    folder = f"lancedb/{tenant}/{name}.lance"
    size_before = sum(store.list_sizes(folder).values())
    present = {int(v["version"]) for v in table.list_versions()}
    for action, tag, _version in item.tag_actions:
        if action == "move":
            table.tags.update(tag, table.version)
        elif action == "delete":
            table.tags.delete(tag)
    if item.cutoff is None:
        raise ValueError(f"{item.target}: a LanceDB deletion needs its cutoff")
    older_than = max(datetime.now(UTC) - datetime.fromisoformat(item.cutoff), timedelta(0))
    table.optimize(cleanup_older_than=older_than)
    after = {int(v["version"]) for v in table.list_versions()}
    removed = sorted(present - after)
    if removed != sorted(v for v in item.versions if v in present):
        raise RuntimeError(
            f"{item.target}: LanceDB removed versions {removed}, the plan said {list(item.versions)}"
        )
    return size_before - sum(store.list_sizes(folder).values())


def apply_retention(
    store: Store,
    plan: list[Deletion],
    audit: AuditLog,
    *,
    policies: Policies,
    home: Store | None = None,
    now: datetime | None = None,
    on_applied: Callable[[Deletion, dict[str, Any]], None] | None = None,
) -> RetentionResult:
    """Delete what `plan` lists, unit by unit, auditing each; stops at the first failure.

    Each unit is checked against the protected set first; a partition whose manifest changed
    since the plan (re-materialised meanwhile) is skipped. What was not reached stays intact,
    and re-running plan + apply finishes the job.
    """
    now = now or datetime.now(UTC)
    result = RetentionResult()
    for item in plan:
        check_deletion(item, policies)
        root = store if item.root == "storage" else home
        if root is None:
            raise ValueError(f"{item.target}: a `home` store is needed for policy {item.policy}")
        record: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(),
            "run_id": audit.run_id,
            **{k: v for k, v in item.as_dict().items() if k not in ("details",)},
            "details": dict(item.details),
            "root_url": root.url(""),
        }
        if item.guard is not None:
            current = _read_json(root, f"{item.target}/{MANIFEST}")
            if current is None or hashlib.sha256(current[1]).hexdigest() != item.guard:
                result.skipped.append((item, "manifest changed since the plan"))
                audit.append(
                    {
                        **record,
                        "status": "skipped",
                        "files": [],
                        "error": "manifest changed since the plan",
                    }
                )
                continue
        deleted: list[str] = []
        try:
            if item.tombstone:
                _write_tombstone(root, item, audit.run_id, now)
            lance_bytes = _apply_lancedb(root, item) if item.versions else 0
            for rel in item.files:
                root.delete(rel)
                deleted.append(rel)
            if item.policy in ("checkpoints", "wandb"):
                _remove_empty_dirs(root, item.target)
        except BaseException as exc:
            audit.append(
                {
                    **record,
                    "status": "failed",
                    "files": deleted,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
            raise
        audit.append({**record, "status": "deleted", "lance_bytes_removed": lance_bytes})
        result.applied.append(item)
        result.deleted_lines += item.lines()
        result.bytes += item.bytes
        result.lance_bytes += lance_bytes
        if on_applied:
            on_applied(item, record)
    return result


# --- partition state -------------------------------------------------------------------------


def partition_folder(asset: str, tenant: str, sample_id: str, model_id: str | None = None) -> str:
    from bioscan_assets.core import layout

    if asset == "sequence_shards":
        return layout.shard_dir(tenant, sample_id)
    if asset == "sequence_embeddings":
        if not model_id:
            raise ValueError("sequence_embeddings partitions are per model: pass model_id")
        return layout.embedding_dir(model_id, tenant, sample_id)
    raise ValueError(f"{asset} has no expirable partitions")


def partition_state(
    store: Store, asset: str, tenant: str, sample_id: str, model_id: str | None = None
) -> str:
    """ "live" (a manifest), "expired" (a tombstone, no manifest) or "missing"."""
    folder = partition_folder(asset, tenant, sample_id, model_id)
    if store.exists(f"{folder}/{MANIFEST}"):
        return "live"
    if store.exists(f"{folder}/{TOMBSTONE}"):
        return "expired"
    return "missing"


def clear_tombstone(
    store: Store, asset: str, tenant: str, sample_id: str, model_id: str | None = None
) -> bool:
    """Drop the tombstone of a partition that has been materialised again (manifest present)."""
    folder = partition_folder(asset, tenant, sample_id, model_id)
    if store.exists(f"{folder}/{TOMBSTONE}") and store.exists(f"{folder}/{MANIFEST}"):
        store.delete(f"{folder}/{TOMBSTONE}")
        return True
    return False
