"""`cohort_report` [taxonomy], partitioned by `tenants`: one HTML page per tenant across its samples.

Thin: `core.calls.cohort_report` reads the tenant's profiles and sample.json metadata and
writes the page; this function picks the tenant's samples and records where the page is.
Each tenant partition depends on every `taxonomic_profile` partition (Dagster has no mapping
from `<tenant>/<sample>` keys to tenant keys), so a new profile marks every tenant's report
stale; only the tenant's own samples are ever read, and a rebuilt report of another tenant
is the same page.
"""

from typing import Any

from bioscan_resources.storage import StorageResource
from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AutomationCondition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from bioscan_assets.assets.keys import COHORT_KEY, NOVELTY_KEY, OWNERS, PROFILE_KEY
from bioscan_assets.core.calls.cohort_report import ReportSection
from bioscan_assets.core.calls.cohort_report import cohort_report as write_report
from bioscan_assets.core.layout import check_tenant, split_partition_key
from bioscan_assets.core.novelty.report import novelty_section
from bioscan_assets.core.taxonomy import RANKS
from bioscan_assets.partitions import samples_partitions, tenants_partitions


class CohortReportConfig(Config):
    rank: str = Field(default="genus", description="Rank of the stacked barplot and the tables.")
    top: int = Field(default=12, description="Taxa named in the barplot; the rest are 'Other'.")


@asset(
    key=COHORT_KEY,
    group_name="taxonomy",
    partitions_def=tenants_partitions,
    deps=[AssetDep(PROFILE_KEY, partition_mapping=AllPartitionMapping()), NOVELTY_KEY],
    kinds={"html"},
    owners=OWNERS,
    code_version="cohort-1",
    # rebuilt when any profile changes; samples still waiting for a profile do not hold it
    automation_condition=AutomationCondition.eager().without(
        ~AutomationCondition.any_deps_missing()
    ),
    description="A tenant's samples side by side: stacked barplots at one rank (as QIIME 2's "
    "taxa barplot) and where each sample was taken (latitude, longitude, depth from "
    "sample.json), then the tables; HTML under <storage>/reports/cohort/tenant=<t>/latest/.",
)
def cohort_report(
    context: AssetExecutionContext, config: CohortReportConfig, storage: StorageResource
) -> MaterializeResult:
    store = storage.output_store()
    tenant = check_tenant(context.partition_key)
    if config.rank not in RANKS:
        raise ValueError(f"rank {config.rank!r} is not one of {', '.join(RANKS)}")
    samples = [
        split_partition_key(key)[1]
        for key in context.instance.get_dynamic_partitions(samples_partitions.name)
        if split_partition_key(key)[0] == tenant
    ]
    report, paths = write_report(
        store,
        tenant,
        samples,
        run_id=context.run.run_id,
        rank=config.rank,
        top=config.top,
        sections=[ReportSection(*novelty_section(store, tenant))],
    )
    summary = report.summary()
    context.log.info(f"cohort report of {tenant}: {summary} -> {store.url(paths['html'])}")
    metadata: dict[str, Any] = {
        "dagster/row_count": summary["samples"],
        "report": MetadataValue.path(store.url(paths["html"])),
        "report_of_this_run": MetadataValue.path(store.url(paths["run_html"])),
        "cohort_tsv": MetadataValue.path(store.url(paths["tsv"])),
        "rank": config.rank,
        **{k: v for k, v in summary.items() if k != "samples"},
        "samples": ", ".join(s.sample_id for s in report.samples) or "none",
    }
    pictures = [f"![{name}]({store.url(paths[name])})" for name in report.images]
    if pictures:
        metadata["preview"] = MetadataValue.md("\n\n".join(pictures))
    return MaterializeResult(metadata=metadata)


cohort_assets = [cohort_report]
