"""Every method beside ETO in one run: ``python -m jobs.run --methods all`` on the nano profile
(ScienceWorld, the real engine, the tiny model, sqlite stores) leaves a stage run tagged with each
method's name in MLflow, a registered version for each trained policy, and one report row per
method; a second run with the default methods leaves the other methods' assets as no-ops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    # self-play may carry its start over; a step-level method without pairs would too
    assert {"sft", "eto", "rft", "rl"} <= registered, registered


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
        "eto_step-1",
        "eto_mixture-1",
        "stepagent-1",
        "ipr-1",
        "stepagent_irl",
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


def _lines(path):
    return [json.loads(line) for line in path.open()]


def test_step_branches_replay_the_expert_prefix(all_methods):
    """Each branch's first t-1 agent turns are the expert's, replayed in the engine; the policy
    plays from step t; nano branches from step 1 and two others per expert (step.steps_per_trajectory)."""
    home, _ = all_methods
    root = home / "artifacts" / "sciworld"
    experts = {e["task_id"]: e for e in _lines(root / "expert" / "expert_trajectories.jsonl")}
    branches = _lines(root / "eto_step" / "iteration_1" / "exploration_rollouts.jsonl")
    assert branches
    per_task: dict[str, set[int]] = {}
    for b in branches:
        forced = b["metadata"].get("forced_steps", 0)
        per_task.setdefault(b["task_id"], set()).add(forced + 1)
        expert_turns = [m["content"] for m in experts[b["task_id"]]["messages"] if m["role"] == "assistant"]
        turns = [m["content"] for m in b["messages"] if m["role"] == "assistant"]
        assert turns[:forced] == expert_turns[:forced]
        assert len(turns) > forced  # the policy took at least one turn (step cap 3)
    assert all(1 in steps and len(steps) <= 3 for steps in per_task.values()), per_task


def test_ipr_step_pairs_beat_the_policy_by_more_than_tau(all_methods):
    home, _ = all_methods
    folder = home / "artifacts" / "sciworld" / "ipr" / "iteration_1"
    values = _lines(folder / "step_values.jsonl")
    per_branch: dict[tuple[str, str], int] = {}
    for v in values:
        key = (v["task_id"], v["metadata"]["branch"])
        per_branch[key] = per_branch.get(key, 0) + 1
    assert all(n == 2 for n in per_branch.values()), per_branch  # nano: ipr.mc_samples = 2
    for pair in _lines(folder / "preference_pairs.jsonl"):
        assert pair["chosen_source"].startswith("expert@step")
        if not pair["chosen_source"].endswith("-end"):  # a step pair: its rewards are the values
            assert len(pair["chosen"]) == len(pair["rejected"]) == 1
            assert pair["chosen_reward"] - pair["rejected_reward"] > 0.01


def test_stepagent_irl_trains_a_discriminator_and_rl_earns_its_reward(all_methods):
    """The discriminator separates the expert's turns from the SFT policy's proposals it was trained
    on (or, with no differing proposal, RL says it had no step reward), and RL's episodes earned
    its reward beside the environment's."""
    home, _ = all_methods
    folder = home / "artifacts" / "sciworld" / "stepagent_irl" / "iteration_1"
    named = json.loads((folder / "discriminator.json").read_text())["discriminator"]
    policy = json.loads((folder / "policy.json").read_text())
    result = json.loads((Path(policy["checkpoint"]) / "train_result.json").read_text())
    if named is None:
        assert not _lines(folder / "preference_pairs.jsonl")
        assert "step_reward_mean" not in result["metrics"]
        return
    assert (Path(named) / "train_result.json").is_file()
    assert 0.0 <= result["metrics"]["step_reward_mean"] <= 1.0


def test_stepagent_proposals_read_the_task_as_played_and_pairs_as_recorded(all_methods):
    """A proposal is asked from the expert's prefix as the environment shows it (ScienceWorld's
    "Task Description:"); its pairs read like the expert records (without it), as ETO's do."""
    home, _ = all_methods
    folder = home / "artifacts" / "sciworld" / "stepagent" / "iteration_1"
    proposals = _lines(folder / "exploration_rollouts.jsonl")
    assert proposals and all(p["messages"][0]["content"].startswith("Task Description:\n") for p in proposals)
    for pair in _lines(folder / "preference_pairs.jsonl"):
        assert not pair["prompt"][0]["content"].startswith("Task Description:")
