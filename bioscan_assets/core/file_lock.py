"""An exclusive lock file on local storage, held across processes and threads.

flock locks belong to the open file, so two threads of one process exclude each other too; a
thread lock in front keeps them from spinning on it. The holder writes its pid and host into the
file, so a timeout can say who holds it. Object stores (GCS) have no such lock: callers say what
guards them there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


@contextlib.contextmanager
def exclusive_lock(path: Path, label: str, timeout_s: float) -> Iterator[str]:
    """Hold `path` exclusively (created if missing); yields its path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(str(path), threading.Lock())
    deadline = time.monotonic() + timeout_s
    if not thread_lock.acquire(timeout=timeout_s):
        raise TimeoutError(f"waited {timeout_s:.0f} s for the {label} {path}")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock(fd, path, label, deadline, timeout_s)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            try:
                yield str(path)
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        thread_lock.release()


def _flock(fd: int, path: Path, label: str, deadline: float, timeout_s: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = path.read_text(errors="replace").strip() or "unknown"
                raise TimeoutError(
                    f"waited {timeout_s:.0f} s for the {label} {path} (held by {holder})"
                ) from None
            time.sleep(0.1)
