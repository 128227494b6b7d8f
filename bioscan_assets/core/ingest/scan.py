"""What the lab-drop sensor does each tick, without Dagster: list, diff, validate, quarantine.

Every tick lists all `<tenant>/<sample_id>/sample.json` in the landing area with a cheap
fingerprint (local: size, mtime, inode; GCS: size, generation) and compares it with the
state of the previous tick. Only new or changed manifests are validated, in path order, until
the tick's budget (drops and seconds) runs out; the rest stay pending for the next tick, so
a backlog of thousands is worked off across ticks with none skipped and none handled twice.
Nothing depends on wall-clock time, so late-arriving files are never missed.

The per-drop state lives in the output store (`sensor_state/lab_drop_sensor/<digest>.json.gz`,
content-addressed, written before the cursor moves); the Dagster cursor only names it. Dagster
keeps the cursor of every tick, so a cursor carrying 10,000 entries would be stored again every
30 seconds. A missing state file is not fatal: every drop is validated again, Dagster's run
keys stop duplicate runs, and quarantine records with the same manifest are not rewritten.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest.drops import SampleDrop
from bioscan_assets.core.ingest.validation import (
    MANIFEST_NAME,
    check_drop,
    sample_id_problem,
    tenant_problem,
)
from bioscan_assets.core.layout import quarantine_record
from bioscan_assets.core.storage import Store

STATE_DIR = "sensor_state/lab_drop_sensor"
QUARANTINE_DIR = "quarantine"
# Folders whose names break the contract are quarantined here, under a hash of the name:
# "_" cannot start a tenant, so this never clashes with a real tenant's records.
INVALID_NAME_DIR = "quarantine/_invalid"

DEFAULT_MAX_DROPS = 500
DEFAULT_TIME_BUDGET_S = 20.0  # Dagster's default sensor timeout is 60 s
DEFAULT_CHECKSUM_MAX_BYTES = 1 << 30

OK = "ok"  # valid; a run was requested for this manifest
QUARANTINED = "q"  # invalid drop; record written
BAD_NAME = "n"  # folder names break the contract; record written

STATE_VERSION = 1


def _short(text: str, nbytes: int = 6) -> str:
    digest = hashlib.blake2b(text.encode(), digest_size=nbytes).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Entry:
    """What was decided for one drop: fingerprint hash, manifest sha256 prefix, status."""

    fp: str
    manifest: str
    status: str

    def pack(self) -> str:
        return f"{self.fp} {self.manifest} {self.status}"

    @classmethod
    def unpack(cls, text: str) -> Entry:
        fp, manifest, status = text.split(" ")
        return cls(fp, manifest, status)


@dataclass
class ScanState:
    """Per-drop decisions, keyed by the folder `<tenant>/<sample_id>` as listed."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc = {"v": STATE_VERSION, "drops": {k: e.pack() for k, e in sorted(self.entries.items())}}
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        return gzip.compress(text.encode(), compresslevel=6, mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> ScanState:
        doc = json.loads(gzip.decompress(data))
        if doc.get("v") != STATE_VERSION:
            raise ValueError(f"unknown sensor state version {doc.get('v')!r}")
        return cls({k: Entry.unpack(v) for k, v in doc["drops"].items()})


@dataclass(frozen=True)
class AcceptedDrop:
    drop: SampleDrop
    checksums_verified: bool
    released: bool  # it was quarantined before; its record has been removed


@dataclass(frozen=True)
class QuarantinedDrop:
    folder: str  # `<tenant>/<sample_id>` as listed
    record: str  # path of the quarantine record in the output store
    reason: str  # "<file> field <name>: <problem>" or "<file> line L column C: ..."
    manifest_sha256: str


@dataclass
class ScanResult:
    accepted: list[AcceptedDrop]  # new or changed valid drops: request a run for each
    quarantined: list[QuarantinedDrop]  # newly quarantined this tick (record written)
    state: ScanState
    listed: int  # manifests in the landing area
    processed: int  # manifests validated this tick
    pending: int  # new or changed manifests left for later ticks
    vanished: int = 0  # listed, then gone before they could be read (retried if back)
    errors: list[str] = field(default_factory=list)  # storage errors; retried next tick


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def invalid_name_record(folder: str) -> str:
    return f"{INVALID_NAME_DIR}/{hashlib.sha256(folder.encode()).hexdigest()[:16]}.json"


def list_manifests(landing: Store) -> list[tuple[str, str, str]]:
    """(tenant, sample_id, fingerprint) of every `*/*/sample.json`, sorted.

    Hidden folders (a leading `.`) are staging areas of upload tools and are skipped.
    """
    out = []
    for stat in landing.find_named(MANIFEST_NAME, 2):
        tenant, sample_id, _ = stat.rel.split("/")
        if tenant.startswith(".") or sample_id.startswith("."):
            continue
        out.append((tenant, sample_id, stat.fingerprint))
    return out


def _read_record(output: Store, rel: str) -> dict | None:
    try:
        return json.loads(output.read_bytes(rel))
    except (FileNotFoundError, ValueError):
        return None


def _write_record(output: Store, rel: str, record: dict) -> None:
    output.write_bytes(rel, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def scan_landing(
    landing: Store,
    output: Store,
    state: ScanState,
    *,
    max_drops: int = DEFAULT_MAX_DROPS,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    checksum_max_bytes: int | None = DEFAULT_CHECKSUM_MAX_BYTES,
    sensor_name: str = "lab_drop_sensor",
    clock: Callable[[], float] = time.monotonic,
) -> ScanResult:
    """One tick: validate new or changed drops within the budget; return decisions and state.

    Quarantine records are written (once per manifest) and released here; run requests and
    partitions are left to the caller. The returned state must be persisted (`save_state`)
    before the caller commits its cursor.
    """
    started = clock()
    listing = list_manifests(landing)
    new_entries: dict[str, Entry] = {}
    todo: list[tuple[str, str, str, str]] = []
    for tenant, sample_id, fingerprint in listing:
        folder = f"{tenant}/{sample_id}"
        fp = _short(fingerprint)
        prev = state.entries.get(folder)
        if prev is not None and prev.fp == fp:
            new_entries[folder] = prev
        else:
            todo.append((folder, tenant, sample_id, fp))

    result = ScanResult([], [], ScanState(new_entries), len(listing), 0, 0)
    existing_records: set[str] | None = None
    for index, (folder, tenant, sample_id, fp) in enumerate(todo):
        if result.processed >= max_drops or clock() - started >= time_budget_s:
            result.pending = len(todo) - index
            for left_folder, *_ in todo[index:]:
                if left_folder in state.entries:  # keep what we knew; it is retried next tick
                    new_entries[left_folder] = state.entries[left_folder]
            break
        if existing_records is None:  # one listing per busy tick, not one request per drop
            existing_records = set(output.list_files(QUARANTINE_DIR))
        result.processed += 1
        prev = state.entries.get(folder)

        if tenant_problem(tenant) or sample_id_problem(sample_id):
            entry = _handle_bad_name(
                output, folder, tenant, sample_id, fp, prev, existing_records, sensor_name
            )
            if entry[1] is not None:
                result.quarantined.append(entry[1])
            new_entries[folder] = entry[0]
            continue

        location = f"{folder}/{MANIFEST_NAME}"
        record_rel = quarantine_record(tenant, sample_id)
        manifest_sha = ""
        try:
            raw = landing.read_bytes(location)
            manifest_sha = hashlib.sha256(raw).hexdigest()
            drop, verified = check_drop(
                landing,
                tenant,
                sample_id,
                checksum_max_bytes=checksum_max_bytes,
                manifest=raw,
            )
        except FileNotFoundError:
            # Removed since the listing: not recorded, so it is checked again if it comes back.
            result.vanished += 1
            continue
        except (DropError, PermissionError) as exc:
            error = exc if isinstance(exc, DropError) else _unreadable(landing, folder, exc)
            new_entries[folder] = Entry(fp, manifest_sha[:16] or "-", QUARANTINED)
            same = (
                prev is not None
                and prev.status == QUARANTINED
                and prev.manifest == (manifest_sha[:16] or "-")
                and record_rel in existing_records
            )
            if not same and record_rel in existing_records:
                old = _read_record(output, record_rel) or {}
                same = old.get("manifest_sha256") == manifest_sha and old.get("reason") == str(
                    error
                )
            if same:
                continue  # recorded once already; a touched manifest does not re-report
            _write_record(
                output,
                record_rel,
                {
                    "status": "quarantined",
                    "tenant": tenant,
                    "sample_id": sample_id,
                    "partition": f"{tenant}/{sample_id}",
                    "reason": str(error),
                    "location": error.location,
                    "problem": error.reason,
                    "manifest_sha256": manifest_sha,
                    "quarantined_at": now_iso(),
                    "sensor": sensor_name,
                },
            )
            existing_records.add(record_rel)
            result.quarantined.append(QuarantinedDrop(folder, record_rel, str(error), manifest_sha))
            continue
        except OSError as exc:
            # Storage trouble (network, server error) is not the lab's fault: keep what we knew
            # and try again next tick instead of quarantining.
            result.errors.append(f"{folder}: {type(exc).__name__}: {exc}")
            if prev is not None:
                new_entries[folder] = prev
            continue

        released = record_rel in existing_records
        if released:
            output.delete(record_rel)
            existing_records.discard(record_rel)
        new_entries[folder] = Entry(fp, manifest_sha[:16], OK)
        if prev is not None and prev.status == OK and prev.manifest == manifest_sha[:16]:
            continue  # same manifest rewritten or touched: its run was requested already
        result.accepted.append(AcceptedDrop(drop, verified, released))
    return result


def _unreadable(landing: Store, folder: str, exc: PermissionError) -> DropError:
    name = str(exc.filename or "")
    root = landing.local_path()
    if root is not None and name.startswith(str(root) + "/"):
        name = name[len(str(root)) + 1 :]
    return DropError(name or folder, "permission denied: the file cannot be read")


def _handle_bad_name(
    output: Store,
    folder: str,
    tenant: str,
    sample_id: str,
    fp: str,
    prev: Entry | None,
    existing_records: set[str],
    sensor_name: str,
) -> tuple[Entry, QuarantinedDrop | None]:
    """Record a folder whose names break the contract once, under a safe name."""
    entry = Entry(fp, "-", BAD_NAME)
    record_rel = invalid_name_record(folder)
    if (prev is not None and prev.status == BAD_NAME) or record_rel in existing_records:
        return entry, None
    problem = tenant_problem(tenant)
    which = "tenant" if problem else "sample"
    problem = problem or sample_id_problem(sample_id)
    reason = f"{folder}/{MANIFEST_NAME}: {which} folder name {problem}"
    _write_record(
        output,
        record_rel,
        {
            "status": "quarantined",
            "folder": folder,
            "reason": reason,
            "location": folder,
            "problem": f"{which} folder name {problem}",
            "quarantined_at": now_iso(),
            "sensor": sensor_name,
        },
    )
    existing_records.add(record_rel)
    return entry, QuarantinedDrop(folder, record_rel, reason, "")


# --- state persistence -------------------------------------------------------------------


def parse_cursor(cursor: str | None) -> dict:
    if not cursor:
        return {}
    try:
        doc = json.loads(cursor)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def load_state(output: Store, cursor: str | None) -> tuple[ScanState, str | None]:
    """The state a cursor names, and a warning when it had to start from scratch."""
    doc = parse_cursor(cursor)
    if cursor and not doc:
        return ScanState(), f"cursor {cursor[:40]!r} is not ours; every drop is checked again"
    digest = doc.get("state")
    if not digest:
        return ScanState(), None
    try:
        state = ScanState.from_bytes(output.read_bytes(f"{STATE_DIR}/{digest}.json.gz"))
    except FileNotFoundError:
        return ScanState(), (
            f"sensor state {digest} is missing from {output.url(STATE_DIR)}; every drop is "
            "checked again (run keys prevent duplicate runs)"
        )
    except (ValueError, OSError) as exc:
        return (
            ScanState(),
            f"sensor state {digest} is unreadable ({exc}); every drop is checked again",
        )
    return state, None


def save_state(output: Store, state: ScanState, previous_cursor: str | None) -> str:
    """Persist `state` (content-addressed) and return the digest naming it.

    Keeps the previous tick's file as well, in case Dagster did not commit the last cursor,
    and removes older ones.
    """
    data = state.to_bytes()
    digest = hashlib.sha256(data).hexdigest()[:32]
    previous = parse_cursor(previous_cursor).get("state")
    rel = f"{STATE_DIR}/{digest}.json.gz"
    if not output.exists(rel):  # also after a wiped store, even when the digest is unchanged
        output.write_bytes(rel, data)
    if digest == previous:
        return digest
    keep = {rel, f"{STATE_DIR}/{previous}.json.gz"}
    for old in output.list_files(STATE_DIR):
        if old not in keep:
            with contextlib.suppress(OSError):
                output.delete(old)
    return digest


def make_cursor(digest: str, result: ScanResult) -> str:
    """Small JSON cursor: the state's digest plus counts a person can read in the UI."""
    return json.dumps(
        {
            "v": STATE_VERSION,
            "state": digest,
            "drops": result.listed,
            "pending": result.pending,
        },
        separators=(",", ":"),
    )
