"""The labelled sequences tuning learns from: every reference partition's shard rows with a
taxonomy, and why the other partitions were left out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bioscan_assets.core.ingest.raw import read_raw_manifest
from bioscan_assets.core.ingest.shard_reader import iter_shard_batches, read_shard_manifest
from bioscan_assets.core.layout import split_partition_key
from bioscan_assets.core.storage import Store
from bioscan_assets.core.taxonomy import split_taxon
from bioscan_assets.core.tuning.labels import Lineage


@dataclass
class ReferenceData:
    """Labelled sequences of the reference partitions; ids are `<tenant>/<sample>/<sequence_id>`."""

    ids: list[str]
    sequences: list[str]
    lineages: list[Lineage]
    partitions: dict[str, dict[str, Any]]  # partition key -> rows, labelled rows, shard version

    def subset(self, wanted: Sequence[str]) -> tuple[list[str], list[Lineage]]:
        index = {sid: i for i, sid in enumerate(self.ids)}
        missing = [w for w in wanted if w not in index]
        if missing:
            raise KeyError(
                f"{len(missing)} ids of the recorded split are no longer in the reference shards "
                f"(e.g. {missing[0]}): re-materialise lora_adapter"
            )
        rows = [index[w] for w in wanted]
        return [self.sequences[i] for i in rows], [self.lineages[i] for i in rows]

    def shard_versions(self) -> dict[str, str]:
        """{partition key: shard version} of what was read (provenance inputs)."""
        return {key: info["shard_version"] for key, info in self.partitions.items()}


def find_reference_partitions(
    store: Store, partition_keys: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """(reference partition keys, {key: why it was skipped}) from shard and raw manifests.

    A partition is a reference sample when its drop had a taxonomy.tsv that matched sequences.
    A reference drop whose shards are missing is reported, so the caller can say what to run.
    """
    references, skipped = [], {}
    for key in sorted(partition_keys):
        tenant, sample_id = split_partition_key(key)
        try:
            shards = read_shard_manifest(store, tenant, sample_id)
        except FileNotFoundError:
            try:
                raw = read_raw_manifest(store, tenant, sample_id)
            except FileNotFoundError:
                skipped[key] = "not ingested (no raw or shard manifest)"
                continue
            if raw.get("taxonomy"):
                skipped[key] = "reference drop without shards: materialise sequence_shards"
            else:
                skipped[key] = "no taxonomy.tsv"
            continue
        labels = shards.get("taxonomy") or {}
        if labels.get("matched_ids", 0) > 0:
            references.append(key)
        else:
            skipped[key] = "no taxonomy.tsv" if not labels else "taxonomy.tsv matched no sequence"
    return references, skipped


def no_reference_message(skipped: Mapping[str, str], known: int) -> str:
    """Why tuning cannot start, naming the partitions whose shards would fix it."""
    missing = [k for k, why in skipped.items() if "materialise" in why]
    return (
        "no reference sample (a drop with taxonomy.tsv) has shards"
        + (f"; materialise sequence_shards for {', '.join(missing)}" if missing else "")
        + f" ({known} sample partitions known)"
    )


def load_reference_data(store: Store, partition_keys: Sequence[str]) -> ReferenceData:
    """Every labelled row (non-null `taxonomy`) of the given partitions' shards."""
    data = ReferenceData([], [], [], {})
    for key in sorted(partition_keys):
        tenant, sample_id = split_partition_key(key)
        manifest = read_shard_manifest(store, tenant, sample_id)
        rows = labelled = 0
        for batch in iter_shard_batches(
            store, tenant, sample_id, columns=["sequence_id", "dna_sequence", "taxonomy"]
        ):
            for sid, seq, taxon in zip(
                batch.column(0).to_pylist(),
                batch.column(1).to_pylist(),
                batch.column(2).to_pylist(),
                strict=True,
            ):
                rows += 1
                lineage = split_taxon(taxon)
                if taxon is None or all(label is None for label in lineage):
                    continue
                labelled += 1
                data.ids.append(f"{key}/{sid}")
                data.sequences.append(seq)
                data.lineages.append(lineage)
        data.partitions[key] = {
            "rows": rows,
            "labelled_rows": labelled,
            "shard_version": manifest["version"],
        }
    return data
