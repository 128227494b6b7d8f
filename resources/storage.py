"""Landing and output storage; `gs://` roots authenticate through dagster-gcp's GCSResource.

The gcsfs filesystem behind a `gs://` Store takes its credentials and project from the
google-cloud-storage client `GCSResource.get_client()` builds (application default
credentials: Workload Identity on GKE, a key file elsewhere), so GCS is configured the way
dagster-gcp configures it. GCSResource is built from the `gcs_project` field rather than
nested as a resource field: a nested resource turns StorageResource's set-up into a
generator, and every `build_sensor_context(resources=...)` / `build_op_context` used outside a
`with` block would then fail.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import ConfigurableResource
from dagster_gcp import GCSResource
from pydantic import Field

from bioscan_assets.core.storage import Store

# (credentials, project) per GCS configuration and endpoint: gcsfs keeps one filesystem per
# credentials object, so a fresh object every sensor tick would pile filesystems up.
_GCS_ACCESS: dict[tuple[str, str], tuple[Any, str | None]] = {}


def gcs_access(gcs: GCSResource) -> tuple[Any, str | None]:
    """The credentials and project of the google-cloud-storage client dagster-gcp builds."""
    key = (repr(gcs), os.environ.get("STORAGE_EMULATOR_HOST", ""))
    if key not in _GCS_ACCESS:
        client = gcs.get_client()
        # google.cloud.client.Client keeps them private; gcsfs accepts google.auth credentials
        _GCS_ACCESS[key] = (client._credentials, client.project)
    return _GCS_ACCESS[key]


class StorageResource(ConfigurableResource):
    """Landing area (lab drops, read-only to us) and output storage, local or `gs://`."""

    landing: str = Field(description="Lab-drop root: a local path or gs://bucket/prefix.")
    storage: str = Field(description="Output root: a local path or gs://bucket/prefix.")
    gcs_project: str | None = Field(
        default=None,
        description="GCP project of the dagster-gcp GCSResource used for gs:// roots; "
        "None: the project of the application default credentials.",
    )

    def gcs(self) -> GCSResource:
        """dagster-gcp's resource for the GCS client behind `gs://` roots."""
        return GCSResource(project=self.gcs_project)

    def landing_store(self) -> Store:
        return self._store(self.landing)

    def output_store(self) -> Store:
        return self._store(self.storage)

    def _store(self, root: str) -> Store:
        if not root.startswith("gs://"):
            return Store(root)
        return Store(root, *gcs_access(self.gcs()))
