"""`bioscan submit` / `bioscan follow` against a real Dagster (webserver + daemon) on loopback."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest
from graphql import parse, validate

from bioscan_assets.commands import follow, graphql_client, submit
from tests.e2e.server import DagsterDev, free_port

LOCATION = Path(__file__).with_name("submit_location.py")

RUN_TAGS_QUERY = """
query ($runId: ID!) { runOrError(runId: $runId) { ... on Run { status tags { key value } } } }
"""


@pytest.fixture(scope="module")
def dagster(tmp_path_factory) -> DagsterDev:
    home = tmp_path_factory.mktemp("dagster-home")
    with DagsterDev(["-f", str(LOCATION)], home) as server:
        yield server


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = submit.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_graphql_document_is_valid_for_this_dagster() -> None:
    from dagster_graphql.schema import create_schema

    schema = create_schema().graphql_schema
    documents = {
        n: getattr(graphql_client, n)
        for n in dir(graphql_client)
        if n.endswith(("_QUERY", "_MUTATION"))
    }
    assert len(documents) == 6
    for name, document in documents.items():
        assert validate(schema, parse(document)) == [], name


def test_help_shows_examples_and_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        submit.main(["submit", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "bioscan submit sample acme-lab/S001" in text
    assert "bioscan submit backfill --all" in text
    assert "5  --timeout passed" in text
    assert "DAGSTER_GRAPHQL_URL" in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://dagster.example:3000", ("dagster.example", 3000, False, "")),
        ("https://dagster.example/bioscan/", ("dagster.example", None, True, "/bioscan")),
        ("https://dagster.example/bioscan/graphql", ("dagster.example", None, True, "/bioscan")),
        ("127.0.0.1:3001", ("127.0.0.1", 3001, False, "")),
    ],
)
def test_endpoint_urls(url, expected) -> None:
    endpoint = graphql_client.Endpoint.parse(url)
    assert (endpoint.hostname, endpoint.port, endpoint.use_https, endpoint.path_prefix) == expected


def test_endpoint_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("DAGSTER_GRAPHQL_URL", "https://ops.example/dagster")
    parser_args = argparse.Namespace(url=None, host=None, port=None, https=False)
    assert (
        graphql_client.Endpoint.from_args(parser_args).graphql_url
        == "https://ops.example/dagster/graphql"
    )


def test_bad_partition_key_is_refused_before_anything_is_sent(capsys) -> None:
    code, _, err = run_cli(capsys, "submit", "sample", "acme-lab", "--port", str(free_port()))
    assert code == submit.EXIT_USAGE
    assert "'acme-lab' is not '<tenant>/<sample_id>'" in err
    code, _, err = run_cli(
        capsys, "submit", "backfill", "acme-lab/S001", "../etc", "--port", str(free_port())
    )
    assert code == submit.EXIT_USAGE
    assert "'../etc'" in err
    code, _, err = run_cli(capsys, "submit", "backfill", "--port", str(free_port()))
    assert code == submit.EXIT_USAGE
    assert "or pass --all" in err


def test_the_bioscan_cli_has_submit_and_follow(capsys) -> None:
    from bioscan_assets.cli import main as bioscan

    code = bioscan(["submit", "sample", "not-a-key", "--port", str(free_port())])
    assert code == submit.EXIT_USAGE
    assert "bioscan submit: partition key 'not-a-key'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        bioscan(["follow", "--help"])
    assert exit_info.value.code == 0
    assert "bioscan follow --backfill" in capsys.readouterr().out


def test_unreachable_endpoint_exits_4(capsys) -> None:
    port = free_port()  # nothing listens there
    code, _, err = run_cli(capsys, "submit", "sample", "acme-lab/S001", "--port", str(port))
    assert code == submit.EXIT_UNREACHABLE
    assert f"cannot reach http://127.0.0.1:{port}/graphql" in err


@pytest.mark.integration
@pytest.mark.slow
class TestAgainstDagster:
    def test_sample_run_is_followed_to_success(self, dagster, capsys) -> None:
        code, out, _ = run_cli(
            capsys,
            "submit",
            "sample",
            "acme-lab/S001",
            "--url",
            dagster.url,
            "--poll-interval",
            "0.3",
        )
        assert code == follow.EXIT_SUCCEEDED, out
        run_id = out.split("run ", 1)[1].split(":", 1)[0]
        assert "(sample_pipeline [acme-lab/S001])" in out
        assert "step counted: succeeded" in out
        assert "step summarised: succeeded" in out
        assert out.rstrip().splitlines()[-1].endswith(f"run {run_id}: succeeded" + _took(out))
        run = dagster.graphql(RUN_TAGS_QUERY, {"runId": run_id})["runOrError"]
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert run["status"] == "SUCCESS"
        assert tags["dagster/partition"] == "acme-lab/S001"
        assert tags["bioscan/trigger"] in ("cli", "ci")
        assert tags["bioscan/submit"] == "sample"

    def test_failing_run_reports_the_step_and_error_and_exits_1(self, dagster, capsys) -> None:
        code, out, _ = run_cli(
            capsys, "submit", "job", "broken_job", "--url", dagster.url, "--poll-interval", "0.3"
        )
        assert code == follow.EXIT_FAILED, out
        assert "step prepare: succeeded" in out
        assert "step validate_drop: failed" in out
        assert "sample.json field 'files[0].sha256' does not match the file" in out
        assert ": failed" in out.rstrip().splitlines()[-1]

    def test_timeout_then_cancel(self, dagster, capsys) -> None:
        code, out, _ = run_cli(
            capsys, "submit", "job", "slow_job", "--no-follow", "--url", dagster.url
        )
        assert code == follow.EXIT_SUCCEEDED
        run_id = out.strip()
        code, out, _ = run_cli(
            capsys,
            "follow",
            run_id,
            "--url",
            dagster.url,
            "--timeout",
            "1",
            "--poll-interval",
            "0.3",
        )
        assert code == follow.EXIT_TIMEOUT, out
        assert f"bioscan follow {run_id}" in out
        api = graphql_client.DagsterApi(graphql_client.Endpoint.parse(dagster.url))
        deadline = time.monotonic() + 120
        while api.run_status(run_id) != "STARTED" and time.monotonic() < deadline:
            time.sleep(0.5)  # a run can only be terminated once its process has started
        api.client.terminate_run(run_id)
        code, out, _ = run_cli(
            capsys, "follow", run_id, "--url", dagster.url, "--poll-interval", "0.3"
        )
        assert code == follow.EXIT_CANCELED, out
        assert out.rstrip().splitlines()[-1].startswith("[") and "canceled" in out.splitlines()[-1]

    def test_unknown_job_exits_2(self, dagster, capsys) -> None:
        code, _, err = run_cli(capsys, "submit", "job", "no_such_job", "--url", dagster.url)
        assert code == submit.EXIT_USAGE
        assert "no job named 'no_such_job'" in err

    def test_unknown_partition_is_refused(self, dagster, capsys) -> None:
        code, _, err = run_cli(
            capsys, "submit", "backfill", "acme-lab/NOPE", "--url", dagster.url, "--no-follow"
        )
        assert code == submit.EXIT_UNREACHABLE
        assert "acme-lab/NOPE" in err

    def test_backfill_of_several_samples_completes(self, dagster, capsys) -> None:
        code, out, _ = run_cli(
            capsys,
            "submit",
            "backfill",
            "acme-lab/S002",
            "reef-survey/REEF-07",
            "--url",
            dagster.url,
            "--poll-interval",
            "1",
            "--timeout",
            "240",
        )
        assert code == follow.EXIT_SUCCEEDED, out
        assert "summarised: 2/2 materialized, 0 in progress, 0 failed" in out
        assert "succeeded (2 run(s), 0 failed)" in out


def _took(out: str) -> str:
    last = out.rstrip().splitlines()[-1]
    return last[last.index(": succeeded") + len(": succeeded") :]
