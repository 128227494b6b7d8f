"""`gs://` storage authenticates through dagster-gcp's GCSResource (against the GCS emulator):
the project and credentials of its client are what gcsfs uses, built once per configuration."""

from __future__ import annotations

import bioscan_resources.storage as storage_resource
import pytest
from bioscan_resources.storage import StorageResource
from dagster import asset, build_sensor_context, materialize
from dagster_gcp import GCSResource
from google.auth.credentials import AnonymousCredentials

pytestmark = pytest.mark.integration


@pytest.fixture
def client_calls(monkeypatch) -> list[str | None]:
    """Projects of every google-cloud-storage client dagster-gcp builds (none cached before)."""
    monkeypatch.setattr(storage_resource, "_GCS_ACCESS", {})
    calls: list[str | None] = []
    real = GCSResource.get_client

    def get_client(self):
        calls.append(self.project)
        return real(self)

    monkeypatch.setattr(GCSResource, "get_client", get_client)
    return calls


def test_gs_store_uses_the_dagster_gcp_client(gcs_bucket, client_calls):
    resource = StorageResource(
        landing=f"gs://{gcs_bucket}/landing",
        storage=f"gs://{gcs_bucket}/out",
        gcs_project="bioscan-configured",
    )
    assert resource.gcs() == GCSResource(project="bioscan-configured")
    store = resource.output_store()
    store.write_bytes("a/b.txt", b"hello")
    assert store.read_bytes("a/b.txt") == b"hello"

    assert store.project == "bioscan-configured" and store.fs.project == "bioscan-configured"
    assert isinstance(store.credentials, AnonymousCredentials)  # the emulator's, from the client
    assert store.fs.credentials.credentials is store.credentials
    assert store.child("a").credentials is store.credentials
    # one client per configuration, however many stores and sensor ticks ask
    resource.output_store()
    StorageResource(
        landing=resource.landing, storage=resource.storage, gcs_project="bioscan-configured"
    ).output_store()
    assert client_calls == ["bioscan-configured"]


def test_unconfigured_storage_uses_a_default_gcs_resource(gcs_bucket, client_calls):
    resource = StorageResource(landing=f"gs://{gcs_bucket}/l", storage=f"gs://{gcs_bucket}/s")
    store = resource.output_store()
    store.write_bytes("x.txt", b"1")
    assert resource.landing_store().credentials is store.credentials is not None
    assert client_calls == [None]  # GCSResource(): application default credentials
    assert build_sensor_context(resources={"storage": resource}).resources.storage is not None


def test_an_asset_writes_gs_through_the_configured_resource(gcs_bucket, client_calls):
    @asset
    def note(storage: StorageResource) -> None:
        storage.output_store().write_bytes("notes/one.txt", b"written by an asset")

    storage = StorageResource(
        landing=f"gs://{gcs_bucket}/landing",
        storage=f"gs://{gcs_bucket}/out",
        gcs_project="bioscan-asset",
    )
    assert materialize([note], resources={"storage": storage}).success
    assert storage.output_store().read_bytes("notes/one.txt") == b"written by an asset"
    assert client_calls == ["bioscan-asset"]


def test_local_roots_never_build_a_gcs_client(tmp_path, monkeypatch):
    def no_client(self):
        raise AssertionError("a local root must not need GCS credentials")

    monkeypatch.setattr(GCSResource, "get_client", no_client)
    resource = StorageResource(landing=str(tmp_path / "l"), storage=str(tmp_path / "s"))
    resource.output_store().write_bytes("x.txt", b"1")
    assert resource.output_store().credentials is None
    assert resource.landing_store().local_path() == tmp_path / "l"
