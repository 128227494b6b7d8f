"""PyTorch `.bin` weights (pickled state dicts), read with torch one tensor at a time.

torch is optional: only `.bin` checkpoints need it, and without it the error says how to get it
or how to convert the checkpoint to safetensors. Files are memory-mapped; after each tensor is
copied out, its pages are handed back to the kernel (`MADV_PAGEOUT`, which never loses data),
so a 10 GB shard does not stay resident on top of the weights read from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from bioscan_assets.core.model.hf_format import CheckpointError

TORCH_HINT = (
    "reading it needs torch (PyTorch .bin weights), which is not installed: pip install torch "
    "(it is in the 'test' extra too), or convert the checkpoint to safetensors once, on a "
    "machine that has torch: bioscan model convert SRC DEST"
)
_MADV_WILLNEED, _MADV_PAGEOUT = 3, 21  # PAGEOUT: Linux >= 5.4; elsewhere madvise just fails


def _torch(label: str) -> Any:
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{label}: {TORCH_HINT}") from None
    return torch


@contextlib.contextmanager
def open_state_dict(path: Path, label: str) -> Iterator[dict[str, Any]]:
    """The file's state dict, tensors still on disk (memory-mapped) where the format allows."""
    torch = _torch(label)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "zipfile" not in str(error) and "_use_new_zipfile_serialization" not in str(error):
            raise CheckpointError(
                f"{label}: not a readable PyTorch checkpoint (truncated or corrupt?): {error}"
            ) from None
        state = _load_legacy(torch, path, label)  # pre-1.6 format: cannot be mapped
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise CheckpointError(f"{label}: not a readable PyTorch checkpoint: {error}") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{label}: not a state dict (name -> tensor)")
    try:
        yield state
    finally:
        state.clear()


def _load_legacy(torch: Any, path: Path, label: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise CheckpointError(f"{label}: not a readable PyTorch checkpoint: {error}") from None


def describe(tensor: Any) -> tuple[np.dtype, tuple[int, ...]]:
    """dtype and shape without reading the data."""
    return numpy_dtype(tensor.dtype), tuple(tensor.shape)


def numpy_dtype(torch_dtype: Any) -> np.dtype:
    name = str(torch_dtype).removeprefix("torch.")
    if name == "bfloat16":
        return np.dtype(ml_dtypes.bfloat16)
    try:
        return np.dtype(name)
    except TypeError:
        raise CheckpointError(f"tensor dtype {name} has no numpy equivalent") from None


def as_numpy(tensor: Any) -> np.ndarray:
    """A numpy view of the tensor (no copy); copy it before the file is closed."""
    torch = _torch("tensor")
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def prefetch(tensor: Any) -> None:
    """Ask the kernel to start reading the tensor's pages now."""
    _advise(tensor, _MADV_WILLNEED, outward=True)


def release(tensor: Any) -> None:
    """Ask the kernel to reclaim the tensor's whole pages (only clean file pages go)."""
    _advise(tensor, _MADV_PAGEOUT, outward=False)


def _advise(tensor: Any, advice: int, outward: bool) -> None:
    """madvise over the tensor's bytes: pages it touches (outward) or only pages it fills."""
    if not tensor.is_contiguous() or _LIBC is None:
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    page = mmap.PAGESIZE
    if outward:
        low, high = start // page * page, -(-end // page) * page
    else:
        low, high = -(-start // page) * page, end // page * page
    if high > low:
        with contextlib.suppress(OSError, AttributeError, ctypes.ArgumentError):
            _LIBC.madvise(low, high - low, advice)


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()
