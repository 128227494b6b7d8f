"""Subprocess entry for the concurrent-writer test: materialise vector_index for one partition.

Waits for a start file so that both workers enter the write at the same moment.
"""

import json
import sys
import time
from pathlib import Path

from bioscan_resources.storage import StorageResource
from bioscan_resources.vector_store import VectorStoreResource
from dagster import DagsterInstance, materialize

from bioscan_assets.assets.index import index_checks, vector_index
from bioscan_assets.partitions import samples_partitions

if __name__ == "__main__":
    storage, key, go = sys.argv[1:4]
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(samples_partitions.name, [key])
    deadline = time.time() + 120
    while not Path(go).exists() and time.time() < deadline:
        time.sleep(0.01)
    result = materialize(
        [vector_index, *index_checks],
        partition_key=key,
        instance=instance,
        resources={
            "storage": StorageResource(landing=storage, storage=storage),
            "vector_store": VectorStoreResource(min_rows=100, target_partition_rows=32),
        },
        raise_on_error=False,
    )
    metadata = {}
    for event in result.get_asset_materialization_events():
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    checks = [e.passed for e in result.get_asset_check_evaluations()]
    print(
        "RESULT "
        + json.dumps(
            {
                "success": result.success,
                "checks": checks,
                "inserted": metadata.get("inserted"),
                "lock_wait_s": metadata.get("lock_wait_s"),
            }
        ),
        flush=True,
    )
