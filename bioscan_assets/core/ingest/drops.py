"""The lab-drop contract as types (DESIGN.md, "Lab drop"). Validation lives in drop_validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bioscan_assets.core.ingest.formats import SequenceFormat
from bioscan_assets.core.layout import partition_key


@dataclass(frozen=True)
class DropFile:
    path: str  # relative to the sample folder, as listed in sample.json
    sha256: str
    format: SequenceFormat
    reference: str | None = None  # CRAM only: a FASTA in the same folder (sample.json "reference")
    reference_sha256: str | None = None


@dataclass(frozen=True)
class SampleDrop:
    tenant: str
    sample_id: str
    files: tuple[DropFile, ...]
    taxonomy: str | None  # relative path of taxonomy.tsv, when the sample is a labelled reference
    metadata: dict[str, Any] = field(default_factory=dict)  # every other key of sample.json
    manifest_sha256: str = ""

    @property
    def partition_key(self) -> str:
        return partition_key(self.tenant, self.sample_id)

    def _number(self, key: str) -> float | None:
        value = self.metadata.get(key)
        return float(value) if value is not None else None

    @property
    def latitude(self) -> float | None:
        return self._number("latitude")

    @property
    def longitude(self) -> float | None:
        return self._number("longitude")

    @property
    def depth_m(self) -> float | None:
        return self._number("depth_m")
