"""A run started by the CLI re-executes from the UI: "Re-execute from failure" and "Re-execute all",
sent to a real ``dagster dev`` (webserver and daemon) through its GraphQL API as the UI sends them.

The CLI run fails at DPO because another process holds that stage's lock (a real refusal, no fault
injected into the code); once the lock is released, the re-execution from failure runs DPO and what
follows it, and nothing that had finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.browser.servers import dagster_dev
from tests.conftest import REPO, run_cli

NANO = REPO / "tests" / "fixtures" / "nano.yaml"

REEXECUTE = """
mutation LaunchPipelineReexecution($reexecutionParams: ReexecutionParams) {
  launchPipelineReexecution(reexecutionParams: $reexecutionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status parentRunId stepStats { stepKey status } }
  }
}"""


def graphql(url: str, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def reexecute(url: str, parent: str, strategy: str) -> str:
    params = {"parentRunId": parent, "strategy": strategy}
    launched = graphql(url, REEXECUTE, {"reexecutionParams": params})["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_finished(url: str, run_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = graphql(url, RUN, {"runId": run_id})["runOrError"]
        if run["status"] in {"SUCCESS", "FAILURE", "CANCELED"}:
            return run
        time.sleep(2)
    raise TimeoutError(f"run {run_id} did not finish in {timeout:.0f} s: {run}")


def steps(run: dict, status: str) -> set[str]:
    return {s["stepKey"] for s in run["stepStats"] if s["status"] == status}


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "ETO_HOME": str(tmp_path / "home"),
        "ETO_ITERATIONS": "1",  # the nano profile runs one: half the graph's steps to run and re-run
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }


def test_a_cli_run_reexecutes_from_failure_and_in_full_through_the_ui(env, tmp_path, monkeypatch):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from eto_assets.assets.locks import stage_lock\n"
            f"with stage_lock(Path({env['ETO_HOME']!r}), 'sciworld', 'dpo', 1, 'another-run'):\n"
            "    print('held', flush=True); time.sleep(600)",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        cli = run_cli(env)
    finally:
        holder.kill()
        holder.wait()
    assert cli.returncode == 1, cli.stdout[-3000:] + cli.stderr[-3000:]
    assert "another-run" in cli.stderr and "dpo" in cli.stderr

    from dagster import DagsterInstance

    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # the instance's yaml reads it
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        [parent] = instance.get_runs()
        assert parent.remote_job_origin is not None  # what the UI's re-execution starts from
        assert parent.remote_job_origin.location_name == "eto"

    with dagster_dev(REPO, env, tmp_path / "dagster-dev.log") as (url, _):
        first = wait_finished(url, reexecute(url, parent.run_id, "FROM_FAILURE"))
        assert first["status"] == "SUCCESS", (tmp_path / "dagster-dev.log").read_text()[-3000:]
        assert first["parentRunId"] == parent.run_id
        ran = steps(first, "SUCCESS")
        assert "iteration_1__dpo_checkpoint" in ran
        assert not ran & {"expert_trajectories", "sft_checkpoint", "iteration_1__preference_pairs"}, ran

        whole = wait_finished(url, reexecute(url, parent.run_id, "ALL_STEPS"))
        assert whole["status"] == "SUCCESS", (tmp_path / "dagster-dev.log").read_text()[-3000:]
        assert {"expert_trajectories", "iteration_1__dpo_checkpoint"} <= steps(whole, "SUCCESS")
