"""The `demo` job: stage the bundled lab drops, then run the whole graph on them.

`dagster job execute` takes no partition, so the demo is an op job that registers the demo
partitions and runs `sample_pipeline` for each, then `tune_and_evaluate`, as real runs on the
same instance: the UI shows every one of them.
"""

from pathlib import Path

from bioscan_resources.storage import StorageResource
from dagster import Failure, In, Nothing, OpExecutionContext, job, op

from bioscan_assets.core.ingest.validation import validate_drop
from bioscan_assets.core.storage import Store
from bioscan_assets.partitions import samples_partitions

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
    context.log.info(f"staged {len(keys)} demo drops in {landing.root}: {', '.join(keys)}")
    return keys


def _run_job(context: OpExecutionContext, job_name: str, partition_key: str | None = None) -> bool:
    result = context.repository_def.get_job(job_name).execute_in_process(
        instance=context.instance,
        partition_key=partition_key,
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
    ins={"after": In(Nothing)}, description="Tune the LoRA adapter and write the evaluation report."
)
def run_tune_and_evaluate(context: OpExecutionContext) -> None:
    if not _run_job(context, "tune_and_evaluate"):
        raise Failure("tune_and_evaluate failed; open its run in the UI for details")


@job(name="demo", description="The whole graph on the bundled demo data (see README).")
def demo_job() -> None:
    run_tune_and_evaluate(after=run_sample_pipelines(stage_demo_drops()))
