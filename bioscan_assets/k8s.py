"""dagster-k8s step config: the embedding (and tuning) step alone on an accelerator node pool.

`BIOSCAN_ACCELERATOR_KIND` (tpu | gpu | cpu, default tpu) is read when the definitions load,
so a deployment picks its pool with an environment variable on the user-code image.
"""

from __future__ import annotations

import os
from typing import Any

from dagster_k8s.job import USER_DEFINED_K8S_CONFIG_KEY

TPU_ACCELERATOR = os.environ.get("BIOSCAN_TPU_ACCELERATOR", "tpu-v5-lite-podslice")
TPU_TOPOLOGY = os.environ.get("BIOSCAN_TPU_TOPOLOGY", "2x4")
TPU_CHIPS = int(os.environ.get("BIOSCAN_TPU_CHIPS", "8"))
GPU_ACCELERATOR = os.environ.get("BIOSCAN_GPU_ACCELERATOR", "nvidia-h100-80gb")
GPU_COUNT = int(os.environ.get("BIOSCAN_GPU_COUNT", "1"))


def accelerator_pod_config(kind: str) -> dict[str, Any]:
    """The `dagster-k8s/config` tag value for a step on the given accelerator kind."""
    if kind == "tpu":
        resource, count = "google.com/tpu", TPU_CHIPS
        selector = {
            "cloud.google.com/gke-tpu-accelerator": TPU_ACCELERATOR,
            "cloud.google.com/gke-tpu-topology": TPU_TOPOLOGY,
        }
    elif kind == "gpu":
        resource, count = "nvidia.com/gpu", GPU_COUNT
        selector = {"cloud.google.com/gke-accelerator": GPU_ACCELERATOR}
    elif kind == "cpu":
        return {"container_config": {"resources": {"requests": {"cpu": "4", "memory": "16Gi"}}}}
    else:
        raise ValueError(f"BIOSCAN_ACCELERATOR_KIND={kind!r}: expected tpu, gpu or cpu")
    return {
        "container_config": {
            "resources": {
                "requests": {resource: str(count), "cpu": "8", "memory": "64Gi"},
                "limits": {resource: str(count)},
            }
        },
        "pod_spec_config": {
            "node_selector": selector,
            "tolerations": [{"key": resource, "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def accelerator_step_tags(kind: str | None = None) -> dict[str, Any]:
    kind = kind or os.environ.get("BIOSCAN_ACCELERATOR_KIND", "tpu")
    return {USER_DEFINED_K8S_CONFIG_KEY: accelerator_pod_config(kind)}
