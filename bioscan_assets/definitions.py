"""The bioscan code location: every asset, check, job, sensor, schedule and resource."""

from __future__ import annotations

import os

from bioscan_resources.accelerator import AcceleratorResource
from bioscan_resources.env import env_or
from bioscan_resources.retention import RetentionResource
from bioscan_resources.storage import StorageResource
from bioscan_resources.tracking import WandbResource
from bioscan_resources.vector_store import VectorStoreResource
from bioscan_sensors.failure_alerts import failure_alerts_sensor
from bioscan_sensors.lab_drop import lab_drop_sensor
from bioscan_sensors.retention import retention_schedule
from dagster import Definitions, in_process_executor, multiprocess_executor

from bioscan_assets.assets.cohort import cohort_assets
from bioscan_assets.assets.embed import embed_checks, sequence_embeddings
from bioscan_assets.assets.index import index_assets, index_checks
from bioscan_assets.assets.ingest import ingest_assets, ingest_checks
from bioscan_assets.assets.novelty import novelty_assets
from bioscan_assets.assets.retention import retention_job
from bioscan_assets.assets.taxonomy import taxonomy_assets
from bioscan_assets.assets.tune import tune_and_evaluate, tune_assets, tune_checks
from bioscan_assets.demo import demo_job
from bioscan_assets.jobs import cohort_reports, sample_pipeline, sample_taxonomy
from bioscan_assets.settings import default_landing, default_storage


def _executor():
    """In Kubernetes every step runs in its own pod; embedded runs share one process, so the
    model is loaded and compiled once per run."""
    kind = os.environ.get("BIOSCAN_EXECUTOR", "in_process")
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if kind == "multiprocess":
        return multiprocess_executor
    return in_process_executor


defs = Definitions(
    assets=[
        *ingest_assets,
        sequence_embeddings,
        *index_assets,
        *tune_assets,
        *taxonomy_assets,
        *novelty_assets,
        *cohort_assets,
    ],
    asset_checks=[*ingest_checks, *embed_checks, *index_checks, *tune_checks],
    jobs=[
        sample_pipeline,
        tune_and_evaluate,
        sample_taxonomy,
        cohort_reports,
        retention_job,
        demo_job,
    ],
    sensors=[lab_drop_sensor, failure_alerts_sensor],
    schedules=[retention_schedule],
    resources={
        "storage": StorageResource(
            landing=env_or("BIOSCAN_LANDING", default_landing()),
            storage=env_or("BIOSCAN_STORAGE", default_storage()),
        ),
        "accelerator": AcceleratorResource(model=env_or("BIOSCAN_MODEL", "demo")),
        "vector_store": VectorStoreResource(),
        "tracking": WandbResource(),
        "retention": RetentionResource(),
    },
    executor=_executor(),
)
