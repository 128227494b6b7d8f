"""`novelty_clusters` [taxonomy], one result per tenant (partitioned by `tenants`).

Thin: which rows are candidates, the threshold, the clustering, the stable ids, the map and the
layout all live in `core.novelty`; this picks the tenant, calls core and records what happened.
It depends on every `taxonomy_calls` partition (AllPartitionMapping: a tenant partition cannot
name "its" sample partitions to Dagster), so any tenant's new calls request every tenant; a
tenant whose own inputs did not change returns its committed result at once (`unchanged`,
same data version), so only the tenant whose calls changed is rebuilt.
"""

import time
from typing import Any

from bioscan_resources.storage import StorageResource
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AutomationCondition,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from bioscan_assets.assets.keys import CALLS_KEY, NOVELTY_KEY, OWNERS
from bioscan_assets.assets.provenance import run_trigger, run_user
from bioscan_assets.core.governance import provenance
from bioscan_assets.core.governance.record import record_run
from bioscan_assets.core.layout import novelty_dir
from bioscan_assets.core.novelty.build import NoveltySettings, build_novelty
from bioscan_assets.core.novelty.report import cluster_rows, markdown_table, summary_line
from bioscan_assets.core.novelty.store import NOVELTY_FORMAT_VERSION
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions, tenants_partitions


class NoveltyConfig(Config):
    rank: str = Field(default="genus", description="Candidates are rows whose call abstains here.")
    threshold_quantile: float = Field(
        default=0.8,
        description="Novel = farther from every reference than this quantile of the references' "
        "distances to their nearest other reference (higher: fewer, surer candidates).",
    )
    min_cluster_size: int = Field(default=3, description="HDBSCAN min_cluster_size.")
    min_samples: int = Field(default=2, description="HDBSCAN min_samples.")
    min_jaccard: float = Field(
        default=0.5, description="Member overlap needed to keep a previous cluster's id."
    )
    model_id: str = Field(
        default="",
        description="Embeddings of this model; default: the one every partition involved has. "
        "A model that is not pretrained falls back to k-mer profiles.",
    )
    shared_reference_keys: list[str] = Field(
        default_factory=list,
        description="Reference partitions every tenant may use besides the 'shared' tenant's "
        "(keep equal to taxonomy_calls' setting).",
    )
    force: bool = Field(default=False, description="Rebuild even when no input changed.")

    def settings(self) -> NoveltySettings:
        return NoveltySettings(
            rank=self.rank,
            threshold_quantile=self.threshold_quantile,
            min_cluster_size=self.min_cluster_size,
            min_samples=self.min_samples,
            min_jaccard=self.min_jaccard,
            model_id=self.model_id,
        )


def _record(
    context: AssetExecutionContext,
    store: Store,
    tenant: str,
    manifest: dict[str, Any],
    config: NoveltyConfig,
    started_at: float,
) -> dict[str, Any]:
    """The run manifest, tenant-wide (`manifests/novelty_clusters/tenant=<t>/_all/`)."""
    run = context.run
    inputs = {f"taxonomy_calls/{tenant}/{s}": v for s, v in manifest["inputs"]["calls"].items()}
    inputs |= {f"references/{k}": v for k, v in manifest["inputs"]["references"].items()}
    doc = provenance.build_run_manifest(
        NOVELTY_KEY.to_user_string(),
        None,
        tenant=tenant,
        run_id=run.run_id,
        tags={k: v for k, v in run.tags.items() if k.startswith(("dagster/", "bioscan/"))},
        trigger=run_trigger(run.tags),
        user=run_user(run.tags),
        inputs=inputs,
        code_version=f"novelty-{NOVELTY_FORMAT_VERSION}",
        config=config.model_dump(),
        rows={"clusters": manifest["rows"], **{k: v for k, v in manifest["counts"].items()}},
        timing=provenance.make_timing(started_at=started_at),
        outputs={"novelty": store.url(novelty_dir(tenant))},
    )
    rel = record_run(store, doc)
    out: dict[str, Any] = provenance.flat_metadata(doc)
    out["provenance/run_manifest"] = MetadataValue.path(store.url(rel))
    out["provenance/input_sha256s"] = MetadataValue.json(doc["inputs"])
    return out


@asset(
    key=NOVELTY_KEY,
    group_name="taxonomy",
    partitions_def=tenants_partitions,
    deps=[AssetDep(CALLS_KEY, partition_mapping=AllPartitionMapping())],
    kinds={"parquet"},
    owners=OWNERS,
    code_version=f"novelty-{NOVELTY_FORMAT_VERSION}",
    # eager, but a sample without calls yet (or failed) must not hold back every tenant
    automation_condition=AutomationCondition.eager().without(
        ~AutomationCondition.any_deps_missing()
    ),
    description="Clusters (HDBSCAN) of the tenant's reads whose calls abstain at genus and that "
    "lie farther from every reference than the references lie from each other, in the model's "
    "embedding space (k-mer profiles when it is not pretrained): id stable across rebuilds, "
    "reads, samples and dates, medoid, nearest reference taxon, agreed rank; Parquet + map PNG + "
    "manifest under <storage>/novelty/tenant=<t>/.",
)
def novelty_clusters(
    context: AssetExecutionContext, config: NoveltyConfig, storage: StorageResource
) -> MaterializeResult:
    started_at = time.time()
    store = storage.output_store()
    tenant = context.partition_key
    partitions = context.instance.get_dynamic_partitions(samples_partitions.name)
    built = build_novelty(
        store,
        tenant,
        partitions,
        config.settings(),
        shared_keys=config.shared_reference_keys,
        force=config.force,
    )
    manifest = built.manifest
    counts = manifest.get("counts") or {}
    context.log.info(
        f"{tenant}: {manifest['rows']} novelty clusters from {counts.get('clustered_rows', 0)} "
        f"of {counts.get('candidate_rows', 0)} candidate reads"
        + (" (inputs unchanged: committed result kept)" if built.unchanged else "")
    )
    _manifest, rows = cluster_rows(store, tenant)
    folder = novelty_dir(tenant)
    threshold = manifest.get("threshold") or {}
    representation = manifest.get("representation") or {}
    metadata: dict[str, Any] = {
        "dagster/row_count": manifest["rows"],
        "summary": summary_line(manifest),
        "clusters": MetadataValue.md(markdown_table(rows)),
        "unchanged": built.unchanged,
        "version": manifest["version"],
        "representation": str(representation.get("representation", "")),
        "representation_detail": MetadataValue.json(representation),
        "threshold": MetadataValue.json(threshold),
        "counts": MetadataValue.json(counts),
        "id_matching": MetadataValue.json(manifest.get("id_matching") or {}),
        "samples_waiting_for_calls": MetadataValue.json(
            manifest.get("samples_waiting_for_calls") or []
        ),
        "novelty_dir": MetadataValue.path(store.url(folder)),
    }
    if threshold.get("value") is not None:
        metadata["threshold_value"] = float(threshold["value"])
    if manifest.get("map"):
        url = store.url(f"{folder}/{manifest['map']['path']}")
        metadata["novelty_map"] = MetadataValue.path(url)
        metadata["novelty_map_preview"] = MetadataValue.md(f"![novelty map]({url})")
    metadata |= _record(context, store, tenant, manifest, config, started_at)
    return MaterializeResult(metadata=metadata, data_version=DataVersion(manifest["version"]))


novelty_assets = [novelty_clusters]
