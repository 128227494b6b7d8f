"""Subprocess entry for the resume and concurrency tests: embed one partition with small chunks."""

import sys
import time

from bioscan_assets.core.embedding.accelerator import Accelerator
from bioscan_assets.core.embedding.compute import EmbeddingExecutor, embed_partition
from bioscan_assets.core.model.presets import load_model
from bioscan_assets.core.storage import Store

if __name__ == "__main__":
    storage, tenant, sample_id, chunk_rows, cache = sys.argv[1:6]
    pause_s = float(sys.argv[6]) if len(sys.argv) > 6 else 0.5
    accelerator = Accelerator.discover(cache_dir=cache)  # the runs share compilations
    executor = EmbeddingExecutor(load_model("tiny"), accelerator, token_budget=512)

    def log(message: str) -> None:
        print(message, flush=True)
        time.sleep(pause_s)  # after each commit: room for the test's SIGKILL to land mid-partition

    result = embed_partition(
        Store(storage), tenant, sample_id, executor, chunk_rows=int(chunk_rows), log=log
    )
    print(
        f"RESULT rows={result['rows']} distinct={result['distinct']} "
        f"computed={result['computed']} reused={result['reused']}",
        flush=True,
    )
