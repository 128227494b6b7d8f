"""Ingest assets: a lab drop to immutable raw copies, then to Parquet shards.

Thin wrappers: the work (and its tests) lives in `core.ingest` (`raw`, `shard_writer`,
`shard_checks`). Errors in a drop surface as `dagster.Failure` whose description names the
file and line or field.
"""

import dataclasses
import hashlib
import json
import time
from typing import Any

from bioscan_resources.storage import StorageResource
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
    asset_check,
)
from pydantic import Field

from bioscan_assets.assets.batch import (
    SAMPLE_BACKFILL,
    combine_check_results,
    materialize_partitions,
    partition_keys,
)
from bioscan_assets.assets.keys import OWNERS, RAW_KEY, SHARDS_KEY
from bioscan_assets.assets.provenance import record_provenance, shard_data_version
from bioscan_assets.assets.retry import STORAGE_RETRY
from bioscan_assets.core.errors import DropError
from bioscan_assets.core.ingest import validation as drop_validation
from bioscan_assets.core.ingest.raw import RAW_FORMAT_VERSION, copy_drop, read_raw_manifest
from bioscan_assets.core.ingest.shard_checks import (
    duplicate_sequence_ids,
    parts_off_schema,
    rows_in_parts,
)
from bioscan_assets.core.ingest.shard_config import SHARD_FORMAT_VERSION, ShardConfig
from bioscan_assets.core.ingest.shard_reader import read_shard_manifest
from bioscan_assets.core.ingest.shard_writer import write_shards
from bioscan_assets.core.layout import shard_dir, split_partition_key
from bioscan_assets.core.schema import SHARD_SCHEMA
from bioscan_assets.partitions import samples_partitions

_MAX_TABLE_ROWS = 50


_CORE = ShardConfig()


class ShardsConfig(Config):
    """QC and layout of `sequence_shards`; every value feeds the shard version hash.

    Defaults are the core `ShardConfig`'s, so the asset and direct callers shard alike.
    """

    min_length: int = Field(
        default=_CORE.min_length,
        ge=0,
        description="Drop reads shorter than this (bases). 50 keeps trimmed 2x150 bp reads and "
        "every 16S amplicon, and drops adapter dimers and fragments.",
    )
    max_n_fraction: float = Field(
        default=_CORE.max_n_fraction,
        ge=0.0,
        le=1.0,
        description="Drop reads whose fraction of N (any non-ACGT code) exceeds this.",
    )
    rows_per_part: int = Field(
        default=_CORE.rows_per_part, ge=1, description="Rows per Parquet part."
    )
    bases_per_part: int = Field(
        default=_CORE.bases_per_part, ge=1, description="Bases per Parquet part (long reads)."
    )
    compression: str = Field(
        default=_CORE.compression,
        description="Parquet codec: zstd (default, smallest), snappy or lz4 (faster to write), gzip, brotli, none.",
    )
    compression_level: int | None = Field(
        default=_CORE.compression_level, description="Codec level (zstd)."
    )

    def to_core(self) -> ShardConfig:
        """The core config: these fields set, the rest (batching, lanes) at their defaults."""
        return dataclasses.replace(
            _CORE, **{name: getattr(self, name) for name in type(self).model_fields}
        )


def _failure(exc: DropError) -> Failure:
    return Failure(
        description=str(exc),
        metadata={"location": exc.location, "reason": exc.reason},
        allow_retries=False,
    )


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows[:_MAX_TABLE_ROWS]:
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    if len(rows) > _MAX_TABLE_ROWS:
        lines.append(f"| ... {len(rows) - _MAX_TABLE_ROWS} more | " + " |" * (len(header) - 1))
    return "\n".join(lines)


def _config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@asset(
    key=RAW_KEY,
    group_name="ingest",
    partitions_def=samples_partitions,
    kinds={"python", "storage"},
    owners=OWNERS,
    code_version=f"raw-{RAW_FORMAT_VERSION}",
    retry_policy=STORAGE_RETRY,
    backfill_policy=SAMPLE_BACKFILL,
    description="The drop's files, checksum-verified, in immutable content-addressed storage "
    "under raw/ (so cleaning the landing area loses nothing), with a raw manifest.",
)
def raw_sequences(context: AssetExecutionContext, storage: StorageResource) -> MaterializeResult:
    return materialize_partitions(
        context, lambda key: _copy_raw(context, storage, key), summary=("records", "bytes")
    )


def _copy_raw(
    context: AssetExecutionContext, storage: StorageResource, key: str
) -> MaterializeResult:
    tenant, sample_id = split_partition_key(key)
    landing, out = storage.landing_store(), storage.output_store()
    started_at = time.time()
    location = f"{tenant}/{sample_id}/{drop_validation.MANIFEST_NAME}"
    started = time.perf_counter()
    try:
        try:
            manifest_bytes = landing.read_bytes(location)
        except FileNotFoundError:
            raise DropError(location, "sample.json is missing from the landing area") from None
        # Structure, names, paths and presence here; every byte is hashed while it is copied.
        drop = drop_validation.validate_drop(
            landing, tenant, sample_id, verify_checksums=False, manifest=manifest_bytes
        )
        raw = copy_drop(landing, out, drop, manifest_bytes, progress=context.log.info)
    except DropError as exc:
        context.log.error(f"drop {tenant}/{sample_id} rejected: {exc}")
        raise _failure(exc) from exc
    seconds = time.perf_counter() - started
    total = sum(f["size"] for f in raw["files"])
    rows = [
        [f["path"], f["format"], f["size"], f["records"], f["sha256"][:16]] for f in raw["files"]
    ]
    for extra in [*raw["references"], *([raw["taxonomy"]] if raw["taxonomy"] else [])]:
        rows.append([extra["path"], "reference/taxonomy", extra["size"], "", extra["sha256"][:16]])
    provenance = record_provenance(
        context,
        out,
        partition_key=key,
        started_at=started_at,
        inputs={f["path"]: f["sha256"] for f in raw["files"]},
        rows={"records": sum(f["records"] for f in raw["files"])},
        outputs={"bytes": total, "manifest_sha256": raw["manifest_sha256"]},
    )
    return MaterializeResult(
        metadata={
            **provenance,
            "files": MetadataValue.md(
                _md_table(["file", "format", "bytes", "records", "sha256 (prefix)"], rows)
            ),
            "file_count": len(raw["files"]),
            "formats": ", ".join(sorted({f["format"] for f in raw["files"]})),
            "records": sum(f["records"] for f in raw["files"]),
            "bytes": total,
            "sha256s": MetadataValue.json({f["path"]: f["sha256"] for f in raw["files"]}),
            "record_counts": MetadataValue.json({f["path"]: f["records"] for f in raw["files"]}),
            "sizes": MetadataValue.json({f["path"]: f["size"] for f in raw["files"]}),
            "manifest_sha256": raw["manifest_sha256"],
            "taxonomy_rows": (raw["taxonomy"] or {}).get("rows"),
            "seconds": round(seconds, 3),
            "MB_per_s": round(total / 1e6 / max(seconds, 1e-9), 1),
            "raw_manifest": MetadataValue.path(out.url(f"raw/tenant={tenant}/sample={sample_id}")),
        },
    )


_COLUMN_SCHEMA = TableSchema(
    columns=[TableColumn(field.name, str(field.type)) for field in SHARD_SCHEMA]
)


@asset(
    key=SHARDS_KEY,
    group_name="ingest",
    partitions_def=samples_partitions,
    deps=[raw_sequences],
    kinds={"python", "parquet"},
    owners=OWNERS,
    code_version=f"shards-{SHARD_FORMAT_VERSION}",
    retry_policy=STORAGE_RETRY,
    backfill_policy=SAMPLE_BACKFILL,
    description="Normalised, QC-filtered reads with taxonomy and sample metadata as "
    "Hive-partitioned Parquet (shards/tenant=<t>/sample=<s>/), built from raw/ only.",
)
def sequence_shards(
    context: AssetExecutionContext, config: ShardsConfig, storage: StorageResource
) -> MaterializeResult:
    core_config = config.to_core()
    return materialize_partitions(
        context,
        lambda key: _write_shards(context, storage, core_config, key),
        summary=("records_read", "rows", "dropped_too_short", "dropped_too_many_n"),
    )


def _write_shards(
    context: AssetExecutionContext, storage: StorageResource, core_config: ShardConfig, key: str
) -> MaterializeResult:
    tenant, sample_id = split_partition_key(key)
    out = storage.output_store()
    started_at = time.time()
    started = time.perf_counter()
    try:
        raw = read_raw_manifest(out, tenant, sample_id)
        # The sample.json kept with the raw copy, never the landing area (it may be gone).
        drop = drop_validation.parse_sample_json(
            raw["sample_json"].encode("utf-8"),
            location=f"{tenant}/{sample_id}/sample.json (raw copy)",
        )
        manifest = write_shards(out, drop, raw, core_config, progress=context.log.info)
    except DropError as exc:
        context.log.error(f"sample {tenant}/{sample_id} cannot be sharded: {exc}")
        raise _failure(exc) from exc
    seconds = time.perf_counter() - started
    per_file = manifest["inputs"]["files"]
    table_rows = [
        [
            f["path"],
            f["format"],
            f["read_number"],
            f["records"],
            f["dropped"]["too_short"],
            f["dropped"]["too_many_n"],
            f["rows"],
            f["bases"],
        ]
        for f in per_file
    ]
    taxonomy = manifest.get("taxonomy") or {}
    config_values = manifest["config"]
    provenance = record_provenance(
        context,
        out,
        partition_key=key,
        started_at=started_at,
        inputs={
            **{f["path"]: f["sha256"] for f in per_file},
            "raw_manifest": raw["manifest_sha256"],
        },
        config=config_values,
        rows={"rows": manifest["rows"], "records_read": manifest["records_read"]},
    )
    metadata: dict[str, Any] = {
        **provenance,
        "dagster/row_count": manifest["rows"],
        "dagster/column_schema": _COLUMN_SCHEMA,
        "files": MetadataValue.md(
            _md_table(
                [
                    "file",
                    "format",
                    "read",
                    "records",
                    "too short",
                    "too many N",
                    "rows",
                    "bases",
                ],
                table_rows,
            )
        ),
        "records_read": manifest["records_read"],
        "rows": manifest["rows"],
        "dropped_too_short": manifest["dropped"]["too_short"],
        "dropped_too_many_n": manifest["dropped"]["too_many_n"],
        "skipped_secondary": manifest["skipped_secondary"],
        "duplicate_ids_renamed": manifest["duplicate_ids_renamed"],
        "duplicate_id_examples": MetadataValue.json(manifest["duplicate_id_examples"]),
        "parts": len(manifest["files"]),
        "shard_version": manifest["version"],
        "bases_read": manifest["bases_read"],
        "bases_written": manifest["bases_written"],
        "seconds": round(seconds, 3),
        "Mbases_per_s": round(manifest["bases_read"] / 1e6 / max(seconds, 1e-9), 4),
        "MB_per_s": round(sum(f["size"] for f in raw["files"]) / 1e6 / max(seconds, 1e-9), 1),
        "input_sha256s": MetadataValue.json({f["path"]: f["sha256"] for f in per_file}),
        "config_hash": _config_hash(config_values),
        "shards": MetadataValue.path(out.url(shard_dir(tenant, sample_id))),
    }
    if taxonomy:
        metadata |= {
            "taxonomy_ids": taxonomy["ids"],
            "taxonomy_unmatched_ids": taxonomy["unmatched_ids"],
            "taxonomy_unmatched_examples": MetadataValue.json(taxonomy["unmatched_examples"]),
            "rows_without_taxonomy": taxonomy["rows_without_taxonomy"],
        }
        if taxonomy["unmatched_ids"]:
            context.log.warning(
                f"{taxonomy['unmatched_ids']} taxonomy ids match no sequence, e.g. "
                f"{', '.join(taxonomy['unmatched_examples'])}"
            )
    return MaterializeResult(metadata=metadata, data_version=shard_data_version(manifest))


# --- checks ------------------------------------------------------------------------------------


@asset_check(
    asset=sequence_shards,
    partitions_def=samples_partitions,
    blocking=True,
    description="rows = records read - filtered, and the parts hold exactly the manifest's rows.",
)
def shard_row_count(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    return combine_check_results({key: _row_count(storage, key) for key in partition_keys(context)})


def _row_count(storage: StorageResource, key: str) -> AssetCheckResult:
    tenant, sample_id = split_partition_key(key)
    out = storage.output_store()
    manifest = read_shard_manifest(out, tenant, sample_id)
    in_parts = rows_in_parts(out, tenant, sample_id, manifest)
    filtered = sum(manifest["dropped"].values())
    expected = manifest["records_read"] - filtered
    passed = manifest["rows"] == expected == in_parts
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "records_read": manifest["records_read"],
            "filtered": filtered,
            "manifest_rows": manifest["rows"],
            "rows_in_parts": in_parts,
        },
    )


@asset_check(
    asset=sequence_shards,
    partitions_def=samples_partitions,
    blocking=True,
    description="sequence_id is unique within the sample.",
)
def shard_unique_ids(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    return combine_check_results(
        {key: _unique_ids(storage, key) for key in partition_keys(context)}
    )


def _unique_ids(storage: StorageResource, key: str) -> AssetCheckResult:
    tenant, sample_id = split_partition_key(key)
    duplicates, examples = duplicate_sequence_ids(storage.output_store(), tenant, sample_id)
    return AssetCheckResult(
        passed=duplicates == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"duplicates": duplicates, "examples": MetadataValue.json(examples)},
    )


@asset_check(
    asset=sequence_shards,
    partitions_def=samples_partitions,
    blocking=True,
    description="Every part's schema equals the shard schema of DESIGN.md (names, types, order).",
)
def shard_schema(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
    return combine_check_results(
        {key: _schema_of_parts(storage, key) for key in partition_keys(context)}
    )


def _schema_of_parts(storage: StorageResource, key: str) -> AssetCheckResult:
    tenant, sample_id = split_partition_key(key)
    out = storage.output_store()
    manifest = read_shard_manifest(out, tenant, sample_id)
    mismatched = parts_off_schema(out, tenant, sample_id, manifest)
    return AssetCheckResult(
        passed=not mismatched,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "parts": len(manifest["files"]),
            "mismatched": MetadataValue.json(mismatched),
            "expected": MetadataValue.md(
                "\n".join(f"- `{field.name}`: {field.type}" for field in SHARD_SCHEMA)
            ),
        },
    )


ingest_assets = [raw_sequences, sequence_shards]
ingest_checks = [shard_row_count, shard_unique_ids, shard_schema]
