output "cluster_name" {
  value = google_container_cluster.main.name
}

output "cluster_location" {
  value = google_container_cluster.main.location
}

output "landing_bucket" {
  value = google_storage_bucket.landing.name
}

output "storage_bucket" {
  value = google_storage_bucket.storage.name
}

output "logs_bucket" {
  value = google_storage_bucket.logs.name
}

output "dagster_gsa_email" {
  value = google_service_account.dagster.email
}

output "runner_gsa_email" {
  value = google_service_account.runner.email
}

output "image_repository" {
  description = "Prefix of the image names, e.g. <this>/bioscan-tpu:<tag>."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "postgres_private_ip" {
  value = google_sql_database_instance.dagster.private_ip_address
}

output "postgres_password" {
  value     = random_password.dagster_db.result
  sensitive = true
}

# Contents of the `bioscan-env` ConfigMap (kubectl create configmap --from-env-file). The model is
# the Hugging Face checkpoint directory uploaded once under models/ (never expired).
output "bioscan_env" {
  value = <<-EOT
    BIOSCAN_LANDING=gs://${google_storage_bucket.landing.name}
    BIOSCAN_STORAGE=gs://${google_storage_bucket.storage.name}
    BIOSCAN_MODEL=gs://${google_storage_bucket.storage.name}/models/nucleotide-transformer-2.5b-multi-species
    EOT
}
