"""One policy for the three benchmarks: ``python -m jobs.multitask`` on the nano profile (the real
ScienceWorld engine, ALFWorld games and WebShop pages, the tiny model) after a per-task run of
ScienceWorld in the same home: SFT on the union of the expert data, exploration and pairs per
benchmark, one DPO on the union, evaluation per benchmark, and each benchmark's table with the
multi-task rows beside the per-task ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from eto_assets.agent.prompt import PromptBook
from tests.conftest import REPO, run_cli

NANO = REPO / "tests" / "fixtures" / "nano.yaml"
TASKS = ("sciworld", "alfworld", "webshop")


def _lines(path):
    return [json.loads(line) for line in path.open()]


@pytest.fixture(scope="module")
def multitask(tmp_path_factory):
    if not os.environ.get("ETO_DATA_DIR"):
        pytest.skip("ETO_DATA_DIR is not set: the ALFWorld games come from the data folder")
    home = tmp_path_factory.mktemp("multitask") / "home"
    env = {
        **os.environ,
        "ETO_HOME": str(home),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
    }
    per_task = run_cli(env)
    assert per_task.returncode == 0, (per_task.stdout + per_task.stderr)[-4000:]
    out = subprocess.run(
        [sys.executable, "-m", "jobs.multitask", "--profile", str(NANO)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return home, out.stdout


def test_one_policy_trained_on_every_benchmarks_experts_with_their_own_prompts(multitask):
    home, _ = multitask
    root = home / "artifacts"
    experts = {task: _lines(root / task / "expert" / "expert_trajectories.jsonl") for task in TASKS}
    union = _lines(root / "multitask" / "expert" / "expert_trajectories.jsonl")
    assert len(union) == sum(len(e) for e in experts.values())
    books = PromptBook.read(root / "multitask" / "expert" / "prompt_book.json")
    for task, records in experts.items():
        own = PromptBook.read(root / task / "expert" / "prompt_book.json")
        assert {books.for_type(r["task_type"]).instruction for r in records} == {own.instruction}
    # the union's DPO trained on every benchmark's pairs, and its policy is each benchmark's
    pairs = {
        task: _lines(root / task / "multitask" / "iteration_1" / "preference_pairs.jsonl") for task in TASKS
    }
    assert len(_lines(root / "multitask" / "iteration_1" / "preference_pairs.jsonl")) == sum(
        map(len, pairs.values())
    )
    policy = json.loads((root / "multitask" / "iteration_1" / "policy.json").read_text())
    for task in TASKS:
        assert json.loads((root / task / "multitask" / "iteration_1" / "policy.json").read_text()) == policy


def test_each_benchmark_is_evaluated_and_tabled_beside_its_per_task_policies(multitask):
    home, out = multitask
    for task in TASKS:
        report = json.loads(
            (home / "artifacts" / task / "multitask" / "iteration_1" / "eval_report.json").read_text()
        )
        assert set(report["splits"]) == {"seen", "unseen"}
    sciworld = out.split("\nsciworld\n", 1)[1].split("\nalfworld\n", 1)[0]
    rows = [
        line.split("|")[2].strip()
        for line in sciworld.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert {"sft", "eto-1", "multitask-0", "multitask-1"} <= set(rows), sciworld


def test_every_stage_is_an_mlflow_run_tagged_multitask_and_each_policy_registered(multitask):
    from mlflow.tracking import MlflowClient

    home, _ = multitask
    client = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")

    def stages_of(experiment: str) -> set[str]:
        [found] = client.search_experiments(filter_string=f"name = '{experiment}'")
        runs = client.search_runs([found.experiment_id], "tags.`eto.method` = 'multitask'", max_results=200)
        return {r.data.tags["eto.stage"] for r in runs}

    assert stages_of("eto-multitask") == {"multitask_expert", "multitask_sft", "multitask_dpo"}
    for task in TASKS:  # beside the benchmark's own runs, in its experiment
        assert stages_of(f"eto-{task}") == {"multitask_eval", "multitask_explore", "multitask_pairs"}
    versions = client.search_model_versions("name = 'eto-multitask'")
    assert len(versions) == 2  # SFT and the DPO of iteration 1
