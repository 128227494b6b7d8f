"""The lab-drop contract (DESIGN.md, "Lab drop") as checks with errors that name file and field.

`parse_sample_json` checks the manifest alone (schema, names, paths); `validate_drop` checks a
drop in the landing area against it (folder names, files present inside the folder, sha256).
Errors are `DropError(location, reason)`; `location` is `<tenant>/<sample_id>/sample.json`
followed by `line L column C` or `field <name>`, so a lab can find and fix the exact spot.
Messages never quote file contents beyond the offending name or value.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest.drops import DropFile, SampleDrop
from bioscan_assets.core.ingest.formats import detect_format
from bioscan_assets.core.layout import SAMPLE_ID_RE, TENANT_RE
from bioscan_assets.core.storage import Store

MANIFEST_NAME = "sample.json"
# A manifest listing thousands of files stays far below this; anything bigger is a mistake.
MAX_MANIFEST_BYTES = 8 << 20

_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_RESERVED_KEYS = ("tenant", "sample_id", "files", "taxonomy")
_FILE_KEYS = ("path", "sha256", "reference")
_NUMERIC_METADATA = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0), "depth_m": None}
_MAX_SHOWN = 80


def _show(value: Any) -> str:
    """A short, printable rendering of a value for an error message."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def tenant_problem(tenant: str) -> str | None:
    """Why `tenant` is not a valid tenant name, or None."""
    if not TENANT_RE.fullmatch(tenant):
        return f"{_show(tenant)} does not match {TENANT_RE.pattern}"
    return None


def sample_id_problem(sample_id: str) -> str | None:
    """Why `sample_id` is not a valid sample id, or None."""
    if not SAMPLE_ID_RE.fullmatch(sample_id):
        return f"{_show(sample_id)} does not match {SAMPLE_ID_RE.pattern}"
    if ".." in sample_id:
        return f"{_show(sample_id)} must not contain '..'"
    return None


def relative_path_problem(path: str) -> str | None:
    """Why `path` is not a plain relative path inside the sample folder, or None."""
    if not path:
        return "must not be empty"
    if "\\" in path:
        return f"{_show(path)} contains a backslash; use '/' between folders"
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        return f"{_show(path)} is absolute; paths must be relative to the sample folder"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return f"{_show(path)} contains control characters"
    parts = path.split("/")
    if ".." in parts:
        return f"{_show(path)} contains '..'; files must stay inside the sample folder"
    if any(part in ("", ".") for part in parts):
        return f"{_show(path)} has an empty or '.' component; write it as a plain relative path"
    if path == MANIFEST_NAME:
        return f"{_show(path)} is the manifest itself, not a sequence file"
    return None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(raw: bytes, location: str) -> Any:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DropError(f"{location} byte {exc.start}", "sample.json is not UTF-8 text") from None
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise DropError(
            f"{location} line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}"
        ) from None
    except _DuplicateKey as exc:
        raise DropError(
            f"{location} field {exc.key}", f"key {_show(exc.key)} appears more than once"
        ) from None
    except ValueError as exc:  # NaN / Infinity
        raise DropError(location, f"malformed JSON: {exc}") from None


def _field(location: str, name: str) -> str:
    return f"{location} field {name}"


def _require_str(doc: dict[str, Any], key: str, location: str, *, prefix: str = "") -> str:
    name = f"{prefix}{key}"
    if key not in doc:
        raise DropError(_field(location, name), "required field is missing")
    value = doc[key]
    if not isinstance(value, str):
        raise DropError(_field(location, name), f"must be a string, got {_type_name(value)}")
    return value


def _check_path(value: str, location: str, name: str) -> str:
    problem = relative_path_problem(value)
    if problem:
        raise DropError(_field(location, name), problem)
    return value


def _check_sha256(value: str, location: str, name: str) -> str:
    if not _SHA256_RE.fullmatch(value):
        raise DropError(
            _field(location, name), f"{_show(value)} is not a sha256 (64 hexadecimal digits)"
        )
    return value.lower()


def _parse_file(entry: Any, index: int, location: str) -> DropFile:
    name = f"files[{index}]"
    if not isinstance(entry, dict):
        raise DropError(
            _field(location, name),
            f'must be an object {{"path": ..., "sha256": ...}}, got {_type_name(entry)}',
        )
    unknown = sorted(set(entry) - set(_FILE_KEYS))
    if unknown:
        raise DropError(
            _field(location, f"{name}.{unknown[0]}"),
            f"unknown key; a file entry has {', '.join(_FILE_KEYS)}",
        )
    path = _check_path(
        _require_str(entry, "path", location, prefix=f"{name}."), location, f"{name}.path"
    )
    sha = _check_sha256(
        _require_str(entry, "sha256", location, prefix=f"{name}."), location, f"{name}.sha256"
    )
    try:
        fmt = detect_format(path)
    except ValueError as exc:
        raise DropError(_field(location, f"{name}.path"), str(exc)) from None
    reference = reference_sha = None
    if entry.get("reference") is not None:
        ref = entry["reference"]
        ref_name = f"{name}.reference"
        if fmt != "cram":
            raise DropError(
                _field(location, ref_name), f"only CRAM files take a reference, {path} is {fmt}"
            )
        if not isinstance(ref, dict):
            raise DropError(
                _field(location, ref_name),
                f'must be an object {{"path": ..., "sha256": ...}}, got {_type_name(ref)}',
            )
        unknown = sorted(set(ref) - {"path", "sha256"})
        if unknown:
            raise DropError(
                _field(location, f"{ref_name}.{unknown[0]}"),
                "unknown key; a reference has path, sha256",
            )
        reference = _check_path(
            _require_str(ref, "path", location, prefix=f"{ref_name}."),
            location,
            f"{ref_name}.path",
        )
        reference_sha = _check_sha256(
            _require_str(ref, "sha256", location, prefix=f"{ref_name}."),
            location,
            f"{ref_name}.sha256",
        )
        try:
            ref_format = detect_format(reference)
        except ValueError:
            ref_format = None
        if ref_format != "fasta":
            raise DropError(
                _field(location, f"{ref_name}.path"),
                f"{_show(reference)}: a CRAM reference must be a FASTA file (.fa/.fasta/.fna)",
            )
    return DropFile(
        path=path, sha256=sha, format=fmt, reference=reference, reference_sha256=reference_sha
    )


def _check_metadata(doc: dict[str, Any], location: str) -> None:
    """Type-check the optional keys the pipeline reads; other extra keys pass through."""
    for key, bounds in _NUMERIC_METADATA.items():
        value = doc.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DropError(_field(location, key), f"must be a number, got {_type_name(value)}")
        if bounds and not bounds[0] <= value <= bounds[1]:
            raise DropError(
                _field(location, key), f"{value} is outside [{bounds[0]:g}, {bounds[1]:g}]"
            )
    collected = doc.get("collected_at")
    if collected is not None and not isinstance(collected, str):
        raise DropError(
            _field(location, "collected_at"),
            f"must be an ISO 8601 string, got {_type_name(collected)}",
        )


def parse_sample_json(raw: bytes, *, location: str) -> SampleDrop:
    """Check a sample.json on its own and return the drop it describes.

    `location` names the manifest in errors, e.g. `acme-lab/S001/sample.json`.
    """
    manifest_sha256 = hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_MANIFEST_BYTES:
        raise DropError(
            location, f"sample.json is {len(raw)} bytes; the limit is {MAX_MANIFEST_BYTES}"
        )
    if not raw.strip():
        raise DropError(location, "sample.json is empty")
    doc = _load_json(raw, location)
    if not isinstance(doc, dict):
        raise DropError(location, f"must be a JSON object, got {_type_name(doc)}")

    tenant = _require_str(doc, "tenant", location)
    problem = tenant_problem(tenant)
    if problem:
        raise DropError(_field(location, "tenant"), problem)
    sample_id = _require_str(doc, "sample_id", location)
    problem = sample_id_problem(sample_id)
    if problem:
        raise DropError(_field(location, "sample_id"), problem)

    if "files" not in doc:
        raise DropError(_field(location, "files"), "required field is missing")
    entries = doc["files"]
    if not isinstance(entries, list):
        raise DropError(_field(location, "files"), f"must be an array, got {_type_name(entries)}")
    if not entries:
        raise DropError(_field(location, "files"), "lists no sequence files")
    files = [_parse_file(entry, i, location) for i, entry in enumerate(entries)]
    first_index: dict[str, int] = {}
    for i, item in enumerate(files):
        if item.path in first_index:
            raise DropError(
                _field(location, f"files[{i}].path"),
                f"{_show(item.path)} is already listed as files[{first_index[item.path]}]",
            )
        first_index[item.path] = i

    taxonomy = doc.get("taxonomy")
    if taxonomy is not None:
        if not isinstance(taxonomy, str):
            raise DropError(
                _field(location, "taxonomy"), f"must be a string path, got {_type_name(taxonomy)}"
            )
        _check_path(taxonomy, location, "taxonomy")
        if taxonomy in first_index:
            raise DropError(
                _field(location, "taxonomy"), f"{_show(taxonomy)} is also listed as a sequence file"
            )

    _check_metadata(doc, location)
    metadata = {key: value for key, value in doc.items() if key not in _RESERVED_KEYS}
    return SampleDrop(
        tenant=tenant,
        sample_id=sample_id,
        files=tuple(files),
        taxonomy=taxonomy,
        metadata=metadata,
        manifest_sha256=manifest_sha256,
    )


def _inside(folder_real: str, path: Path) -> bool:
    real = os.path.realpath(path)
    return real == folder_real or real.startswith(folder_real + os.sep)


def _local_check(folder: Path, rel: str, where: str, what: str) -> int:
    """Size of a listed local file, after refusing symlinks out of the folder and non-files."""
    path = folder / rel
    folder_real = os.path.realpath(folder)
    # Check every component, so a symlinked sub-folder pointing outside is caught too.
    for depth in range(1, len(rel.split("/")) + 1):
        part = folder.joinpath(*rel.split("/")[:depth])
        if part.is_symlink() and not _inside(folder_real, part):
            raise DropError(
                where, f"{what} {_show(rel)} is a symlink leading outside the sample folder"
            )
    if not path.exists():
        if path.is_symlink():
            raise DropError(where, f"{what} {_show(rel)} is a broken symlink")
        raise DropError(where, f"{what} {_show(rel)} is listed but missing from the sample folder")
    if not path.is_file():
        raise DropError(where, f"{what} {_show(rel)} is not a regular file")
    return path.stat().st_size


def validate_drop(
    landing: Store,
    tenant: str,
    sample_id: str,
    *,
    verify_checksums: bool = True,
    checksum_max_bytes: int | None = None,
    manifest: bytes | None = None,
) -> SampleDrop:
    """Check the drop `<landing>/<tenant>/<sample_id>/` against the contract (see `check_drop`)."""
    drop, _verified = check_drop(
        landing,
        tenant,
        sample_id,
        verify_checksums=verify_checksums,
        checksum_max_bytes=checksum_max_bytes,
        manifest=manifest,
    )
    return drop


def check_drop(
    landing: Store,
    tenant: str,
    sample_id: str,
    *,
    verify_checksums: bool = True,
    checksum_max_bytes: int | None = None,
    manifest: bytes | None = None,
) -> tuple[SampleDrop, bool]:
    """Check a drop; also say whether its checksums were verified.

    Every listed file must exist inside the folder (no symlink out of it), be non-empty and,
    when checksums are verified, match its sha256. `checksum_max_bytes` skips hashing for
    drops whose listed files are larger in total (a sensor tick cannot hash terabytes;
    `raw_sequences` re-verifies while copying). `manifest` passes sample.json bytes already
    read, so the caller's manifest hash is exactly what was validated.
    """
    folder_rel = f"{tenant}/{sample_id}"
    problem = tenant_problem(tenant)
    if problem:
        raise DropError(folder_rel, f"tenant folder name {problem}")
    problem = sample_id_problem(sample_id)
    if problem:
        raise DropError(folder_rel, f"sample folder name {problem}")
    location = f"{folder_rel}/{MANIFEST_NAME}"

    local_folder = landing.local_path(folder_rel)
    sizes: dict[str, int] = {}
    if local_folder is not None:
        if (
            not (local_folder / MANIFEST_NAME).exists()
            and not (local_folder / MANIFEST_NAME).is_symlink()
        ):
            raise DropError(location, "sample.json is missing")
        _local_check(local_folder, MANIFEST_NAME, location, "manifest")
    else:
        prefix = folder_rel + "/"
        sizes = {
            rel.removeprefix(prefix): size for rel, size in landing.list_sizes(folder_rel).items()
        }
        if MANIFEST_NAME not in sizes:
            raise DropError(location, "sample.json is missing")

    if manifest is None:
        manifest = landing.read_bytes(location)
    drop = parse_sample_json(manifest, location=location)
    if drop.tenant != tenant:
        raise DropError(
            _field(location, "tenant"),
            f"{_show(drop.tenant)} does not match the tenant folder {_show(tenant)}",
        )
    if drop.sample_id != sample_id:
        raise DropError(
            _field(location, "sample_id"),
            f"{_show(drop.sample_id)} does not match the sample folder {_show(sample_id)}",
        )

    checks: list[tuple[str, str | None, str, str]] = []  # rel, sha256, field, what
    for i, item in enumerate(drop.files):
        checks.append((item.path, item.sha256, f"files[{i}]", "file"))
        if item.reference:
            checks.append(
                (item.reference, item.reference_sha256, f"files[{i}].reference", "reference")
            )
    if drop.taxonomy:
        checks.append((drop.taxonomy, None, "taxonomy", "taxonomy file"))

    # Presence first, for every file: a missing file is the likelier mistake and cheaper to report.
    total = 0
    for rel, _expected, name, what in checks:
        where = _field(location, name if name == "taxonomy" else f"{name}.path")
        if local_folder is not None:
            size = _local_check(local_folder, rel, where, what)
        elif rel in sizes:
            size = sizes[rel]
        else:
            raise DropError(
                where, f"{what} {_show(rel)} is listed but missing from the sample folder"
            )
        if size == 0:
            raise DropError(where, f"{what} {_show(rel)} is empty (0 bytes)")
        total += size

    if not verify_checksums or (checksum_max_bytes is not None and total > checksum_max_bytes):
        return drop, False
    hashed: dict[str, str] = {}
    for rel, expected, name, _what in checks:
        if not expected:
            continue
        if rel not in hashed:
            hashed[rel], _ = landing.sha256(f"{folder_rel}/{rel}")
        if hashed[rel] != expected:
            raise DropError(
                _field(location, f"{name}.sha256"),
                f"sha256 of {_show(rel)} is {hashed[rel]}, sample.json says {expected}",
            )
    return drop, True
