"""What decides a sample's shard bytes: the QC/layout knobs, the Parquet encoder options, and
the version hash that names the parts.

Same inputs and config give byte-identical parts, so everything that could change a byte
(format version, input sha256s, config, Arrow version) goes into `shard_version`; bump
`SHARD_FORMAT_VERSION` when the code writes different bytes for the same inputs and config.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from bioscan_assets.core.ingest.readers import BATCH_BASES, BATCH_RECORDS

# 2: the `sequence_hash` column (xxh3-128 of the normalised sequence) after `mean_quality`;
# every shard version changed once, on purpose, when it was added.
SHARD_FORMAT_VERSION = 2
PART_RE = re.compile(r"part-[0-9a-f]+-\d{5}\.parquet")

_CODECS = {"zstd", "snappy", "lz4", "gzip", "brotli", "none"}
_LEVELLED = {"zstd", "gzip", "brotli"}


@dataclass(frozen=True)
class ShardConfig:
    """QC and layout knobs; every field feeds the shard version."""

    min_length: int = 50
    max_n_fraction: float = 0.1
    rows_per_part: int = 1_000_000
    bases_per_part: int = 256_000_000
    compression: str = "zstd"
    compression_level: int | None = 1
    batch_records: int = BATCH_RECORDS
    batch_bases: int = BATCH_BASES
    # Parts are written by this many threads, batches alternating between them (so rows of
    # consecutive batches land in different parts); fixed, never taken from the CPU count,
    # because it decides the bytes written.
    writer_threads: int = 2

    def __post_init__(self) -> None:
        if self.min_length < 0:
            raise ValueError("min_length must be >= 0")
        if not 0.0 <= self.max_n_fraction <= 1.0:
            raise ValueError("max_n_fraction must be within [0, 1]")
        if self.rows_per_part < 1 or self.bases_per_part < 1:
            raise ValueError("rows_per_part and bases_per_part must be >= 1")
        if self.writer_threads < 1:
            raise ValueError("writer_threads must be >= 1")
        if self.compression not in _CODECS:
            raise ValueError(f"compression must be one of {', '.join(sorted(_CODECS))}")


def config_dict(config: ShardConfig) -> dict[str, Any]:
    return asdict(config)


def shard_version(raw_manifest: Mapping[str, Any], config: ShardConfig) -> str:
    """Short content hash of everything that decides the shard bytes."""
    inputs = {
        "format_version": SHARD_FORMAT_VERSION,
        "manifest_sha256": raw_manifest["manifest_sha256"],
        "files": [(f["path"], f["sha256"]) for f in raw_manifest["files"]],
        "references": [(r["path"], r["sha256"]) for r in raw_manifest.get("references", [])],
        "taxonomy": (raw_manifest.get("taxonomy") or {}).get("sha256"),
        "config": config_dict(config),
        "arrow": pa.__version__,
    }
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def part_name(version: str, index: int) -> str:
    return f"part-{version}-{index:05d}.parquet"


def parquet_writer_options(config: ShardConfig) -> dict[str, Any]:
    """Keyword arguments of `pq.ParquetWriter` for shard parts."""
    small_strings = ["taxonomy", "tenant", "sample_id", "source_file"]
    return {
        "compression": config.compression,
        "compression_level": (
            config.compression_level if config.compression in _LEVELLED else None
        ),
        # Dictionary pages pay off only for the repeated columns; long unique strings are
        # written plain and without min/max statistics (which would copy each long value).
        "use_dictionary": small_strings,
        "write_statistics": [
            "sequence_id",
            "depth",
            "latitude",
            "longitude",
            "read_number",
            "length",
            "gc_fraction",
            "n_fraction",
            "mean_quality",
            *small_strings,
        ],
        "version": "2.6",
        "data_page_version": "1.0",
    }
