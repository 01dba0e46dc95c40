"""Every method beside ETO in one run: ``python -m jobs.run --methods all`` on the nano profile
(ScienceWorld, the real engine, the tiny model, sqlite stores) leaves a stage run tagged with each
method's name in MLflow, a registered version for each trained policy, and one report row per
method; a second run with the default methods leaves the other methods' assets as no-ops."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from eto_assets.config.profile import METHODS
from tests.conftest import REPO

NANO = REPO / "tests" / "fixtures" / "nano.yaml"


@pytest.fixture(scope="module")
def all_methods(tmp_path_factory):
    home = tmp_path_factory.mktemp("methods") / "home"
    env = {
        **os.environ,
        "ETO_HOME": str(home),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
    }
    out = subprocess.run(
        [sys.executable, "-m", "jobs.run", "--task", "sciworld", "--profile", str(NANO), "--methods", "all"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return home, out.stdout


def test_every_method_has_stage_runs_tagged_with_its_name(all_methods):
    from mlflow.tracking import MlflowClient

    home, _ = all_methods
    client = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    [experiment] = client.search_experiments(filter_string="name = 'eto-sciworld'")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    tagged = {r.data.tags.get("eto.method") for r in runs}
    assert set(METHODS) <= tagged, tagged
    assert {"sft", "base", "shared"} <= tagged
    # every trained policy is a registered version carrying its method
    versions = client.search_model_versions("name = 'eto-sciworld'")
    registered = {v.tags.get("eto.method") for v in versions}
    assert {"sft", "eto", "rft", "rl"} <= registered, registered  # self-play may carry its start over


def test_the_report_has_a_row_per_method(all_methods):
    home, out = all_methods
    summary = (home / "artifacts" / "sciworld" / "report" / "summary.md").read_text()
    rows = [
        line.split("|")[2].strip()
        for line in summary.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    for name in (
        "sft",
        "eto-1",
        "best_of_n",
        "rft",
        "rl",
        "selfplay_rft",
        "selfplay_eto-1",
        "selfplay_rft_eto-1",
    ):
        assert name in rows, summary
    assert "best_of_n" in out  # the CLI prints the same table


def test_best_of_n_keeps_every_sample_and_scores_the_best(all_methods):
    home, _ = all_methods
    folder = home / "artifacts" / "sciworld" / "best_of_n" / "iteration_0"
    episodes = [json.loads(line) for line in (folder / "eval_unseen.jsonl").open()]
    by_task: dict[str, list[float]] = {}
    for e in episodes:
        by_task.setdefault(e["task_id"], []).append(e["reward"])
    report = json.loads((folder / "eval_report.json").read_text())
    assert all(len(r) == 2 for r in by_task.values())  # nano: best_of_n.n = 2
    best = sum(max(r) for r in by_task.values()) / len(by_task)
    assert report["splits"]["unseen"]["avg_reward"] == pytest.approx(best)
