"""Each step's Kubernetes Job, rendered by dagster-k8s exactly as `k8s_job_executor` does it.

No cluster here: the run launcher is built from deploy/dagster.yaml (pointed at a throw-away
kubeconfig, so nothing is contacted), the code location's container context from the Helm values,
each step's `dagster-k8s/config` tags from the real definitions' execution plans. The Jobs are then
checked as Kubernetes API objects: the kubernetes client's model classes and the OpenAPI schema
of the Kubernetes version GKE runs (kubernetes-validate, strict: no unknown fields).
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster._config import process_config
from dagster._core.execution.api import create_execution_plan
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)
from kubernetes.utils import parse_quantity

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33"  # GKE REGULAR channel at the time of writing
IMAGE = "europe-west4-docker.pkg.dev/example/bioscan/bioscan-tpu:0.1.0"
# Steps that must run alone on the accelerator pool.
REQUIRED_ACCELERATOR_STEPS = {"sequence_embeddings", "lora_adapter"}
JOBS = ("sample_pipeline", "tune_and_evaluate")

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: not-a-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture(scope="module")
def run_launcher(tmp_path_factory) -> K8sRunLauncher:
    config = yaml.safe_load((ROOT / "deploy/dagster.yaml").read_text())["run_launcher"]
    assert (config["module"], config["class"]) == ("dagster_k8s", "K8sRunLauncher")
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(KUBECONFIG)
    env = {
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "bioscan-dagster-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
        "DAGSTER_K8S_NAMESPACE": "bioscan",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        result = process_config(K8sRunLauncher.config_type(), config["config"])
    assert result.success, result.errors
    value = {**result.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    launcher = K8sRunLauncher(**value)
    # dagster.yaml's run_monitoring.max_resume_run_attempts > 0 relies on this
    assert launcher.supports_resume_run
    return launcher


@pytest.fixture(scope="module")
def code_location_context() -> K8sContainerContext:
    """What the chart passes to runs with includeConfigInLaunchedRuns (its k8sContainerContext)."""
    values = yaml.safe_load((ROOT / "deploy/helm/values.yaml").read_text())
    user = values["dagster-user-deployments"]
    deployment = user["deployments"][0]
    return K8sContainerContext.create_from_config(
        {
            "k8s": {
                "image_pull_policy": deployment["image"]["pullPolicy"],
                # <release fullname>-<deployment>-user-env, for a release named `bioscan`
                "env_config_maps": [f"bioscan-dagster-{deployment['name']}-user-env"]
                + [c["name"] for c in deployment.get("envConfigMaps", [])],
                "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
                "labels": deployment.get("labels", {}),
                "resources": deployment.get("resources", {}),
                "namespace": "bioscan",
                "service_account_name": user["serviceAccount"]["name"],
            }
        }
    )


@pytest.fixture(scope="module")
def step_tags() -> dict[tuple[str, str], dict[str, str]]:
    from bioscan_assets.definitions import defs

    repo = defs.get_repository_def()
    tags = {}
    for job_name in JOBS:
        if not repo.has_job(job_name):
            continue
        plan = create_execution_plan(repo.get_job(job_name))
        for step in plan.steps:
            tags[(job_name, step.key)] = dict(step.tags)
    assert ("sample_pipeline", "sequence_embeddings") in tags, sorted(tags)
    return tags


def render_step_job(
    launcher, location_context, job_name, step_key, tags
) -> kubernetes.client.V1Job:
    """K8sStepHandler.launch_step, minus the API call."""
    run_id = "4f2c2a8e-6d1b-4a63-9a38-0c2f9c1d5e77"
    context = (
        K8sContainerContext(
            image_pull_policy=launcher.image_pull_policy,
            service_account_name=launcher.service_account_name,
            env_config_maps=launcher.env_config_maps,
            env_secrets=launcher.env_secrets,
            labels=launcher.labels,
            namespace=launcher.job_namespace,
            resources=launcher.resources,
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher.run_k8s_config or {}),
        )
        .merge(location_context)
        .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    )
    job_name_k8s = f"dagster-step-{get_k8s_job_name(run_id, step_key)}"
    return construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(IMAGE, launcher),
        args=["dagster", "api", "execute_step"],
        job_name=job_name_k8s,
        pod_name=job_name_k8s,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": job_name, "dagster/op": step_key, "dagster/run-id": run_id},
        env_vars=[
            {"name": "DAGSTER_RUN_JOB_NAME", "value": job_name},
            {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key},
        ],
    )


class _Response:
    def __init__(self, data: str):
        self.data = data


def test_every_step_renders_a_valid_kubernetes_job(
    run_launcher, code_location_context, step_tags
) -> None:
    api = kubernetes.client.ApiClient()
    for (job_name, step_key), tags in step_tags.items():
        job = render_step_job(run_launcher, code_location_context, job_name, step_key, tags)
        manifest = api.sanitize_for_serialization(job)
        # the cluster's schema, no unknown fields
        kubernetes_validate.validate(manifest, desired_version=K8S_VERSION, strict=True)
        # and the client's own models accept it back (required fields, types)
        again = api.deserialize(_Response(json.dumps(manifest)), "V1Job")
        assert again.spec.template.spec.containers[0].image == IMAGE
        pod = manifest["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["serviceAccountName"] == "bioscan-runner"
        env_from = {next(iter(e.values()))["name"] for e in container["envFrom"]}
        assert {"bioscan-env", "bioscan-secrets", "bioscan-dagster-bioscan-user-env"} <= env_from
        assert {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key} in container["env"]
        # the API server refuses a pod whose request exceeds its limit; merges of the launcher's,
        # the code location's and the step's config must not produce one
        requests = container.get("resources", {}).get("requests", {})
        limits = container.get("resources", {}).get("limits", {})
        for name in requests.keys() & limits.keys():
            assert parse_quantity(requests[name]) <= parse_quantity(limits[name]), (step_key, name)
        assert manifest["spec"]["backoffLimit"] == 0  # retries are Dagster's, not the Job's


def test_accelerator_steps_alone_go_to_the_tpu_pool(
    run_launcher, code_location_context, step_tags
) -> None:
    api = kubernetes.client.ApiClient()
    seen_accelerator = set()
    for (job_name, step_key), tags in step_tags.items():
        job = render_step_job(run_launcher, code_location_context, job_name, step_key, tags)
        pod = api.sanitize_for_serialization(job)["spec"]["template"]["spec"]
        resources = pod["containers"][0].get("resources", {})
        selector = pod.get("nodeSelector", {})
        tolerations = pod.get("tolerations", [])
        if "google.com/tpu" in json.dumps(resources) or step_key in REQUIRED_ACCELERATOR_STEPS:
            seen_accelerator.add(step_key)
            assert selector == {
                "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                "cloud.google.com/gke-tpu-topology": "2x4",
            }
            assert resources["limits"]["google.com/tpu"] == "8"
            assert resources["requests"]["google.com/tpu"] == "8"
            assert {
                "key": "google.com/tpu",
                "operator": "Exists",
                "effect": "NoSchedule",
            } in tolerations
        else:
            assert "google.com/tpu" not in json.dumps(resources), step_key
            assert not any("gke-tpu" in k for k in selector), step_key
            assert not any(t.get("key") == "google.com/tpu" for t in tolerations), step_key
    assert seen_accelerator >= REQUIRED_ACCELERATOR_STEPS


def test_tpu_topology_matches_terraform_and_helm() -> None:
    import hcl2

    with open(ROOT / "deploy/terraform/variables.tf") as handle:
        variables = {k: v for block in hcl2.load(handle)["variable"] for k, v in block.items()}
    topology = next(v for k, v in variables.items() if k.strip('"') == "tpu_topology")
    machine = next(v for k, v in variables.items() if k.strip('"') == "tpu_machine_type")
    env = yaml.safe_load((ROOT / "deploy/helm/values.yaml").read_text())[
        "dagster-user-deployments"
    ]["deployments"][0]["env"]
    assert topology["default"].strip('"') == env["BIOSCAN_TPU_TOPOLOGY"] == "2x4"
    # 2x4 = 8 chips on one host: ct5lp-hightpu-8t / ct6e-standard-8t
    assert machine["default"].strip('"').endswith("-8t")
    assert env["BIOSCAN_TPU_CHIPS"] == "8"
