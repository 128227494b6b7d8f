# Least-privilege identities. Pods authenticate through Workload Identity (no keys anywhere):
#   KSA bioscan-dagster (webserver, daemon)            -> GSA <name>-dagster: read compute logs
#   KSA bioscan-runner  (code server, run + step pods) -> GSA <name>-runner: read landing,
#                                                         read/write storage and compute logs
# Nodes run as GSA <name>-nodes: logs, metrics and image pulls only.
# Each lab may write only under its own prefix of the landing bucket.

resource "google_service_account" "nodes" {
  account_id   = "${local.name}-nodes"
  display_name = "bioscan GKE nodes"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "dagster" {
  account_id   = "${local.name}-dagster"
  display_name = "bioscan Dagster webserver and daemon"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "runner" {
  account_id   = "${local.name}-runner"
  display_name = "bioscan code server, runs and steps"
  depends_on   = [google_project_service.apis]
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
  ])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}

resource "google_artifact_registry_repository_iam_member" "nodes_pull" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.nodes.email}"
}

# --- Workload Identity: the Kubernetes service accounts the Helm release creates -----------------
resource "google_service_account_iam_member" "dagster_workload_identity" {
  service_account_id = google_service_account.dagster.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.namespace}/bioscan-dagster]"
}

resource "google_service_account_iam_member" "runner_workload_identity" {
  service_account_id = google_service_account.runner.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.namespace}/bioscan-runner]"
}

# --- buckets ------------------------------------------------------------------------------------
resource "google_storage_bucket_iam_member" "runner_reads_landing" {
  bucket = google_storage_bucket.landing.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.runner.email}"
}

# objectUser: create, read, overwrite and delete objects (retention deletes), no bucket or IAM admin
resource "google_storage_bucket_iam_member" "runner_writes_storage" {
  bucket = google_storage_bucket.storage.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.runner.email}"
}

resource "google_storage_bucket_iam_member" "runner_writes_logs" {
  bucket = google_storage_bucket.logs.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.runner.email}"
}

resource "google_storage_bucket_iam_member" "dagster_reads_logs" {
  bucket = google_storage_bucket.logs.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.dagster.email}"
}

# --- labs: write (and fix) their own drops under gs://<landing>/<tenant>/, see nothing else -------
locals {
  lab_uploaders = merge([
    for tenant, members in var.labs : {
      for member in members : "${tenant}|${member}" => { tenant = tenant, member = member }
    }
  ]...)
}

resource "google_storage_bucket_iam_member" "lab_uploads" {
  for_each = local.lab_uploaders
  bucket   = google_storage_bucket.landing.name
  role     = "roles/storage.objectUser"
  member   = each.value.member

  condition {
    title       = "landing-${each.value.tenant}"
    description = "Objects under ${each.value.tenant}/ only"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.landing.name}/objects/${each.value.tenant}/\")"
  }
}
