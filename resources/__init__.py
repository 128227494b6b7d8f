"""Dagster ConfigurableResources (storage, accelerator, vector store, tracking, retention), built
from `EnvVar` in `bioscan_assets.definitions`; installed as the package `bioscan_resources`.
"""
