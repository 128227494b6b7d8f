# Cloud SQL for PostgreSQL: the Dagster instance's run, event-log and schedule storage. Private IP
# only, TLS required, regional HA, point-in-time recovery.
resource "random_password" "dagster_db" {
  length  = 32
  special = false
}

resource "google_sql_database_instance" "dagster" {
  name                = "${local.name}-dagster"
  database_version    = "POSTGRES_16"
  region              = var.region
  deletion_protection = true

  settings {
    tier              = var.postgres_tier
    edition           = "ENTERPRISE"
    availability_type = "REGIONAL"
    disk_autoresize   = true

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.vpc.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }

    database_flags {
      name  = "max_connections"
      value = "400"
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "dagster" {
  name     = "dagster"
  instance = google_sql_database_instance.dagster.name
}

resource "google_sql_user" "dagster" {
  name     = "dagster"
  instance = google_sql_database_instance.dagster.name
  password = random_password.dagster_db.result
}
