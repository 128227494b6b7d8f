"""Where things live under the storage root; every module builds paths through here."""

from __future__ import annotations

import re

TENANT_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SAMPLE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_tenant(tenant: object) -> str:
    """The tenant name, refused unless it matches the contract (it becomes a path part)."""
    if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
        raise ValueError(
            f"tenant {tenant!r} is not a valid tenant name (lower-case letters, digits and '-', "
            "starting with a letter or digit, at most 63 characters)"
        )
    return tenant


def check_sample_id(sample_id: object) -> str:
    """The sample id, refused unless it matches the contract and cannot climb out of a folder."""
    if not isinstance(sample_id, str) or not SAMPLE_ID_RE.fullmatch(sample_id) or ".." in sample_id:
        raise ValueError(f"sample id {sample_id!r} is not a valid sample id (see DESIGN.md)")
    return sample_id


def partition_key(tenant: str, sample_id: str) -> str:
    return f"{tenant}/{sample_id}"


def split_partition_key(key: str) -> tuple[str, str]:
    """`<tenant>/<sample_id>` -> (tenant, sample_id), refusing keys that could escape a prefix."""
    tenant, sep, sample_id = key.partition("/")
    if not sep or not TENANT_RE.fullmatch(tenant) or not SAMPLE_ID_RE.fullmatch(sample_id):
        raise ValueError(f"partition key {key!r} is not '<tenant>/<sample_id>'")
    if ".." in sample_id:
        raise ValueError(f"partition key {key!r}: sample_id must not contain '..'")
    return tenant, sample_id


def raw_blob(sha256: str) -> str:
    return f"raw/sha256/{sha256[:2]}/{sha256}"


def raw_manifest(tenant: str, sample_id: str) -> str:
    return f"raw/tenant={tenant}/sample={sample_id}/manifest.json"


def shard_dir(tenant: str, sample_id: str) -> str:
    return f"shards/tenant={tenant}/sample={sample_id}"


def embedding_dir(model_id: str, tenant: str, sample_id: str) -> str:
    return f"embeddings/{model_id}/tenant={tenant}/sample={sample_id}"


def lancedb_dir(tenant: str) -> str:
    return f"lancedb/{tenant}"


def quarantine_record(tenant: str, sample_id: str) -> str:
    return f"quarantine/{tenant}/{sample_id}.json"


def run_manifest(asset: str, tenant: str, sample_id: str) -> str:
    """The latest run manifest of a partition (one `<run_id>.json` per run beside it)."""
    return f"manifests/{asset}/tenant={tenant}/sample={sample_id}/latest.json"


# --- prefixes listed or priced as a whole (retention, costs, run manifests) -----------------


def raw_tenant_dir(tenant: str) -> str:
    return f"raw/tenant={tenant}"


def shards_root() -> str:
    return "shards"


def shard_tenant_dir(tenant: str) -> str:
    return f"shards/tenant={tenant}"


def embeddings_root() -> str:
    """One folder per model id below it."""
    return "embeddings"


def embedding_model_dir(model_id: str) -> str:
    return f"embeddings/{model_id}"


def embedding_tenant_dir(model_id: str, tenant: str) -> str:
    return f"embeddings/{model_id}/tenant={tenant}"


def lancedb_root() -> str:
    """One database per tenant below it."""
    return "lancedb"


def lancedb_table_dir(tenant: str, table: str) -> str:
    """The files of one LanceDB table (LanceDB names its folder `<table>.lance`)."""
    return f"lancedb/{tenant}/{table}.lance"


def quarantine_dir(tenant: str) -> str:
    return f"quarantine/{tenant}"


def manifests_root() -> str:
    """Run manifests: one folder per asset below it."""
    return "manifests"


def run_manifest_tenant_dir(asset: str, tenant: str) -> str:
    """Every run manifest of one tenant for an asset (per sample and tenant-wide) lies below."""
    return f"manifests/{asset}/tenant={tenant}"


def run_manifest_dir(asset: str, tenant: str | None = None, sample_id: str | None = None) -> str:
    """The folder of an asset's run manifests: per sample, tenant-wide (`_all`) or `_global`."""
    if sample_id is not None:
        return f"{run_manifest_tenant_dir(asset, str(tenant))}/sample={sample_id}"
    if tenant is not None:
        return f"{run_manifest_tenant_dir(asset, tenant)}/_all"
    return f"manifests/{asset}/_global"


def retention_audit_dir() -> str:
    return "audit/retention"


def taxonomy_dir(tenant: str, sample_id: str) -> str:
    """Taxonomy calls of a sample: Parquet parts, `taxonomy.tsv`, `_manifest.json` last."""
    return f"taxonomy/tenant={tenant}/sample={sample_id}"


def taxonomy_tenant_dir(tenant: str) -> str:
    return f"taxonomy/tenant={tenant}"


def profile_dir(tenant: str, sample_id: str) -> str:
    """Taxonomic profile of a sample: `profile.parquet`, `profile.tsv`, `barplot.png`."""
    return f"profiles/tenant={tenant}/sample={sample_id}"


def profile_tenant_dir(tenant: str) -> str:
    """Every sample profile of one tenant lies below (one `sample=<s>` folder each)."""
    return f"profiles/tenant={tenant}"


def novelty_dir(tenant: str) -> str:
    """A tenant's novelty result: versioned Parquet + PNG files, `_manifest.json` last."""
    return f"novelty/tenant={check_tenant(tenant)}"


def adapters_root() -> str:
    return "adapters"


def adapter_root(model_id: str, tenant: str | None) -> str:
    """A model's adapters for one tenant (or, without a tenant, those trained on every tenant)."""
    return f"adapters/{model_id}" + (f"/tenant={check_tenant(tenant)}" if tenant else "")


def evaluation_report_dir(tenant: str) -> str:
    """Evaluation reports of one tenant's adapters ('' = an adapter that names no tenant);
    `latest/` holds the newest, each run its own folder beside it."""
    if not tenant:
        return "reports/evaluation/_global"
    return f"reports/evaluation/tenant={check_tenant(tenant)}"


def cohort_report_dir(tenant: str) -> str:
    """A tenant's cohort report; `latest/` holds the newest, each run its own folder beside it."""
    return f"reports/cohort/tenant={tenant}"


_WANDB_RUN_RE = re.compile(r"(offline-)?run-\d{8}_\d{6}-[A-Za-z0-9]+")


def wandb_run_archive(run_folder: str) -> str:
    """An offline W&B run folder copied off a pod's disk, for a later `wandb sync`."""
    if not _WANDB_RUN_RE.fullmatch(run_folder):
        raise ValueError(f"{run_folder!r} is not a W&B run folder name")
    return f"wandb/{run_folder}"


def alert_record(day: str, run_id: str) -> str:
    """A failed run's alert (`day` is its UTC date, YYYY-MM-DD, so a day lists on its own)."""
    return f"alerts/{day}/{run_id}.json"


# --- the hash store: embedding vectors by sequence hash, per tenant and model weights ---------

_WEIGHTS_PART_RE = re.compile(r"[0-9A-Za-z_-]{1,16}")
_COMMIT_RE = re.compile(r"[0-9a-f]{20}")


def hash_store_root() -> str:
    """One folder per model id below it, then one per weights hash (first 16 characters)."""
    return "vectors"


def hash_store_model_dir(model_id: str) -> str:
    return f"vectors/{model_id}"


def hash_store_dir(model_id: str, weights_hash: str, tenant: str) -> str:
    """A tenant's vectors of one model's weights; built only from a validated tenant name."""
    weights = weights_hash[:16]
    if not _WEIGHTS_PART_RE.fullmatch(weights):
        raise ValueError(f"weights hash {weights_hash!r} cannot name a folder")
    return f"vectors/{model_id}/{weights}/tenant={check_tenant(tenant)}"


def hash_store_commit_dir(model_id: str, weights_hash: str, tenant: str, commit: str) -> str:
    """One commit of the hash store: parts, then `_manifest.json` last."""
    if not _COMMIT_RE.fullmatch(commit):
        raise ValueError(f"{commit!r} is not a hash-store commit id")
    return f"{hash_store_dir(model_id, weights_hash, tenant)}/commit={commit}"
