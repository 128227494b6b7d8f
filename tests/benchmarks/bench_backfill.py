"""A backfill of `sample_pipeline` through the GraphQL API, as an operator launches one (not a test).

    python tests/benchmarks/bench_backfill.py [--partitions 20] [--code PATH]

`dagster dev` on loopback over N small drops (tiny model, CPU, two runs at a time as on a
two-core machine; the lab-drop sensor stopped so only the backfill launches runs), then
`bioscan submit backfill --all` followed to the end. Prints runs launched and wall time.
`--code` runs another checkout's `bioscan_assets` (e.g. a `git worktree` of an older commit) to
compare before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dagster import DagsterInstance  # noqa: E402

from bioscan_assets.commands import follow, submit  # noqa: E402
from bioscan_assets.partitions import samples_partitions  # noqa: E402
from tests.e2e.server import TWO_RUNS_INSTANCE_YAML, DagsterDev, tiny_model_env  # noqa: E402
from tests.helpers import python, random_dna, write_drop  # noqa: E402

RUNS_QUERY = """
query ($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  status startTime endTime } } } }
"""


def bench(partitions: int, code: Path) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    landing, home = base / "landing", base / "dagster-home"
    rng = np.random.default_rng(0)
    keys = []
    for i in range(partitions):
        write_drop(
            landing,
            "bench",
            f"P{i:03d}",
            sequences={f"r{j}": random_dna(rng, 150) for j in range(50)},
        )
        keys.append(f"bench/P{i:03d}")
    env = {**tiny_model_env(base, landing), "PYTHONPATH": str(code), "DAGSTER_HOME": str(home)}
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(TWO_RUNS_INSTANCE_YAML)
    full_env = {**os.environ, **env}
    workspace = ["-w", str(ROOT / "workspace.yaml")]
    subprocess.run(
        python("-m", "dagster", "sensor", "stop", "lab_drop_sensor", *workspace),
        env=full_env,
        cwd=code,
        check=True,
        capture_output=True,
    )
    DagsterInstance.from_config(str(home)).add_dynamic_partitions(samples_partitions.name, keys)
    server = DagsterDev(
        workspace,
        home,
        env=env,
        instance_yaml=TWO_RUNS_INSTANCE_YAML,
        unset=("BIOSCAN_STORAGE",),
        cwd=code,
    )
    with server:
        started = time.monotonic()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            launched = submit.main(
                ["submit", "backfill", "--all", "--no-follow", "--url", server.url]
            )
        backfill_id = printed.getvalue().strip()
        assert launched == follow.EXIT_SUCCEEDED and backfill_id, printed.getvalue()
        with contextlib.redirect_stdout(io.StringIO()):
            outcome = submit.main(
                [
                    "follow",
                    "--backfill",
                    backfill_id,
                    "--url",
                    server.url,
                    "--poll-interval",
                    "1",
                    "--timeout",
                    "3600",
                ]
            )
        wall = time.monotonic() - started
        tag = {"key": "dagster/backfill", "value": backfill_id}
        runs = server.graphql(RUNS_QUERY, {"filter": {"tags": [tag]}})["runsOrError"]["results"]
    return {
        "partitions": partitions,
        "code": str(code),
        "backfill_succeeded": outcome == follow.EXIT_SUCCEEDED,
        "runs_launched": len(runs),
        "runs_succeeded": sum(r["status"] == "SUCCESS" for r in runs),
        "wall_s": round(wall, 1),
        "run_seconds_total": round(
            sum(r["endTime"] - r["startTime"] for r in runs if r["endTime"]), 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument(
        "--code", type=Path, default=ROOT, help="checkout whose bioscan_assets runs"
    )
    args = parser.parse_args()
    print(json.dumps(bench(args.partitions, args.code.resolve()), indent=2))


if __name__ == "__main__":
    main()
