variable "project_id" {
  description = "Google Cloud project that holds the deployment."
  type        = string
}

variable "name" {
  description = "Prefix for every resource name (cluster, buckets, service accounts)."
  type        = string
  default     = "bioscan"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name must be 3-21 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "region" {
  description = "Region of the buckets, Cloud SQL and the cluster's network."
  type        = string
  default     = "us-central1"
}

variable "zone" {
  description = "Zone of the (zonal) GKE cluster; it must offer the TPU machine type below."
  type        = string
  default     = "us-central1-a"
}

variable "namespace" {
  description = "Kubernetes namespace of the Helm release (Workload Identity binds KSAs in it)."
  type        = string
  default     = "bioscan"
}

variable "cpu_machine_type" {
  description = "Machine type of the CPU node pool (Dagster services, run workers, ingest/index steps)."
  type        = string
  default     = "n2-standard-8"
}

variable "cpu_max_nodes" {
  description = "Upper bound of the CPU node pool's autoscaler."
  type        = number
  default     = 10
}

variable "tpu_machine_type" {
  description = "TPU VM machine type: ct5lp-hightpu-8t (v5e, 8 chips, topology 2x4) or ct6e-standard-8t (v6e, 2x4)."
  type        = string
  default     = "ct5lp-hightpu-8t"

  validation {
    condition     = can(regex("^ct(5lp-hightpu|6e-standard)-(1|4|8)t$", var.tpu_machine_type))
    error_message = "tpu_machine_type must be a TPU v5e (ct5lp-hightpu-Nt) or v6e (ct6e-standard-Nt) machine type."
  }
}

variable "tpu_topology" {
  description = "TPU slice topology; must match BIOSCAN_TPU_TOPOLOGY in deploy/helm/values.yaml."
  type        = string
  default     = "2x4"
}

variable "tpu_max_nodes" {
  description = "Upper bound of the TPU node pool (it scales to zero when no embedding step runs)."
  type        = number
  default     = 2
}

variable "tpu_spot" {
  description = "Use Spot TPU VMs (cheaper; steps are retried and embeddings resume from chunks)."
  type        = bool
  default     = true
}

variable "shards_expire_days" {
  description = "Backstop age (days) after which GCS deletes Parquet shards; keep it above the retention policy of sequence_shards so the lineage-aware retention job acts first."
  type        = number
  default     = 90
}

variable "embeddings_expire_days" {
  description = "Backstop age (days) after which GCS deletes embedding Parquet files; keep it above the retention policy of sequence_embeddings."
  type        = number
  default     = 90
}

variable "compute_logs_expire_days" {
  description = "Days the step stdout/stderr captured by Dagster are kept."
  type        = number
  default     = 90
}

variable "labs" {
  description = "Tenant (lab) id => principals allowed to upload to gs://<landing>/<tenant>/, e.g. {\"acme-lab\" = [\"group:sequencing@acme.example\"]}."
  type        = map(list(string))
  default     = {}

  validation {
    condition     = alltrue([for tenant in keys(var.labs) : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", tenant))])
    error_message = "Every lab key must be a tenant id matching [a-z0-9][a-z0-9-]{0,62}."
  }
}

variable "postgres_tier" {
  description = "Cloud SQL machine tier of the Dagster instance database."
  type        = string
  default     = "db-custom-2-7680"
}
