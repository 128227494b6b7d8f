"""The safetensors file format, read and written one tensor at a time.

Not through the `safetensors` library on purpose: it memory-maps the whole file and every page
it touches stays in the process's resident memory until the file is closed, so one 10 GB shard
would cost 10 GB on top of the weights. Here the file is mapped too (a copy from the page cache
is the fastest read), but each tensor's pages are dropped from the mapping once it has been
copied out, so the extra memory stays at one tensor. The header is checked against the file size
first, so a truncated shard is reported by file and tensor before anything is read.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from bioscan_assets.core.model.hf_format import CheckpointError

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {dtype: code for code, dtype in DTYPES.items()}
_MAX_HEADER = 100 << 20  # the limit the reference implementation enforces too


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int  # absolute position of the first byte in the file
    nbytes: int


def dtype_code(dtype: np.dtype) -> str:
    try:
        return _CODES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"dtype {dtype} has no safetensors code") from None


def read_header(path: Path, label: str) -> dict[str, TensorInfo]:
    """Every tensor's dtype, shape and byte range, in file order, checked against the file's
    real size."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{label}: truncated ({size} bytes): no safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_HEADER:
            raise CheckpointError(f"{label}: not a safetensors file (header of {length} bytes)")
        if 8 + length > size:
            raise CheckpointError(
                f"{label}: truncated ({size} bytes) inside its {length}-byte header"
            )
        try:
            doc = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{label}: safetensors header is not JSON ({error})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{label}: safetensors header is not a JSON object")
    start, out = 8 + length, {}
    for name, entry in doc.items():
        if name == "__metadata__":
            continue
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{label}: tensor {name}: bad safetensors entry {entry!r}"
            ) from None
        if end - begin != math.prod(shape) * dtype.itemsize or begin < 0:
            raise CheckpointError(
                f"{label}: tensor {name}: byte range {begin}..{end} does not hold "
                f"{entry['dtype']}{list(shape)}"
            )
        out[name] = TensorInfo(name, dtype, shape, start + begin, end - begin)
    short = [t for t in out.values() if t.offset + t.nbytes > size]
    if short:
        first = min(short, key=lambda t: t.offset)
        raise CheckpointError(
            f"{label}: truncated: tensor {first.name} needs bytes up to "
            f"{first.offset + first.nbytes} but the file ends at {size}"
            + (f" ({len(short) - 1} more tensor(s) beyond the end)" if len(short) > 1 else "")
        )
    return dict(sorted(out.items(), key=lambda item: item[1].offset))  # in file order


class MappedFile:
    """A safetensors file mapped read-only: tensors as zero-copy views, released one by one."""

    def __init__(self, path: Path, header: dict[str, TensorInfo]):
        self.header = header
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)

    def view(self, name: str) -> np.ndarray:
        """The tensor's bytes in the page cache, no copy: copy it before `release`."""
        info = self.header[name]
        flat = np.frombuffer(self._map, info.dtype, math.prod(info.shape), info.offset)
        return flat.reshape(info.shape)

    def _advise(self, name: str, advice: int) -> None:
        info = self.header[name]
        start = info.offset // mmap.PAGESIZE * mmap.PAGESIZE
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self._map.madvise(advice, start, info.offset + info.nbytes - start)

    def prefetch(self, name: str) -> None:
        """Start reading the tensor from disk now (while the previous one is converted)."""
        self._advise(name, mmap.MADV_WILLNEED)

    def release(self, name: str) -> None:
        """Drop the tensor's pages from this mapping (they stay in the page cache, not in RSS)."""
        self._advise(name, mmap.MADV_DONTNEED)

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a view still alive: the GC closes it later
            self._map.close()
        self._file.close()


def write_file(
    path: Path,
    entries: Sequence[tuple[str, np.dtype, tuple[int, ...]]],
    fetch: Callable[[str], np.ndarray],
    metadata: dict[str, str] | None = None,
    done: Callable[[str], None] | None = None,
) -> None:
    """A safetensors file whose tensors come one at a time from `fetch(name)`.

    The header is laid out from `entries` first, so only one tensor is in memory at a time;
    `done(name)` is told when a tensor has been written.
    """
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, dtype, shape in entries:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        header[name] = {
            "dtype": dtype_code(dtype),
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # tensors start 8-byte aligned
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        for name, dtype, shape in entries:
            array = np.ascontiguousarray(fetch(name))
            if array.dtype != np.dtype(dtype) or array.shape != tuple(shape):
                raise ValueError(f"{name}: got {array.dtype}{array.shape}, planned {dtype}{shape}")
            handle.write(memoryview(array.reshape(-1).view(np.uint8)))
            if done is not None:
                done(name)
        handle.flush()
        os.fsync(handle.fileno())
