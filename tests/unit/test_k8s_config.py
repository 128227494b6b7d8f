"""The embedding step's Kubernetes Job, rendered through dagster-k8s as it would be sent."""

from __future__ import annotations

import json

import pytest
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
)

from bioscan_assets.k8s import accelerator_step_tags


def _render(kind: str):
    tags = json.loads(json.dumps(accelerator_step_tags(kind)))  # as stored on the op
    user_config = UserDefinedDagsterK8sConfig.from_dict(tags["dagster-k8s/config"])
    job_config = DagsterK8sJobConfig(
        job_image="bioscan:test",
        dagster_home="/opt/dagster/dagster_home",
        image_pull_policy="IfNotPresent",
    )
    job = construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_step"],
        job_name="bioscan-embed-step",
        user_defined_k8s_config=user_config,
        pod_name="bioscan-embed-step-pod",
        component="step_worker",
    )
    return job.to_dict()


def test_tpu_step_lands_alone_on_the_tpu_pool() -> None:
    pod = _render("tpu")["spec"]["template"]["spec"]
    assert pod["node_selector"]["cloud.google.com/gke-tpu-accelerator"].startswith("tpu-v")
    assert pod["node_selector"]["cloud.google.com/gke-tpu-topology"] == "2x4"
    container = pod["containers"][0]
    assert container["resources"]["limits"]["google.com/tpu"] == "8"
    assert container["resources"]["requests"]["google.com/tpu"] == "8"
    assert {"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"} in [
        {k: t[k] for k in ("key", "operator", "effect")} for t in pod["tolerations"]
    ]


def test_gpu_variant() -> None:
    pod = _render("gpu")["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "cloud.google.com/gke-accelerator" in pod["node_selector"]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="expected tpu, gpu or cpu"):
        accelerator_step_tags("fpga")
