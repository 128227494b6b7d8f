# Images built from deploy/docker (bioscan-cpu, bioscan-tpu, bioscan-gpu).
resource "google_artifact_registry_repository" "images" {
  location      = var.region
  repository_id = local.name
  format        = "DOCKER"
  description   = "bioscan images (deploy/docker)"

  docker_config {
    immutable_tags = true
  }

  depends_on = [google_project_service.apis]
}
