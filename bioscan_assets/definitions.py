"""The bioscan code location: every asset, check, job, sensor, schedule and resource."""

from __future__ import annotations

import os

from dagster import Definitions, in_process_executor, multiprocess_executor

from bioscan_assets.assets.embed import embed_checks, sequence_embeddings
from bioscan_assets.assets.ingest import ingest_assets, ingest_checks
from bioscan_assets.demo import demo_job
from bioscan_assets.jobs import sample_pipeline
from bioscan_assets.resources.accelerator import AcceleratorResource
from bioscan_assets.resources.storage import StorageResource
from bioscan_assets.sensors.lab_drop import lab_drop_sensor
from bioscan_assets.settings import default_landing, default_storage, env_or


def _executor():
    """In Kubernetes every step runs in its own pod; embedded runs share one process."""
    kind = os.environ.get("BIOSCAN_EXECUTOR", "in_process")
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if kind == "multiprocess":
        return multiprocess_executor
    return in_process_executor


defs = Definitions(
    assets=[*ingest_assets, sequence_embeddings],
    asset_checks=[*ingest_checks, *embed_checks],
    jobs=[sample_pipeline, demo_job],
    sensors=[lab_drop_sensor],
    resources={
        "storage": StorageResource(
            landing=env_or("BIOSCAN_LANDING", default_landing()),
            storage=env_or("BIOSCAN_STORAGE", default_storage()),
        ),
        "accelerator": AcceleratorResource(model=env_or("BIOSCAN_MODEL", "demo")),
    },
    executor=_executor(),
)
