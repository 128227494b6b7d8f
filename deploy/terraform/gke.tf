# A zonal GKE Standard cluster: a CPU pool for Dagster and most steps, and a TPU v5e/v6e pool that
# scales to zero and only takes pods tolerating the `google.com/tpu` taint GKE puts on TPU nodes
# (the embedding and tuning steps, see bioscan_assets/k8s.py).
resource "google_container_cluster" "main" {
  name       = local.name
  location   = var.zone
  network    = google_compute_network.vpc.id
  subnetwork = google_compute_subnetwork.nodes.id

  remove_default_node_pool = true
  initial_node_count       = 1
  deletion_protection      = true

  release_channel {
    channel = "REGULAR"
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = "172.16.0.0/28"
  }

  depends_on = [google_project_service.apis]
}

resource "google_container_node_pool" "cpu" {
  name     = "cpu-pool"
  cluster  = google_container_cluster.main.id
  location = var.zone

  initial_node_count = 1

  autoscaling {
    total_min_node_count = 1
    total_max_node_count = var.cpu_max_nodes
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.cpu_machine_type
    disk_size_gb    = 100
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels = {
      "bioscan/pool" = "cpu"
    }

    # pods get their identity from Workload Identity, never from the node's service account
    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot = true
    }
  }
}

# Single-host TPU slice nodes (8 chips, topology 2x4): one embedding step per node. GKE labels them
# cloud.google.com/gke-tpu-accelerator / gke-tpu-topology and taints them google.com/tpu.
resource "google_container_node_pool" "tpu" {
  name     = "tpu-pool"
  cluster  = google_container_cluster.main.id
  location = var.zone

  initial_node_count = 0

  autoscaling {
    total_min_node_count = 0
    total_max_node_count = var.tpu_max_nodes
    location_policy      = "ANY"
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.tpu_machine_type
    spot            = var.tpu_spot
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels = {
      "bioscan/pool" = "tpu"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }
  }
}
