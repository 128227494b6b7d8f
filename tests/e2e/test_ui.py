"""The UI and the API as users use them: `dagster dev` on loopback, driven by headless Chromium.

A fresh instance over a copy of the bundled demo landing area (tiny model, so runs are quick):
the asset graph shows the six assets; the lab-drop sensor's first tick adds the `samples`
partitions; a materialisation launched from the asset page's dialog completes; screenshots are
kept; a backfill of every sample partition launched through the GraphQL API (with
`bioscan submit backfill --all`, followed with `bioscan follow --backfill`) completes and leaves
every partition of vector_index materialised.

Chromium is Debian's (`apt-get install -y chromium`), driven by the `playwright` package through
`executable_path`; no browser is downloaded. This test is never skipped: without Chromium it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from bioscan_assets.commands import follow, submit
from tests.e2e.server import TWO_RUNS_INSTANCE_YAML, DagsterDev, tiny_model_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DEMO_LANDING = ROOT / "bioscan_assets" / "demo_data" / "landing"
CHROMIUM = os.environ.get("BIOSCAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIX_ASSETS = [
    "raw_sequences",
    "sequence_shards",
    "sequence_embeddings",
    "vector_index",
    "lora_adapter",
    "evaluation_report",
]
RUNS_QUERY = """
query ($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status creationTime tags { key value } } }
  }
}
"""
PARTITION_STATS_QUERY = """
query ($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { partitionKeys partitionStats { numMaterialized numPartitions numFailed } }
  }
}
"""
SENSOR_TICKS_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
  ... on RepositoryLocation { repositories { sensors { name sensorState {
    status ticks(limit: 3) { status timestamp error { message } }
  } } } }
} } } } }
"""


def demo_partitions(landing: Path) -> list[str]:
    keys = []
    for manifest in sorted(landing.glob("*/*/sample.json")):
        drop = json.loads(manifest.read_text())
        keys.append(f"{drop['tenant']}/{drop['sample_id']}")
    assert keys, f"no demo drops under {landing}"
    return keys


@pytest.fixture(scope="module")
def chromium_executable() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}. Install Debian's package: "
            "`apt-get install -y chromium` (or point BIOSCAN_CHROMIUM at a Chromium binary). "
            "This test must not be skipped."
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the `playwright` Python package is missing: pip install playwright")
    return CHROMIUM


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> DagsterDev:
    base = tmp_path_factory.mktemp("bioscan-e2e")
    landing = base / "landing"
    shutil.copytree(DEMO_LANDING, landing)
    server = DagsterDev(
        ["-w", str(ROOT / "workspace.yaml")],
        base / "dagster-home",
        env=tiny_model_env(base, landing),
        instance_yaml=TWO_RUNS_INSTANCE_YAML,
        unset=("BIOSCAN_STORAGE", "BIOSCAN_EXECUTOR", "DAGSTER_GRAPHQL_URL"),
    )
    server.landing = landing  # type: ignore[attr-defined]
    with server:
        yield server


@pytest.fixture
def artifacts(tmp_path) -> list[Path]:
    """Screenshots; copied to $BIOSCAN_ARTIFACTS (when set) even if the test fails."""
    shots: list[Path] = []
    yield shots
    target = os.environ.get("BIOSCAN_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots:
            if shot.exists():
                shutil.copy(shot, Path(target) / shot.name)


def dismiss_welcome(page) -> None:
    """First visit: Dagster asks to join its community; a user clicks Skip."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=5_000)
    except Exception:
        return
    skip.click()
    skip.wait_for(state="hidden", timeout=10_000)


def wait_for_run(server: DagsterDev, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        runs = server.graphql(RUNS_QUERY, {"filter": {"runIds": [run_id]}})["runsOrError"]
        status = runs["results"][0]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(2)
    raise AssertionError(f"run {run_id} still {status} after {timeout} s\n{server.log_tail()}")


def sensor_ticks(server: DagsterDev) -> list[dict]:
    """The latest ticks of every sensor: what to read when a sensor seems not to run."""
    entries = server.graphql(SENSOR_TICKS_QUERY)["workspaceOrError"]["locationEntries"]
    return [
        {"sensor": sensor["name"], **sensor["sensorState"]}
        for entry in entries
        for repository in (entry["locationOrLoadError"] or {}).get("repositories", [])
        for sensor in repository["sensors"]
    ]


def wait_for_partitions(server: DagsterDev, expected: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    found: list[str] = []
    while time.monotonic() < deadline:
        node = server.graphql(PARTITION_STATS_QUERY, {"key": {"path": ["raw_sequences"]}})
        found = node["assetNodeOrError"]["partitionKeys"]
        if set(expected) <= set(found):
            return
        time.sleep(3)
    raise AssertionError(
        f"the sensor added {sorted(found)}, not {sorted(expected)}, within {timeout} s\n"
        f"sensor ticks: {json.dumps(sensor_ticks(server), indent=1)}\n{server.log_tail()}"
    )


def test_ui_and_api_end_to_end(deployment, chromium_executable, artifacts, tmp_path, capsys):
    from playwright.sync_api import expect, sync_playwright

    partitions = demo_partitions(deployment.landing)
    url = deployment.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            # 1. the asset graph shows the six assets (groups expanded, as a user would)
            page.goto(f"{url}/asset-groups")
            dismiss_welcome(page)
            page.get_by_role("button", name="settings").last.click()
            page.get_by_role("menuitem", name="Expand all groups").click()
            page.keyboard.press("Escape")
            for name in SIX_ASSETS:
                # long names are shortened on the node (sequen…_embeddings); hovering shows them
                label = page.get_by_text(
                    re.compile(
                        rf"^({re.escape(name)}|{re.escape(name[:4])}\S*…\S*{re.escape(name[-4:])})$"
                    )
                )
                expect(label.first, f"asset {name} in the graph").to_be_visible(timeout=60_000)
                label.first.hover(force=True)  # a queued node box covers its label
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            page.mouse.move(5, 500)
            artifacts.append(tmp_path / "bioscan-asset-graph.png")
            page.screenshot(path=artifacts[-1], full_page=True)

            # 2. the sensor's first tick turns every demo drop into a `samples` partition
            wait_for_partitions(deployment, partitions, timeout=420)
            page.goto(f"{url}/assets/raw_sequences?view=partitions")
            for key in partitions:
                expect(page.get_by_text(key, exact=True).first).to_be_visible(timeout=60_000)
            artifacts.append(tmp_path / "bioscan-partitions.png")
            page.screenshot(path=artifacts[-1], full_page=True)

            # 3. a backfill of every sample partition through the GraphQL API (followed in 5)
            code = submit.main(["submit", "backfill", "--all", "--no-follow", "--url", url])
            backfill_id = capsys.readouterr().out.strip()
            assert code == follow.EXIT_SUCCEEDED and backfill_id, backfill_id

            # 4. materialise one partition from the asset page's dialog
            chosen = partitions[0]
            page.goto(f"{url}/assets/raw_sequences")
            launched_after = time.time()
            page.get_by_role("button", name="Materialize…").first.click()
            # the partition picker is a popover that also has role=dialog: scope to the launch one
            dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
            dialog.get_by_text("Select a partition or create one").click()
            page.keyboard.type(chosen)
            page.locator("label").filter(has_text=chosen).first.click()
            dialog.get_by_text("Launch runs to materialize raw_sequences").click()
            dialog.get_by_role("button", name="Launch 1 run").click()
            expect(dialog).to_be_hidden()

            run_id = None
            deadline = time.monotonic() + 60
            while run_id is None and time.monotonic() < deadline:
                runs = deployment.graphql(
                    RUNS_QUERY,
                    {"filter": {"tags": [{"key": "dagster/partition", "value": chosen}]}},
                )["runsOrError"]["results"]
                ui_runs = [
                    r
                    for r in runs
                    if r["creationTime"] >= launched_after - 1
                    and not any(t["key"] == "dagster/sensor_name" for t in r["tags"])
                ]
                run_id = ui_runs[0]["runId"] if ui_runs else None
                if run_id is None:
                    time.sleep(1)
            assert run_id, f"no run was launched from the UI for {chosen}"
            assert wait_for_run(deployment, run_id, timeout=600) == "SUCCESS"
            page.goto(f"{url}/runs/{run_id}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=60_000)
            artifacts.append(tmp_path / "bioscan-ui-run.png")
            page.screenshot(path=artifacts[-1], full_page=True)
        except BaseException:
            failure = tmp_path / "bioscan-ui-failure.png"
            page.screenshot(path=failure, full_page=True)
            artifacts.append(failure)
            raise
        finally:
            browser.close()
    for shot in artifacts:
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"

    # 5. the backfill ends with every partition materialised
    code = submit.main(
        [
            "follow",
            "--backfill",
            backfill_id,
            "--url",
            url,
            "--poll-interval",
            "2",
            "--timeout",
            "900",
        ]
    )
    out = capsys.readouterr().out
    assert code == follow.EXIT_SUCCEEDED, f"{out}\n{deployment.log_tail()}"
    assert f"({len(partitions)} partitions)" in out, out
    stats = deployment.graphql(PARTITION_STATS_QUERY, {"key": {"path": ["vector_index"]}})
    node = stats["assetNodeOrError"]
    assert sorted(node["partitionKeys"]) == sorted(partitions)
    assert node["partitionStats"]["numMaterialized"] == len(partitions)
    assert node["partitionStats"]["numFailed"] == 0
