"""One file API over a local directory or a `gs://bucket/prefix`, with atomic writes.

Local writes go to a temp file in the target directory and are renamed into place; a GCS
object only becomes visible once its upload completes, which gives the same guarantee.
Paths handed to these methods are relative to the store's root and use `/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 20


def sha256_stream(stream: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _check_relative(rel: str) -> str:
    rel = rel.strip("/")
    if rel and any(part in ("..", ".", "") for part in rel.split("/")):
        raise ValueError(f"path {rel!r} must be relative, without '.', '..' or empty parts")
    return rel


@dataclass(frozen=True)
class FileStat:
    """A file seen in a listing. `fingerprint` changes whenever the file is rewritten.

    Local: size, mtime (ns) and inode; GCS: size and the object generation. Cheap to get in
    bulk, so a sensor can tell changed files from unchanged ones without reading them.
    """

    rel: str
    size: int
    fingerprint: str


_GLOB_SPECIAL = set("*?[]{}\\")


def _local_stat(rel: str, st: os.stat_result) -> FileStat:
    return FileStat(rel, st.st_size, f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")


def _gcs_stat(rel: str, obj: dict) -> FileStat:
    size = int(obj.get("size", 0))
    version = obj.get("generation") or obj.get("md5Hash") or obj.get("etag") or obj.get("updated")
    return FileStat(rel, size, f"{size}:{version}")


class Store:
    """A storage root: a local directory or `gs://bucket/prefix`.

    `credentials` (google.auth) and `project` are what a `gs://` root authenticates with, as
    the Dagster GCS resource hands them over (resources/storage.py); without them gcsfs looks
    for application default credentials itself.
    """

    def __init__(self, root: str, credentials: Any | None = None, project: str | None = None):
        self.root = root.rstrip("/") if root.startswith("gs://") else str(Path(root).absolute())
        self.is_gcs = self.root.startswith("gs://")
        self.credentials, self.project = credentials, project
        self._fs = None

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    @property
    def fs(self):
        """gcsfs filesystem for `gs://` roots (honours STORAGE_EMULATOR_HOST)."""
        if self._fs is None:
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            # The core class never probes the bucket type over gRPC (a 60 s wait against the
            # emulator), whatever the environment said when gcsfs was first imported.
            from gcsfs.core import GCSFileSystem

            # No listings cache: a long-lived sensor process must see new drops every tick.
            kwargs: dict = {"use_listings_cache": False}
            if self.credentials is not None:
                kwargs["token"] = self.credentials
            if self.project:
                kwargs["project"] = self.project
            if os.environ.get("STORAGE_EMULATOR_HOST"):
                kwargs["endpoint_url"] = os.environ["STORAGE_EMULATOR_HOST"]
                kwargs.setdefault("token", "anon")
            self._fs = GCSFileSystem(**kwargs)
        return self._fs

    def url(self, rel: str = "") -> str:
        rel = _check_relative(rel)
        return f"{self.root}/{rel}" if rel else self.root

    def _gcs_key(self, rel: str) -> str:
        return self.url(rel).removeprefix("gs://")

    def child(self, rel: str) -> Store:
        return Store(self.url(rel), self.credentials, self.project)

    def local_path(self, rel: str = "") -> Path | None:
        """The file's path on this machine, or None for GCS."""
        return None if self.is_gcs else Path(self.url(rel))

    # reads
    def exists(self, rel: str) -> bool:
        if self.is_gcs:
            return self.fs.exists(self._gcs_key(rel))
        return Path(self.url(rel)).exists()

    def read_bytes(self, rel: str) -> bytes:
        if self.is_gcs:
            return self.fs.cat_file(self._gcs_key(rel))
        return Path(self.url(rel)).read_bytes()

    def open_read(self, rel: str) -> BinaryIO:
        if self.is_gcs:
            return self.fs.open(self._gcs_key(rel), "rb")
        return open(self.url(rel), "rb")

    def size(self, rel: str) -> int:
        if self.is_gcs:
            return int(self.fs.info(self._gcs_key(rel))["size"])
        return Path(self.url(rel)).stat().st_size

    def sha256(self, rel: str) -> tuple[str, int]:
        with self.open_read(rel) as stream:
            return sha256_stream(stream)

    def list_files(self, prefix: str = "") -> list[str]:
        """All files under `prefix`, relative to the root, sorted."""
        return [st.rel for st in self.list_stats(prefix)]

    def list_sizes(self, prefix: str = "") -> dict[str, int]:
        """Every file under `prefix` with its size, from one listing (one call per 1,000 on GCS)."""
        return {st.rel: st.size for st in self.list_stats(prefix)}

    def list_stats(self, prefix: str = "") -> list[FileStat]:
        """Every file under `prefix` with size and fingerprint, sorted by path."""
        prefix = _check_relative(prefix)
        if self.is_gcs:
            base = self._gcs_key("")
            target = self._gcs_key(prefix)
            found = self.fs.find(target, detail=True) if prefix else self.fs.find(base, detail=True)
            out = []
            for name, obj in found.items():
                rel = name[len(base) :].lstrip("/")
                if prefix and not (rel == prefix or rel.startswith(prefix + "/")):
                    continue  # a sibling sharing the prefix string, e.g. S1 vs S10
                out.append(_gcs_stat(rel, obj))
            return sorted(out, key=lambda st: st.rel)
        top = Path(self.url(prefix))
        root = Path(self.root)
        if top.is_file():
            return [_local_stat(prefix, top.stat())]
        out = []
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                path = Path(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    out.append(_local_stat(path.relative_to(root).as_posix(), path.stat()))
        return sorted(out, key=lambda st: st.rel)

    def find_named(self, name: str, depth: int) -> list[FileStat]:
        """Files called `name` exactly `depth` folders below the root (`*/*/name` for 2), sorted.

        Cheap on large trees: locally it only lists the first `depth` levels; on GCS it asks
        the server to filter with `matchGlob`, so other objects never cross the wire.
        """
        if "/" in name or not name:
            raise ValueError(f"{name!r} must be a plain file name")
        if self.is_gcs:
            return self._gcs_find_named(name, depth)
        out = []
        level = [(Path(self.root), "")]
        for _ in range(depth):
            below = []
            for path, rel in level:
                try:
                    entries = list(os.scandir(path))
                except (FileNotFoundError, NotADirectoryError, PermissionError):
                    continue
                for entry in entries:
                    with contextlib.suppress(OSError):
                        if entry.is_dir():
                            below.append((Path(entry.path), f"{rel}{entry.name}/"))
            level = below
        for path, rel in level:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                st = (path / name).stat()
                if not (path / name).is_dir():
                    out.append(_local_stat(f"{rel}{name}", st))
        return sorted(out, key=lambda st: st.rel)

    def _gcs_find_named(self, name: str, depth: int) -> list[FileStat]:
        bucket, _, key_prefix = self.root.removeprefix("gs://").partition("/")
        key_prefix = f"{key_prefix}/" if key_prefix else ""
        params: dict = {"prefix": key_prefix or None}
        if not (_GLOB_SPECIAL & set(key_prefix + name)):
            params["matchGlob"] = key_prefix + "*/" * depth + name
        out = []
        token = None
        while True:
            page = self.fs.call(
                "GET", "b/{}/o", bucket, json_out=True, maxResults=1000, pageToken=token, **params
            )
            for obj in page.get("items", []):
                rel = obj["name"][len(key_prefix) :]
                parts = rel.split("/")
                if len(parts) == depth + 1 and parts[-1] == name and all(parts):
                    out.append(_gcs_stat(rel, obj))
            token = page.get("nextPageToken")
            if not token:
                break
        return sorted(out, key=lambda st: st.rel)

    def stat(self, rel: str) -> FileStat | None:
        """Size and fingerprint of one file, or None when it does not exist."""
        if self.is_gcs:
            try:
                info = self.fs.info(self._gcs_key(rel))
            except FileNotFoundError:
                return None
            return None if info.get("type") != "file" else _gcs_stat(_check_relative(rel), info)
        path = Path(self.url(rel))
        try:
            return None if path.is_dir() else _local_stat(_check_relative(rel), path.stat())
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def local_copy(self, rel: str) -> Iterator[Path]:
        """A path on this machine holding the file (the file itself when local)."""
        if not self.is_gcs:
            yield Path(self.url(rel))
            return
        with tempfile.TemporaryDirectory(prefix="bioscan-") as tmp:
            target = Path(tmp) / Path(rel).name
            self.fs.get_file(self._gcs_key(rel), str(target))
            yield target

    # writes (atomic)
    def write_bytes(self, rel: str, data: bytes) -> None:
        if self.is_gcs:
            self.fs.pipe_file(self._gcs_key(rel), data)
            return
        target = Path(self.url(rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_file(self, local: Path | str, rel: str) -> None:
        """Publish a finished local file at `rel`, atomically."""
        if self.is_gcs:
            self.fs.put_file(str(local), self._gcs_key(rel))
            return
        target = Path(self.url(rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def delete(self, rel: str) -> None:
        if self.is_gcs:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._gcs_key(rel))
            return
        with contextlib.suppress(FileNotFoundError):
            Path(self.url(rel)).unlink()
