"""deploy/: instance YAML, Helm values, Terraform and Docker locks, checked without a cluster.

- dagster.yaml validates against dagster 1.13's instance schema, every pluggable class's config
  against that class's own schema, and a local twin of it (storage, launcher and log manager swapped
  for local ones) loads as a real DagsterInstance with the limits we meant.
- Helm values only use key paths the official chart's schema defines, and agree with dagster.yaml.
- Terraform parses (python-hcl2; `terraform fmt -check` where terraform is installed) and names the
  buckets, lifecycle rules, cluster, node pools, Workload Identity accounts and Cloud SQL we rely on.
- Docker images install exact, hashed locks that satisfy pyproject.toml.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from bioscan_resources.tracking import resolve_mode
from dagster import DagsterInstance
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers import python, run

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "10.1.2.3",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "bioscan-dagster-instance",
    "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
    "DAGSTER_K8S_NAMESPACE": "bioscan",
    "BIOSCAN_LOGS_BUCKET": "example-bioscan-dagster-logs",
}
PLUGGABLE = (
    "run_storage",
    "event_log_storage",
    "schedule_storage",
    "scheduler",
    "run_coordinator",
    "run_launcher",
    "compute_logs",
)


def instance_yaml() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def helm_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm/values.yaml").read_text())


@pytest.fixture
def instance_env(monkeypatch) -> None:
    for name, value in INSTANCE_ENV.items():
        monkeypatch.setenv(name, value)


# ------------------------------------------------------------------------------------------------
# YAML and the Dagster instance
# ------------------------------------------------------------------------------------------------
def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert {f.relative_to(DEPLOY).as_posix() for f in files} >= {"dagster.yaml", "helm/values.yaml"}
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(isinstance(d, dict) for d in documents), path


def test_instance_yaml_validates_against_dagster_schema(tmp_path) -> None:
    shutil.copy(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert set(PLUGGABLE) <= set(config)
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["compute_logs"]["module"] == "dagster_gcp.gcs.compute_log_manager"
    assert config["compute_logs"]["class"] == "GCSComputeLogManager"


def test_instance_schema_check_is_not_a_rubber_stamp(tmp_path) -> None:
    broken = instance_yaml()
    broken["run_monitoring"]["max_runtime_secs"] = 10  # misspelt key
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(DagsterInvalidConfigError, match="max_runtime_secs"):
        dagster_instance_config(str(tmp_path))


@pytest.mark.parametrize("section", PLUGGABLE)
def test_each_pluggable_class_accepts_its_config(section, instance_env) -> None:
    entry = instance_yaml()[section]
    cls = getattr(importlib.import_module(entry["module"]), entry["class"])
    result = process_config(cls.config_type(), entry.get("config") or {})
    assert result.success, [e.message for e in result.errors]


def test_secrets_come_from_the_environment(instance_env, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    entry = instance_yaml()["run_storage"]
    cls = getattr(importlib.import_module(entry["module"]), entry["class"])
    result = process_config(cls.config_type(), entry["config"])
    assert not result.success
    assert "DAGSTER_PG_PASSWORD" in " ".join(e.message for e in result.errors)
    assert "password" not in (DEPLOY / "dagster.yaml").read_text().replace(
        "password: {env: DAGSTER_PG_PASSWORD}", ""
    ).replace("postgres_password_secret", "")


def test_local_twin_loads_with_the_intended_limits(tmp_path) -> None:
    """Everything but Postgres, Kubernetes and GCS, read by a real DagsterInstance."""
    config = instance_yaml()
    for section in ("run_storage", "event_log_storage", "schedule_storage"):
        del config[section]
    config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
    config["compute_logs"] = {
        "module": "dagster._core.storage.local_compute_log_manager",
        "class": "LocalComputeLogManager",
        "config": {"base_dir": str(tmp_path / "logs")},
    }
    # resuming a lost run worker needs a launcher that can (K8sRunLauncher can, the local one not)
    assert config["run_monitoring"]["max_resume_run_attempts"] == 2
    config["run_monitoring"]["max_resume_run_attempts"] = 0
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue.max_concurrent_runs == 20
        limits = {(t["key"], str(t.get("value"))): t["limit"] for t in queue.tag_concurrency_limits}
        assert limits[("bioscan/accelerator", "tpu")] == 4
        assert limits[("bioscan/tenant", "{'applyLimitPerUniqueValue': True}")] == 4
        assert limits[("dagster/backfill", "None")] == 10
        assert concurrency.pool_config.pool_granularity.value == "op"
        assert concurrency.pool_config.default_pool_limit == 1
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == 12 * 3600
        assert instance.run_monitoring_start_timeout_seconds == 900
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False


# ------------------------------------------------------------------------------------------------
# Helm values for the official chart
# ------------------------------------------------------------------------------------------------
# Key paths of the dagster chart's values schema (helm/dagster/schema in dagster-io/dagster:
# DagsterHelmValues and its subschemas, plus `concurrency`), for the sections we set.
CHART_KEYS: dict[str, set[str]] = {
    "": {
        "global", "dagsterWebserver", "dagster-user-deployments", "postgresql",
        "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis",
        "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "runLauncher",
        "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry", "serviceAccount",
        "retention", "additionalInstanceConfig", "concurrency", "rbacEnabled", "nameOverride",
        "fullnameOverride", "extraManifests",
    },
    "global": {"postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"},
    "serviceAccount": {"create", "name", "annotations"},
    "dagsterWebserver": {
        "replicaCount", "image", "nameOverride", "pathPrefix", "service", "workspace", "env",
        "envConfigMaps", "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity",
        "tolerations", "podSecurityContext", "securityContext", "resources", "readinessProbe",
        "livenessProbe", "startupProbe", "annotations", "enableReadOnly", "dbStatementTimeout",
        "dbPoolRecycle", "dbPoolMaxOverflow", "logLevel", "schedulerName", "volumeMounts",
        "volumes", "initContainerResources", "extraContainers", "extraPrependedInitContainers",
    },
    "dagster-user-deployments": {
        "enabled", "enableSubchart", "imagePullSecrets", "deployments", "serviceAccount",
        "rbacEnabled", "extraManifests",
    },
    "dagster-user-deployments.deployments[]": {
        "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
        "port", "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity",
        "tolerations", "podSecurityContext", "securityContext", "resources", "livenessProbe",
        "readinessProbe", "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName",
        "initContainers", "sidecarContainers", "service", "deploymentNamespace", "serviceAccount",
    },
    "postgresql": {
        "image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
        "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service",
    },
    "runLauncher": {"type", "config"},
    "runLauncher.config": {"celeryK8sRunLauncher", "k8sRunLauncher", "customRunLauncher"},
    "runLauncher.config.k8sRunLauncher": {
        "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
        "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
        "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig",
    },
    "runLauncher.config.k8sRunLauncher.runK8sConfig": {
        "containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig",
        "jobMetadata",
    },
    "computeLogManager": {"type", "config"},
    "computeLogManager.config": {
        "azureBlobComputeLogManager", "gcsComputeLogManager", "s3ComputeLogManager",
        "customComputeLogManager",
    },
    "computeLogManager.config.gcsComputeLogManager": {
        "bucket", "localDir", "prefix", "jsonCredentialsEnvvar", "uploadInterval",
    },
    "dagsterDaemon": {
        "enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps",
        "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations",
        "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
        "startupProbe", "annotations", "runMonitoring", "runRetries", "sensors", "schedules",
        "schedulerName", "volumeMounts", "volumes", "backfills", "logLevel",
    },
    "dagsterDaemon.runCoordinator": {"enabled", "type", "config"},
    "dagsterDaemon.runCoordinator.config": {"queuedRunCoordinator", "customRunCoordinator"},
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator": {
        "maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds",
        "dequeueNumWorkers", "dequeueUseThreads", "blockOpConcurrencyLimitedRuns",
    },
    "dagsterDaemon.sensors": {"useThreads", "numWorkers", "numSubmitWorkers"},
    "dagsterDaemon.schedules": {"useThreads", "numWorkers", "numSubmitWorkers"},
    "concurrency": {"enabled", "pools", "runs"},
    "concurrency.pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "concurrency.runs": {"maxConcurrentRuns", "tagConcurrencyLimits"},
    "concurrency.runs.tagConcurrencyLimits[]": {"key", "value", "limit"},
    "retention": {"enabled", "schedule", "sensor", "autoMaterialize"},
    "telemetry": {"enabled"},
    "ingress": {"enabled", "annotations", "labels", "ingressClassName", "dagsterWebserver",
                "readOnlyDagsterWebserver", "flower"},
}  # fmt: skip
IMAGE_KEYS = {"repository", "tag", "pullPolicy"}


def _walk(values: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(schema path, mapping) for every mapping whose keys CHART_KEYS constrains."""
    found = []
    if isinstance(values, dict):
        if path in CHART_KEYS:
            found.append((path, values))
        for key, value in values.items():
            child = f"{path}.{key}" if path else key
            found += _walk(value, child)
    elif isinstance(values, list):
        for item in values:
            found += _walk(item, f"{path}[]")
    return found


def test_helm_values_use_only_keys_the_chart_defines() -> None:
    values = helm_values()
    checked = _walk(values)
    assert {p for p, _ in checked} >= {
        "",
        "dagster-user-deployments.deployments[]",
        "runLauncher.config.k8sRunLauncher",
        "computeLogManager.config.gcsComputeLogManager",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator",
        "concurrency.runs",
    }
    for path, mapping in checked:
        unknown = set(mapping) - CHART_KEYS[path]
        assert not unknown, f"{path or '<top level>'}: keys the chart does not define: {unknown}"
    for image in (
        values["dagsterWebserver"]["image"],
        values["dagsterDaemon"]["image"],
        values["dagster-user-deployments"]["deployments"][0]["image"],
    ):
        assert set(image) == IMAGE_KEYS
        assert image["pullPolicy"] == "IfNotPresent"


def test_helm_release_runs_our_code_location_with_k8s_steps() -> None:
    values = helm_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["computeLogManager"]["type"] == "GCSComputeLogManager"
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    user = values["dagster-user-deployments"]
    assert user["enabled"] and user["enableSubchart"]
    (deployment,) = user["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "bioscan_assets.definitions"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["env"]["BIOSCAN_EXECUTOR"] == "k8s"  # k8s_job_executor: a pod per step
    assert deployment["env"]["BIOSCAN_ACCELERATOR_KIND"] == "tpu"
    assert all(isinstance(v, str) for v in deployment["env"].values())  # a ConfigMap's data
    assert {"name": "bioscan-secrets"} in deployment["envSecrets"]
    assert "limits" not in deployment["resources"]  # passed on to every step pod
    # Workload Identity: the two Kubernetes service accounts Terraform binds
    assert values["serviceAccount"]["name"] == "bioscan-dagster"
    assert user["serviceAccount"]["name"] == "bioscan-runner"
    for account in (values["serviceAccount"], user["serviceAccount"]):
        assert "iam.gke.io/gcp-service-account" in account["annotations"]


def test_definitions_pick_the_k8s_executor_from_the_helm_env(monkeypatch) -> None:
    import dagster_k8s

    from bioscan_assets import definitions

    monkeypatch.setenv(
        "BIOSCAN_EXECUTOR",
        helm_values()["dagster-user-deployments"]["deployments"][0]["env"]["BIOSCAN_EXECUTOR"],
    )
    assert definitions._executor() is dagster_k8s.k8s_job_executor


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            (k if k == "applyLimitPerUniqueValue" else _snake(k)): _snake_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def test_helm_values_and_dagster_yaml_agree(tmp_path) -> None:
    values, instance = helm_values(), instance_yaml()
    concurrency = dict(values["concurrency"])
    assert concurrency.pop("enabled") is True
    assert _snake_keys(concurrency) == instance["concurrency"]
    for section in ("run_monitoring", "run_retries"):
        assert values["additionalInstanceConfig"][section] == instance[section]
    # the chart would render these too: they are off so that additionalInstanceConfig alone does
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is False
    assert values["dagsterDaemon"]["runRetries"]["enabled"] is False
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)  # 1.13 refuses both
    assert _snake_keys(queued).items() <= instance["run_coordinator"]["config"].items()
    gcs = values["computeLogManager"]["config"]["gcsComputeLogManager"]
    logs = instance["compute_logs"]["config"]
    assert (gcs["prefix"], gcs["uploadInterval"]) == (logs["prefix"], logs["upload_interval"])
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = instance["run_launcher"]["config"]
    assert [s["name"] for s in k8s["envSecrets"]] == launcher["env_secrets"]
    assert [c["name"] for c in k8s["envConfigMaps"]] == launcher["env_config_maps"]
    assert k8s["failPodOnRunFailure"] == launcher["fail_pod_on_run_failure"]
    run_k8s = {_snake(k): v for k, v in k8s["runK8sConfig"].items()}
    assert run_k8s == launcher["run_k8s_config"]
    assert (
        values["dagster-user-deployments"]["serviceAccount"]["name"]
        == launcher["service_account_name"]
    )
    retention = _snake_keys(values["retention"])
    assert retention.pop("enabled") is True
    assert retention == instance["retention"]
    # what the chart adds verbatim must itself be valid instance config
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump(
            {**values["additionalInstanceConfig"], "concurrency": instance["concurrency"]}
        )
    )
    dagster_instance_config(str(tmp_path))


# ------------------------------------------------------------------------------------------------
# Terraform
# ------------------------------------------------------------------------------------------------
def _unquote(value: Any) -> Any:
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


@pytest.fixture(scope="module")
def terraform() -> dict[str, Any]:
    """{'resource': {type: {name: body}}, 'variable': {name: body}, 'output': {...}}."""
    merged: dict[str, dict] = {"resource": {}, "variable": {}, "output": {}}
    files = sorted((DEPLOY / "terraform").glob("*.tf"))
    assert files
    for path in files:
        with path.open() as handle:
            parsed = _unquote(hcl2.load(handle))
        for block in parsed.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    assert name not in merged["resource"].setdefault(rtype, {}), (rtype, name)
                    merged["resource"][rtype][name] = body
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                merged[kind].update(block)
    return merged


def _one(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body[key]
    return value[0] if isinstance(value, list) else value


def test_terraform_is_canonically_formatted() -> None:
    terraform_bin = shutil.which("terraform")
    if terraform_bin is None:
        pytest.skip("terraform is not installed; the HCL is still parsed by the other tests")
    result = run(
        [terraform_bin, "fmt", "-check", "-recursive", "-diff", DEPLOY / "terraform"],
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_names_the_resources_we_rely_on(terraform) -> None:
    resources = terraform["resource"]
    expected = {
        "google_storage_bucket": {"landing", "storage", "logs"},
        "google_container_cluster": {"main"},
        "google_container_node_pool": {"cpu", "tpu"},
        "google_service_account": {"dagster", "runner", "nodes"},
        "google_service_account_iam_member": {
            "dagster_workload_identity",
            "runner_workload_identity",
        },
        "google_sql_database_instance": {"dagster"},
        "google_sql_database": {"dagster"},
        "google_sql_user": {"dagster"},
        "google_artifact_registry_repository": {"images"},
    }
    for rtype, names in expected.items():
        assert names <= set(resources.get(rtype, {})), rtype


def test_bucket_lifecycle_follows_the_retention_policies(terraform) -> None:
    buckets = terraform["resource"]["google_storage_bucket"]

    def delete_rules(bucket: str) -> list[dict[str, Any]]:
        rules = buckets[bucket].get("lifecycle_rule", [])
        return [r for r in rules if _one(r, "action")["type"] == "Delete"]

    # intermediates expire, by prefix; nothing else in the storage bucket does
    expiring = {}
    for rule in delete_rules("storage"):
        condition = _one(rule, "condition")
        assert condition.get("matches_prefix"), (
            "a Delete rule without a prefix would hit everything"
        )
        for prefix in condition["matches_prefix"]:
            expiring[prefix] = condition["age"]
    assert set(expiring) == {"shards/", "embeddings/"}
    assert expiring["shards/"] == "${var.shards_expire_days}"
    assert expiring["embeddings/"] == "${var.embeddings_expire_days}"
    for kept in ("raw/", "lancedb/", "adapters/", "reports/", "manifests/", "models/", "audit/"):
        assert not any(kept.startswith(p) or p.startswith(kept) for p in expiring), kept
    assert delete_rules("landing") == []  # labs' drops are never expired by age
    variables = terraform["variable"]
    assert variables["shards_expire_days"]["default"] >= 30
    assert variables["embeddings_expire_days"]["default"] >= 30
    for name in ("landing", "storage", "logs"):
        assert buckets[name]["uniform_bucket_level_access"] is True
        assert buckets[name]["public_access_prevention"] == "enforced"


def test_cluster_has_workload_identity_and_a_tpu_pool(terraform) -> None:
    resources = terraform["resource"]
    cluster = resources["google_container_cluster"]["main"]
    assert _one(cluster, "workload_identity_config")["workload_pool"] == (
        "${var.project_id}.svc.id.goog"
    )
    assert cluster["remove_default_node_pool"] is True
    pools = resources["google_container_node_pool"]
    assert pools["cpu"]["name"] == "cpu-pool"  # the Helm values' nodeSelector
    assert pools["tpu"]["name"] == "tpu-pool"
    assert _one(pools["tpu"], "node_config")["machine_type"] == "${var.tpu_machine_type}"
    assert _one(pools["tpu"], "autoscaling")["total_min_node_count"] == 0
    for pool in pools.values():
        node_config = _one(pool, "node_config")
        assert _one(node_config, "workload_metadata_config")["mode"] == "GKE_METADATA"
        assert node_config["service_account"] == "${google_service_account.nodes.email}"
    machine = terraform["variable"]["tpu_machine_type"]["default"]
    assert re.fullmatch(r"ct(5lp-hightpu|6e-standard)-8t", machine)


def test_identities_are_least_privilege(terraform) -> None:
    resources = terraform["resource"]
    helm = helm_values()
    ksa = {
        "dagster": helm["serviceAccount"]["name"],
        "runner": helm["dagster-user-deployments"]["serviceAccount"]["name"],
    }
    for gsa, name in ksa.items():
        binding = resources["google_service_account_iam_member"][f"{gsa}_workload_identity"]
        assert binding["role"] == "roles/iam.workloadIdentityUser"
        assert binding["member"].endswith(f"[${{var.namespace}}/{name}]")
    # no project-wide storage, admin, editor or owner role for anyone
    for body in resources.get("google_project_iam_member", {}).values():
        roles = body["for_each"] if "for_each" in body else [body["role"]]
        roles = re.findall(r"roles/[\w.]+", str(roles))
        assert roles
        for role in roles:
            assert not re.search(r"storage|admin|editor|owner", role, re.I), role
    bucket_roles = {
        (b["bucket"], b["member"], b["role"])
        for b in resources["google_storage_bucket_iam_member"].values()
    }
    runner = "serviceAccount:${google_service_account.runner.email}"
    dagster = "serviceAccount:${google_service_account.dagster.email}"
    landing = "${google_storage_bucket.landing.name}"
    assert (landing, runner, "roles/storage.objectViewer") in bucket_roles  # read-only drops
    assert (
        "${google_storage_bucket.storage.name}",
        runner,
        "roles/storage.objectUser",
    ) in bucket_roles
    assert (
        "${google_storage_bucket.logs.name}",
        dagster,
        "roles/storage.objectViewer",
    ) in bucket_roles
    assert not any(
        m == dagster and b != "${google_storage_bucket.logs.name}" for b, m, _ in bucket_roles
    )
    assert not any("admin" in r.lower() for _, _, r in bucket_roles)
    lab = resources["google_storage_bucket_iam_member"]["lab_uploads"]
    condition = _one(lab, "condition")
    assert "resource.name.startsWith" in condition["expression"]
    assert "${each.value.tenant}/" in condition["expression"]


def test_cloud_sql_is_private_postgres(terraform) -> None:
    sql = terraform["resource"]["google_sql_database_instance"]["dagster"]
    assert sql["database_version"].startswith("POSTGRES_")
    settings = _one(sql, "settings")
    network = _one(settings, "ip_configuration")
    assert network["ipv4_enabled"] is False
    assert network["ssl_mode"] == "ENCRYPTED_ONLY"
    assert _one(settings, "backup_configuration")["point_in_time_recovery_enabled"] is True
    assert terraform["output"]["postgres_password"]["sensitive"] is True


# ------------------------------------------------------------------------------------------------
# Docker images and their locks
# ------------------------------------------------------------------------------------------------
def _lock(flavour: str) -> dict[str, Version]:
    text = (DEPLOY / f"docker/requirements-{flavour}.lock").read_text()
    pins = {}
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            name, sep, version = line.split(" ", 1)[0].partition("==")
            assert sep, f"requirements-{flavour}.lock: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = Version(version)
    assert text.count("--hash=sha256:") >= len(pins)
    return pins


@pytest.mark.parametrize("flavour", ["cpu", "tpu", "gpu"])
def test_docker_images_install_exact_hashed_locks(flavour) -> None:
    dockerfile = (DEPLOY / f"docker/Dockerfile.{flavour}").read_text()
    assert f"COPY deploy/docker/requirements-{flavour}.lock" in dockerfile
    assert "--require-hashes" in dockerfile
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", dockerfile, re.M)
    assert "USER 10001" in dockerfile
    pins = _lock(flavour)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in [*project["dependencies"], "dagster-postgres", "dagster-graphql"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{flavour}: {name} missing from the lock"
        assert pins[name] in requirement.specifier, f"{flavour}: {name}=={pins[name]} vs {spec}"
    extra = {"tpu": "libtpu", "gpu": "jax-cuda12-plugin", "cpu": None}[flavour]
    if extra:
        assert extra in pins
    else:
        assert not {"libtpu", "jax-cuda12-plugin"} & set(pins)


def test_locks_share_one_jax_and_dagster() -> None:
    locks = {flavour: _lock(flavour) for flavour in ("cpu", "tpu", "gpu")}
    for name in ("jax", "jaxlib", "dagster", "dagster-k8s", "flax", "lancedb"):
        assert len({lock[name] for lock in locks.values()}) == 1, name
    assert locks["gpu"]["jax-cuda12-plugin"] == locks["gpu"]["jax"]


# ------------------------------------------------------------------------------------------------
# Site values: values.yaml + Terraform outputs + an image tag
# ------------------------------------------------------------------------------------------------
TF_OUTPUTS = {
    "image_repository": {"value": "us-central1-docker.pkg.dev/p/bioscan", "sensitive": False},
    "postgres_private_ip": {"value": "10.30.0.5", "sensitive": False},
    "logs_bucket": {"value": "p-bioscan-dagster-logs", "sensitive": False},
    "dagster_gsa_email": {"value": "bioscan-dagster@p.iam.gserviceaccount.com"},
    "runner_gsa_email": {"value": "bioscan-runner@p.iam.gserviceaccount.com"},
    "postgres_password": {"value": "s3cret", "sensitive": True},
}


def run_site_values(tmp_path, *args: str) -> subprocess.CompletedProcess:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(__import__("json").dumps(TF_OUTPUTS))
    return run(
        python(DEPLOY / "helm/site_values.py", "--outputs-json", outputs, *args),
        timeout=60,
        check=False,
    )


def test_site_values_fill_every_site_field(tmp_path) -> None:
    result = run_site_values(tmp_path, "--tag", "a1b2c3d")
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load(result.stdout)
    base = helm_values()
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["image"] == {
        "repository": "us-central1-docker.pkg.dev/p/bioscan/bioscan-tpu",
        "tag": "a1b2c3d",
        "pullPolicy": "IfNotPresent",
    }
    # the rest of the deployment is kept (Helm would have dropped it with --set on a list)
    assert deployment["env"] == base["dagster-user-deployments"]["deployments"][0]["env"]
    assert deployment["envSecrets"] == [{"name": "bioscan-secrets"}]
    assert values["dagsterDaemon"]["image"]["repository"].endswith("/bioscan-cpu")
    assert values["postgresql"]["postgresqlHost"] == "10.30.0.5"
    assert values["computeLogManager"]["config"]["gcsComputeLogManager"]["bucket"] == (
        "p-bioscan-dagster-logs"
    )
    annotation = "iam.gke.io/gcp-service-account"
    assert values["serviceAccount"]["annotations"][annotation].startswith("bioscan-dagster@")
    runner = values["dagster-user-deployments"]["serviceAccount"]["annotations"][annotation]
    assert runner.startswith("bioscan-runner@")
    assert "s3cret" not in result.stdout  # the password goes to a Secret, never to values
    for path, mapping in _walk(values):
        assert not set(mapping) - CHART_KEYS[path], path


def test_site_values_refuse_a_mutable_tag(tmp_path) -> None:
    result = run_site_values(tmp_path, "--tag", "latest")
    assert result.returncode != 0
    assert "immutable image tag" in result.stderr


def test_gcs_backstop_never_beats_the_retention_policies(terraform) -> None:
    """Age-based GCS deletion must come after the lineage-aware retention job, and spare what it protects."""
    policy = yaml.safe_load((ROOT / "bioscan_assets/config/retention.yaml").read_text())
    variables = terraform["variable"]
    for asset, variable in (
        ("sequence_shards", "shards_expire_days"),
        ("sequence_embeddings", "embeddings_expire_days"),
    ):
        days = policy["policies"][asset]["expire_after_days"]
        assert variables[variable]["default"] > days, (variable, days)
    rules = terraform["resource"]["google_storage_bucket"]["storage"]["lifecycle_rule"]
    prefixes = [
        p
        for rule in rules
        if _one(rule, "action")["type"] == "Delete"
        for p in _one(rule, "condition").get("matches_prefix", [])
    ]
    for protected in [*policy["protected"], "lancedb/", "models/", "tune/"]:
        assert not any(p.startswith(protected) or protected.startswith(p) for p in prefixes)


def test_every_pool_the_assets_use_gets_a_limit_in_the_ops_guide() -> None:
    from bioscan_assets.definitions import defs

    graph = defs.get_repository_def().asset_graph
    pools = set().union(*(graph.get(key).pools or set() for key in graph.get_all_asset_keys()))
    assert {"tpu", "lancedb"} <= pools
    guide = (DEPLOY / "README.md").read_text()
    for pool in pools:
        assert f"dagster instance concurrency set {pool} " in guide, pool
    # and the instance caps any pool the guide forgot at one op at a time
    assert instance_yaml()["concurrency"]["pools"]["default_limit"] == 1


def test_helm_env_tracks_online_with_a_key_and_stores_offline_runs_without() -> None:
    """Pods lose $BIOSCAN_HOME: W&B goes online once bioscan-secrets has a key, and without
    one logs offline (tests/integration/test_tracking_archive.py: copied to storage)."""
    env = helm_values()["dagster-user-deployments"]["deployments"][0]["env"]
    assert resolve_mode(env.get("WANDB_MODE"), "a-key") == ("online", None)
    mode, warning = resolve_mode(env.get("WANDB_MODE"), None)
    assert mode == "offline" and "WANDB_API_KEY" in (warning or "")
