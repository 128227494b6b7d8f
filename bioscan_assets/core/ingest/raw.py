"""Immutable, content-addressed copies of a drop's files, so cleaning the landing area loses nothing.

Each file is streamed from the landing store once: hashed while copied, refused when its sha256
is not the one sample.json lists, and parsed (record count) before it is published at
`raw/sha256/<ab>/<sha256>`. A blob that already exists is never rewritten. The raw manifest,
written last, keeps the exact sample.json text, so later steps work from `raw/` alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest import readers
from bioscan_assets.core.ingest.drops import SampleDrop
from bioscan_assets.core.layout import raw_blob, raw_manifest
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import parse_taxonomy

RAW_FORMAT_VERSION = 1
_CHUNK = 1 << 20


class _Staged:
    """A verified copy waiting to be published as its blob."""

    def __init__(self, store: Store, sha256: str, size: int, local: Path, staged: Path | None):
        self.store = store
        self.sha256 = sha256
        self.size = size
        self.blob = raw_blob(sha256)
        self.local = local  # readable on this machine until the copy is done
        self._staged = staged  # None when the blob already exists

    @property
    def new(self) -> bool:
        return self._staged is not None

    def publish(self) -> None:
        if self._staged is None:
            return
        target = self.store.local_path(self.blob)
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._staged, target)
        else:
            self.store.put_file(self._staged, self.blob)


def _staging_dir(store: Store, tmp: str) -> Path:
    """Where a copy is written before it is published: beside the blobs for a local store (so
    publishing is a rename), a temp folder otherwise."""
    local = store.local_path("raw/sha256/.staging")
    if local is None:
        return Path(tmp)
    local.mkdir(parents=True, exist_ok=True)
    return local


def _stage(
    stack: contextlib.ExitStack,
    landing: Store,
    store: Store,
    src: str,
    *,
    name: str,
    expected: str | None,
) -> _Staged:
    """Hash `src` while copying it to a staging file that `stack` removes unless published.

    A blob that exists already is not rewritten, but the landing file is still hashed: its
    bytes must be what sample.json promises.
    """
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bioscan-raw-"))
    known = expected is not None and store.exists(raw_blob(expected))
    staged: Path | None = None
    try:
        source = landing.open_read(src)
    except FileNotFoundError:
        raise DropError(name, "listed in sample.json but missing from the landing area") from None
    digest = hashlib.sha256()
    size = 0
    with contextlib.ExitStack() as local_stack:
        local_stack.enter_context(source)
        out = None
        if not known:
            fd, staged_name = tempfile.mkstemp(dir=_staging_dir(store, tmp), suffix=".tmp")
            staged = Path(staged_name)
            stack.callback(staged.unlink, missing_ok=True)
            out = local_stack.enter_context(os.fdopen(fd, "wb"))
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    sha = digest.hexdigest()
    if expected is not None and sha != expected:
        raise DropError(
            name,
            f"sha256 is {sha} but sample.json lists {expected}: the file changed after the "
            "drop was written, or was corrupted in transfer",
        )
    if known or store.exists(raw_blob(sha)):
        return _Staged(store, sha, size, stack.enter_context(store.local_copy(raw_blob(sha))), None)
    assert staged is not None
    return _Staged(store, sha, size, staged, staged)


def copy_drop(
    landing: Store,
    store: Store,
    drop: SampleDrop,
    sample_json: bytes,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Copy every file a validated drop lists into `raw/` and write its raw manifest.

    Every file is hashed and parsed before any is published, so a drop with one bad file
    leaves nothing behind. `sample_json` must be the exact bytes `drop` was parsed from.
    Returns the manifest.
    """
    if hashlib.sha256(sample_json).hexdigest() != drop.manifest_sha256:
        raise ValueError("sample_json bytes are not the ones the drop was parsed from")
    folder = f"{drop.tenant}/{drop.sample_id}"
    references: dict[str, dict[str, Any]] = {}
    files: list[dict[str, Any]] = []
    taxonomy: dict[str, Any] | None = None
    with contextlib.ExitStack() as stack:
        staged: list[_Staged] = []
        if drop.taxonomy:  # small and often hand-edited: check it before copying reads
            copied = _stage(
                stack,
                landing,
                store,
                f"{folder}/{drop.taxonomy}",
                name=drop.taxonomy,
                expected=None,
            )
            rows = len(parse_taxonomy(copied.local.read_bytes(), name=drop.taxonomy))
            taxonomy = {
                "path": drop.taxonomy,
                "size": copied.size,
                "sha256": copied.sha256,
                "rows": rows,
                "blob": copied.blob,
            }
            staged.append(copied)

        reference_paths: dict[str, Path] = {}
        for item in drop.files:
            if not item.reference or item.reference in references:
                continue
            copied = _stage(
                stack,
                landing,
                store,
                f"{folder}/{item.reference}",
                name=item.reference,
                expected=item.reference_sha256,
            )
            references[item.reference] = {
                "path": item.reference,
                "size": copied.size,
                "sha256": copied.sha256,
                "blob": copied.blob,
            }
            reference_paths[item.reference] = stack.enter_context(
                readers.indexed_reference(copied.local, name=item.reference)
            )
            staged.append(copied)

        for item in drop.files:
            copied = _stage(
                stack, landing, store, f"{folder}/{item.path}", name=item.path, expected=item.sha256
            )
            records, bases = readers.count_records(
                copied.local,
                item.format,
                name=item.path,
                reference=reference_paths.get(item.reference) if item.reference else None,
            )
            entry = {
                "path": item.path,
                "format": item.format,
                "size": copied.size,
                "sha256": copied.sha256,
                "records": records,
                "bases": bases,
                "blob": copied.blob,
            }
            if item.reference:
                entry["reference"] = item.reference
            files.append(entry)
            staged.append(copied)
            if progress:
                state = "new" if copied.new else "already stored"
                progress(f"{item.path}: {records} records, {copied.size} bytes, {state}")

        for copied in staged:
            copied.publish()

    manifest = {
        "format_version": RAW_FORMAT_VERSION,
        "tenant": drop.tenant,
        "sample_id": drop.sample_id,
        "manifest_sha256": drop.manifest_sha256,
        "sample_json": sample_json.decode("utf-8"),
        "files": files,
        "references": list(references.values()),
        "taxonomy": taxonomy,
    }
    store.write_bytes(
        raw_manifest(drop.tenant, drop.sample_id),
        (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(),
    )
    return manifest


def read_raw_manifest(store: Store, tenant: str, sample_id: str) -> dict:
    """A sample's raw manifest; FileNotFoundError when raw_sequences has not run for it."""
    rel = raw_manifest(tenant, sample_id)
    try:
        data = store.read_bytes(rel)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no raw manifest at {store.url(rel)}: materialise raw_sequences for partition "
            f"{tenant}/{sample_id} first"
        ) from None
    manifest = json.loads(data)
    text = manifest["sample_json"].encode("utf-8")
    if hashlib.sha256(text).hexdigest() != manifest["manifest_sha256"]:
        raise ValueError(f"{store.url(rel)}: the stored sample.json does not match its sha256")
    return manifest


def sample_json_bytes(manifest: dict) -> bytes:
    """The exact sample.json bytes a raw manifest keeps."""
    return manifest["sample_json"].encode("utf-8")
