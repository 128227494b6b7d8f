"""The `demo` job: stage the bundled lab drops, then run the whole graph on them.

`dagster job execute` takes no partition, so the demo is an op job that registers the demo
partitions and runs `sample_pipeline` for each, then `tune_and_evaluate` once per tenant holding
reference samples (each tenant's adapter learns only from references it may use), then
`sample_taxonomy` for each sample and `cohort_reports` for each tenant, as real runs on the
same instance: the UI shows every one of them. Its last step logs where the reports and
profiles are (`bioscan outputs` prints the same).
"""

from pathlib import Path

from bioscan_resources.storage import StorageResource
from dagster import Failure, In, Nothing, OpExecutionContext, job, op

from bioscan_assets.core.calls.references import SHARED_TENANT, private_owners
from bioscan_assets.core.governance.outputs import published_outputs
from bioscan_assets.core.ingest.validation import validate_drop
from bioscan_assets.core.layout import split_partition_key
from bioscan_assets.core.storage import Store
from bioscan_assets.core.tuning.reference_data import find_reference_partitions
from bioscan_assets.partitions import samples_partitions, tenants_partitions

DEMO_LANDING = Path(__file__).parent / "demo_data" / "landing"


def stage_drops(source: Path, landing: Store) -> list[tuple[str, str]]:
    """Copy each bundled drop into the landing area, sample.json last; existing files are kept."""
    staged = []
    for manifest in sorted(source.glob("*/*/sample.json")):
        folder = manifest.parent
        tenant, sample_id = folder.parent.name, folder.name
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "sample.json")
        for path in [*files, manifest]:
            rel = f"{tenant}/{sample_id}/{path.name}"
            if not landing.exists(rel):
                landing.put_file(path, rel)
        staged.append((tenant, sample_id))
    return staged


@op(description="Copy the bundled demo drops into the landing area and register their partitions.")
def stage_demo_drops(context: OpExecutionContext, storage: StorageResource) -> list[str]:
    landing = storage.landing_store()
    keys = []
    for tenant, sample_id in stage_drops(DEMO_LANDING, landing):
        drop = validate_drop(landing, tenant, sample_id)
        keys.append(drop.partition_key)
    context.instance.add_dynamic_partitions(samples_partitions.name, keys)
    context.instance.add_dynamic_partitions(tenants_partitions.name, _tenants(keys))
    context.log.info(f"staged {len(keys)} demo drops in {landing.root}: {', '.join(keys)}")
    return keys


def _tenants(partition_keys: list[str]) -> list[str]:
    return sorted({split_partition_key(key)[0] for key in partition_keys})


def _run_job(
    context: OpExecutionContext,
    job_name: str,
    partition_key: str | None = None,
    run_config: dict | None = None,
) -> bool:
    result = context.repository_def.get_job(job_name).execute_in_process(
        instance=context.instance,
        partition_key=partition_key,
        run_config=run_config,
        raise_on_error=False,
        tags={"bioscan/trigger": "demo", "bioscan/parent_run_id": context.run_id},
    )
    label = f"{job_name}[{partition_key}]" if partition_key else job_name
    context.log.info(f"{label}: run {result.run_id} {'succeeded' if result.success else 'FAILED'}")
    return result.success


@op(
    description="Run sample_pipeline for every demo sample; one failing sample does not stop the rest."
)
def run_sample_pipelines(context: OpExecutionContext, partition_keys: list[str]) -> None:
    failed = [key for key in partition_keys if not _run_job(context, "sample_pipeline", key)]
    if failed:
        raise Failure(f"sample_pipeline failed for {failed}; open those runs in the UI for details")


@op(
    ins={"after": In(Nothing)},
    description="Per tenant holding reference samples: tune its LoRA adapter on the references "
    "it may use and write its evaluation report.",
)
def run_tune_and_evaluate(
    context: OpExecutionContext, storage: StorageResource, partition_keys: list[str]
) -> None:
    references, _skipped = find_reference_partitions(storage.output_store(), partition_keys)
    failed = []
    for tenant in private_owners(references) or [SHARED_TENANT]:
        scope = {"config": {"tenant": tenant}}
        run_config = {"ops": {"lora_adapter": scope, "evaluation_report": scope}}
        if not _run_job(context, "tune_and_evaluate", run_config=run_config):
            failed.append(tenant)
    if failed:
        raise Failure(f"tune_and_evaluate failed for {failed}; open those runs in the UI")


@op(
    ins={"after": In(Nothing)},
    description="Taxonomy calls and profile for every demo sample, with the evaluated classifier.",
)
def run_sample_taxonomy(context: OpExecutionContext, partition_keys: list[str]) -> None:
    failed = [key for key in partition_keys if not _run_job(context, "sample_taxonomy", key)]
    if failed:
        raise Failure(f"sample_taxonomy failed for {failed}; open those runs in the UI for details")


@op(
    ins={"after": In(Nothing)},
    description="Novelty clusters and the cohort report of every demo tenant.",
)
def run_cohort_reports(context: OpExecutionContext, partition_keys: list[str]) -> None:
    tenants = _tenants(partition_keys)
    failed = [t for t in tenants if not _run_job(context, "cohort_reports", t)]
    if failed:
        raise Failure(f"cohort_reports failed for {failed}; open those runs in the UI")


@op(
    ins={"after": In(Nothing)},
    description="Log where the newest reports and the sample profiles are.",
)
def show_outputs(context: OpExecutionContext, storage: StorageResource) -> list[str]:
    store = storage.output_store()
    lines = [f"{o.label()}: {store.url(o.path)}" for o in published_outputs(store)]
    context.log.info(
        "reports and profiles (`bioscan outputs` lists them again):\n" + "\n".join(lines)
    )
    return lines


@job(name="demo", description="The whole graph on the bundled demo data (see README).")
def demo_job() -> None:
    keys = stage_demo_drops()
    evaluated = run_tune_and_evaluate(keys, after=run_sample_pipelines(keys))
    reported = run_cohort_reports(keys, after=run_sample_taxonomy(keys, after=evaluated))
    show_outputs(after=reported)
