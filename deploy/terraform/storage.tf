# Buckets. Lifecycle rules follow the retention policies: Parquet shards and embedding files are
# intermediates that expire (a backstop; the lineage-aware `retention` job deletes them first);
# raw inputs, LanceDB, adapters, evaluation reports, run manifests, quarantine records and the
# audit log are never expired by age.
resource "google_storage_bucket" "landing" {
  name                        = "${var.project_id}-${local.name}-landing"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Labs' drops: kept (the pipeline copies raw inputs into the storage bucket by sha256).
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "storage" {
  name                        = "${var.project_id}-${local.name}-storage"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # deleted objects stay recoverable for a week (a mistaken retention run, a bad migration)
  soft_delete_policy {
    retention_duration_seconds = 604800
  }

  lifecycle_rule {
    condition {
      age            = var.shards_expire_days
      matches_prefix = ["shards/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age            = var.embeddings_expire_days
      matches_prefix = ["embeddings/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

# Step stdout/stderr captured by Dagster's GCSComputeLogManager.
resource "google_storage_bucket" "logs" {
  name                        = "${var.project_id}-${local.name}-dagster-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age = var.compute_logs_expire_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}
