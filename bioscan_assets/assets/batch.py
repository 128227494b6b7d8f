"""Backfill batches of the sample assets: one run, up to `SAMPLE_BATCH` partitions.

Every asset of `sample_pipeline` shares one policy, so a backfill launches one run per batch
(the model loads and compiles once per run) instead of one per partition. A run the sensor
requests still covers one partition and reports exactly what it did before.

In a batch each partition is done on its own and a bad one does not stop the others: when every
partition succeeded the step reports one materialisation per partition with the batch summary
(a per-partition table included); when some failed with bad input, the good ones are reported
one by one with their own metadata and the step fails naming the bad ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetMaterialization,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
)

SAMPLE_BATCH = 20
SAMPLE_BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=SAMPLE_BATCH)


def partition_keys(context: Any) -> list[str]:
    """The run's partitions, for assets and checks alike: a range in a batch, else one key."""
    if context.has_partition_key_range:
        return list(context.partition_keys)
    return [context.partition_key]


def materialize_partitions(
    context: Any,
    materialize_one: Callable[[str], MaterializeResult],
    summary: Sequence[str],
    batch_metadata: Callable[[Mapping[str, MaterializeResult]], Mapping[str, Any]] | None = None,
) -> MaterializeResult:
    """Run `materialize_one` per partition; one result for the step (see the module docstring).

    `summary` names the numeric metadata entries that are summed over the batch and shown per
    partition; `batch_metadata` adds entries computed from all partitions' results.
    """
    keys = partition_keys(context)
    if len(keys) == 1:
        return materialize_one(keys[0])
    done: dict[str, MaterializeResult] = {}
    failed: dict[str, Failure] = {}
    for key in keys:
        try:
            done[key] = materialize_one(key)
        except Failure as exc:
            failed[key] = exc
    if failed:
        for key, result in done.items():
            context.log_event(
                AssetMaterialization(
                    asset_key=context.asset_key, partition=key, metadata=result.metadata
                )
            )
        raise Failure(
            description=f"{len(failed)} of {len(keys)} partitions failed ("
            f"{len(done)} materialised): "
            + "; ".join(f"{key}: {exc.description}" for key, exc in failed.items()),
            metadata={
                "failed_partitions": MetadataValue.json(
                    {key: exc.description for key, exc in failed.items()}
                ),
                "materialised_partitions": MetadataValue.json(sorted(done)),
            },
            allow_retries=False,
        )
    values = {key: result.metadata or {} for key, result in done.items()}
    return MaterializeResult(
        metadata={
            "batch_partitions": len(keys),
            **{name: sum(_number(v.get(name)) for v in values.values()) for name in summary},
            **(batch_metadata(done) if batch_metadata else {}),
            "partitions": MetadataValue.md(_table(values, summary)),
        }
    )


def _number(value: Any) -> float:
    raw = getattr(value, "value", value)
    return raw if isinstance(raw, int | float) else 0


def _table(values: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| partition | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, metadata in values.items():
        cells = [str(getattr(metadata.get(c), "value", metadata.get(c))) for c in columns]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def combine_check_results(results: Mapping[str, AssetCheckResult]) -> AssetCheckResult:
    """One check result for a batch: passed when every partition passed; each one's metadata."""
    if len(results) == 1:
        return next(iter(results.values()))
    first = next(iter(results.values()))
    failed = sorted(key for key, result in results.items() if not result.passed)
    return AssetCheckResult(
        passed=not failed,
        severity=first.severity,
        check_name=first.check_name,
        asset_key=first.asset_key,
        metadata={
            "partitions_checked": len(results),
            "failed_partitions": MetadataValue.json(failed),
            "per_partition": MetadataValue.json(
                {
                    key: {
                        name: getattr(value, "value", value)
                        for name, value in (result.metadata or {}).items()
                    }
                    for key, result in results.items()
                }
            ),
        },
    )
