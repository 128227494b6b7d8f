"""A small code location for `bioscan submit`/`follow` tests: one job that works, one that fails.

Partition keys look like bioscan's (`<tenant>/<sample_id>`), so the CLI's key handling is real.
"""

import time

from dagster import (
    Definitions,
    Failure,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
    job,
    op,
)

samples = StaticPartitionsDefinition(["acme-lab/S001", "acme-lab/S002", "reef-survey/REEF-07"])


@asset(partitions_def=samples, group_name="ingest")
def counted(context) -> MaterializeResult:
    return MaterializeResult(metadata={"partition": context.partition_key})


@asset(partitions_def=samples, deps=[counted], group_name="ingest")
def summarised(context) -> MaterializeResult:
    return MaterializeResult(metadata={"partition": context.partition_key})


sample_pipeline = define_asset_job(
    "sample_pipeline", selection=[counted, summarised], partitions_def=samples
)


@op
def prepare() -> int:
    return 1


@op
def validate_drop(value: int) -> None:
    raise Failure(description="sample.json field 'files[0].sha256' does not match the file")


@job
def broken_job() -> None:
    validate_drop(prepare())


@op
def wait_a_while() -> None:
    time.sleep(120)


@job
def slow_job() -> None:
    wait_a_while()


defs = Definitions(assets=[counted, summarised], jobs=[sample_pipeline, broken_job, slow_job])
