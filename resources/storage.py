from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from bioscan_assets.core.storage import Store


class StorageResource(ConfigurableResource):
    """Landing area (lab drops, read-only to us) and output storage, local or `gs://`."""

    landing: str = Field(description="Lab-drop root: a local path or gs://bucket/prefix.")
    storage: str = Field(description="Output root: a local path or gs://bucket/prefix.")

    def landing_store(self) -> Store:
        return Store(self.landing)

    def output_store(self) -> Store:
        return Store(self.storage)
