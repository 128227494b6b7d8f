"""A real GCS JSON API on loopback (the `gcp-storage-emulator` package) for tests.

Register in `tests/conftest.py` with `pytest_plugins = ["tests.gcs_emulator"]`, then ask for
`gcs_bucket` (a fresh, empty bucket per test, env pointing at the emulator) or `gcs_emulator`
(the session-wide server). `google-cloud-storage` clients come from `gcs_client()`; bioscan's
`Store("gs://<bucket>/...")` talks to the same server through gcsfs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

EMULATOR_ENV = {
    "STORAGE_EMULATOR_HOST": None,  # set to the server's URL
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # no gRPC bucket-type probe (60 s wait)
    "GOOGLE_CLOUD_PROJECT": "bioscan-test",
}


@dataclass(frozen=True)
class GcsEmulator:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {**EMULATOR_ENV, "STORAGE_EMULATOR_HOST": self.url}


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_emulator(host: str = "127.0.0.1") -> Iterator[GcsEmulator]:
    """Serve an in-memory emulator from a background thread until the block ends."""
    from gcp_storage_emulator.server import create_server

    # The emulator logs every request at INFO; keep test output readable.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.WARNING)
    port = _free_port(host)
    server = create_server(host, port, in_memory=True)
    server.start()
    httpd = server._api._httpd
    report = httpd.handle_error

    def quiet_disconnects(request, client_address) -> None:
        # gcsfs cancels the slower of two racing requests; the emulator then prints a
        # BrokenPipeError traceback for a client that has gone. Nothing is wrong.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            report(request, client_address)

    httpd.handle_error = quiet_disconnects
    try:
        yield GcsEmulator(host, port)
    finally:
        server.stop()


def gcs_client():
    """A `google.cloud.storage.Client` on the emulator named by STORAGE_EMULATOR_HOST."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project=os.environ.get("GOOGLE_CLOUD_PROJECT", "bioscan-test"),
        credentials=AnonymousCredentials(),
    )


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """One emulator for the whole session; tests isolate themselves by bucket."""
    with running_emulator() as emulator:
        yield emulator


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator, monkeypatch) -> Iterator[str]:
    """A fresh empty bucket (its name) with the environment pointing at the emulator."""
    for key, value in gcs_emulator.env().items():
        monkeypatch.setenv(key, value)
    client = gcs_client()
    name = f"bioscan-{uuid.uuid4().hex[:12]}"
    bucket = client.create_bucket(name)
    yield name
    with contextlib.suppress(Exception):
        for blob in client.list_blobs(name):
            blob.delete()
        bucket.delete()
