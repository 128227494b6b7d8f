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
