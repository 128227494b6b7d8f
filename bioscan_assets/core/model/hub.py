"""Checkpoints on the Hugging Face Hub: `org/name[@revision]` -> a verified local snapshot.

Everything goes through `huggingface_hub` and its standard cache, so `HF_HOME` /
`HF_HUB_CACHE`, `HF_HUB_OFFLINE` and the token (`HF_TOKEN` or `hf auth login`) mean what they
mean everywhere else. Only the files one weights layout needs are downloaded (the published NT
repositories also hold TensorFlow and JAX copies). `pull` copies a snapshot to a directory or a
`gs://` mirror after checking each file against the hash the Hub published for it, so an
air-gapped site can be given the model as plain files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioscan_assets.core.model.checkpoint_index import CANDIDATES, pick, read_layout
from bioscan_assets.core.model.hf_format import CheckpointError
from bioscan_assets.core.storage import Store

_REF = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<rev>[A-Za-z0-9._/-]+))?$"
)
_SHA256, _SHA1 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{40}")
SOURCE_FILE = "bioscan_source.json"  # written by `pull` next to the files it copied
TEXT_FILES = ("config.json", "vocab.txt")
_SHARD_PREFIX = {"model.safetensors": "model", "pytorch_model.bin": "pytorch_model"}


class HubUnavailable(CheckpointError):
    """The checkpoint is neither in the local Hub cache nor downloadable right now."""


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str = "main"

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class Snapshot:
    ref: HubRef
    commit: str
    directory: Path
    files: tuple[str, ...]  # what one weights layout needs, as far as the snapshot holds it
    published: dict[str, tuple[str, str]]  # file -> (hash kind, hex) from the Hub's listing


def parse_ref(spec: str) -> HubRef | None:
    """`org/name` or `org/name@revision`, or None for anything else."""
    match = _REF.fullmatch(spec.strip())
    if match is None:
        return None
    return HubRef(match["repo"], match["rev"] or "main")


def _true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    env = os.environ
    return constants.HF_HUB_OFFLINE or _true(
        env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE")
    )


def cache_dir() -> str:
    """The Hub cache as HF_HUB_CACHE / HF_HOME say now, else huggingface_hub's default."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def _wanted(names: list[str]) -> list[str]:
    """The files one weights layout needs, from the repository's root listing."""
    texts = [name for name in TEXT_FILES if name in names]  # the loader names what is missing
    chosen = pick(names)
    if chosen is None:
        return texts
    name, _fmt, is_index = chosen
    wanted = [*texts, name]
    if is_index:
        single = next(c[0] for c in CANDIDATES if c[1] == chosen[1] and not c[2])
        prefix, suffix = _SHARD_PREFIX[single], single.rsplit(".", 1)[-1]
        wanted += [n for n in names if re.fullmatch(rf"{prefix}-.+\.{suffix}", n)]
    return wanted


def _online(ref: HubRef) -> Snapshot:
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi()
    # the branch -> commit mapping is resolved once (and cached in refs/, for offline use later)
    revision = api.resolve_revision(ref.repo_id, revision=ref.revision, cache_dir=cache_dir())
    info = api.model_info(ref.repo_id, revision=revision.resolved, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or [] if "/" not in s.rfilename}
    wanted = _wanted(sorted(siblings))
    directory = snapshot_download(
        ref.repo_id, revision=revision, allow_patterns=wanted, cache_dir=cache_dir()
    )
    published = {}
    for name in wanted:
        sibling = siblings[name]
        if sibling.lfs is not None:
            published[name] = ("sha256", sibling.lfs.sha256)
        elif sibling.blob_id:
            published[name] = ("git-sha1", sibling.blob_id)
    return Snapshot(ref, revision.resolved, Path(directory), tuple(wanted), published)


def _cached(ref: HubRef) -> Snapshot:
    from huggingface_hub import snapshot_download

    directory = Path(
        snapshot_download(
            ref.repo_id,
            revision=ref.revision,
            allow_patterns=["config.json"],
            cache_dir=cache_dir(),
            local_files_only=True,
        )
    )
    wanted = _wanted(sorted(p.name for p in directory.iterdir() if p.is_file()))
    published = {}
    for name in wanted:
        # huggingface_hub stores each file under the hash the Hub served it with (its ETag):
        # sha256 for LFS files, the git blob sha1 for small ones
        path = directory / name
        blob = Path(os.readlink(path)).name if path.is_symlink() else ""
        if _SHA256.fullmatch(blob):
            published[name] = ("sha256", blob)
        elif _SHA1.fullmatch(blob):
            published[name] = ("git-sha1", blob)
    return Snapshot(ref, directory.name, directory, tuple(wanted), published)


def snapshot(ref: HubRef, hint: str = "") -> Snapshot:
    """The checkpoint's files in the local Hub cache, downloading them unless offline."""
    from httpx2 import TransportError  # huggingface_hub's HTTP client: no network, proxy, ...
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    reason = "HF_HUB_OFFLINE is set"
    if not is_offline():
        try:
            return _online(ref)
        except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as error:
            raise CheckpointError(
                f"{ref}: {type(error).__name__} on the Hugging Face Hub (no local directory of "
                f"that name either): {error}"
            ) from None
        except (OSError, TransportError) as error:  # no network or Hub down: try the cache
            reason = f"the Hub could not be reached ({type(error).__name__})"
    try:
        return _cached(ref)
    except (LocalEntryNotFoundError, OSError) as error:
        raise HubUnavailable(
            f"{ref} is not in the local Hugging Face cache ({cache_dir()}) and {reason} "
            f"({type(error).__name__}). {hint or copy_hint(str(ref))}"
        ) from None


def copy_hint(spec: str) -> str:
    return (
        f"To run without the Hub, fetch it on a connected machine with `bioscan model pull "
        f"{spec} --to DIR` (or to gs://bucket/models/NAME), bring DIR here and set "
        "BIOSCAN_MODEL=DIR (a local directory or gs:// URL), or copy that machine's HF_HOME "
        "cache here and set HF_HOME and HF_HUB_OFFLINE=1"
    )


def _hashes(path: Path) -> tuple[str, str, int]:
    """sha256, git blob sha1 and size, in one read."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest(), size


def verify(snap: Snapshot) -> dict[str, dict[str, Any]]:
    """Every snapshot file's sha256 and size, checked against the Hub's published hash."""
    out, bad = {}, []
    for name in sorted(snap.files):
        path = snap.directory / name
        sha256, sha1, size = _hashes(path)
        kind, want = snap.published.get(path.name, ("", ""))
        got = sha256 if kind == "sha256" else sha1
        if kind and got != want:
            bad.append(f"{path.name}: {kind} {got}, the Hub published {want}")
        out[path.name] = {"sha256": sha256, "size": size, "verified": kind or "not published"}
    if bad:
        raise CheckpointError(
            f"{snap.ref} (commit {snap.commit}): {len(bad)} file(s) differ from the Hub: "
            f"{'; '.join(bad)}. Nothing was copied; delete them from {cache_dir()} and pull again"
        )
    return out


def pull(ref: HubRef, destination: str) -> dict[str, Any]:
    """Copy a verified snapshot to a local directory or `gs://` prefix; config.json last, so a
    destination with config.json is complete."""
    snap = snapshot(ref)
    read_layout(snap.files, lambda name: (snap.directory / name).read_text(), str(ref))
    files = verify(snap)
    record = {"repo_id": ref.repo_id, "revision": ref.revision, "commit": snap.commit}
    store = Store(destination)
    order = sorted(files, key=lambda name: (name == "config.json", name in TEXT_FILES, name))
    for name in order:
        if name == "config.json":
            store.write_bytes(
                SOURCE_FILE, json.dumps({**record, "files": files}, indent=1).encode()
            )
        store.put_file(snap.directory / name, name)
    return {**record, "destination": store.root, "files": files}


def read_source(names: set[str], read_text: Any) -> dict[str, Any]:
    """What `pull` recorded about a copied checkpoint (repo, commit), or {}."""
    if SOURCE_FILE not in names:
        return {}
    try:
        doc = json.loads(read_text(SOURCE_FILE))
    except json.JSONDecodeError:
        return {}
    return {k: doc[k] for k in ("repo_id", "revision", "commit") if isinstance(doc.get(k), str)}
