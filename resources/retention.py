from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from bioscan_assets.core.governance.policy import Policies, load_policies
from bioscan_assets.core.governance.prices import Prices
from bioscan_assets.core.storage import Store
from bioscan_assets.settings import bioscan_home


class RetentionResource(ConfigurableResource):
    """Retention policies and cost prices: the bundled config/retention.yaml unless overridden."""

    policy_file: str = Field(
        default="",
        description="A YAML file of the shape of config/retention.yaml; default bundled.",
    )
    overrides_yaml: str = Field(
        default="",
        description="YAML merged on top key by key, e.g. "
        "'policies: {sequence_shards: {expire_after_days: 7}}'.",
    )
    home: str = Field(
        default="", description="Where the JAX cache and W&B runs live; default $BIOSCAN_HOME."
    )

    def policies(self) -> Policies:
        return load_policies(self.policy_file or None, self.overrides_yaml or None)

    def prices(self) -> Prices:
        return Prices.from_dict(self.policies().prices)

    def home_store(self) -> Store:
        return Store(self.home or bioscan_home())
