# bioscan on Google Cloud: GCS landing/storage buckets, a GKE cluster with CPU and TPU node pools,
# Workload Identity service accounts and Cloud SQL Postgres for the Dagster instance.
terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.20"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Keep state in a bucket created once by hand (it cannot hold its own state):
  #   terraform init -backend-config="bucket=<project>-tfstate" -backend-config="prefix=bioscan"
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  name = var.name
  apis = [
    "artifactregistry.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  service            = each.value
  disable_on_destroy = false
}
