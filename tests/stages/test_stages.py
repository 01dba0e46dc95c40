"""Every ETO stage called as a plain function (no Dagster, no MLflow) on a real ScienceWorld engine
and a real tiny model: an iteration runs by calling them in order, as a notebook would."""

import json
from pathlib import Path

import pytest

from eto_assets import stages
from eto_assets.agent.backends import load_backend
from eto_assets.config.profile import load_profile
from eto_assets.data.schemas import read_pairs, read_trajectories, write_jsonl
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import BenchmarkSources
from tests.conftest import REPO

NANO = str(REPO / "tests" / "fixtures" / "nano.yaml")


def open_backend(path: str):
    return load_backend("transformers", path, max_batch_size=8)


@pytest.fixture(scope="module")
def iteration(tmp_path_factory):
    """Expert data, the base model, SFT, evaluation, then one ETO iteration and the report, each
    stage's result kept."""
    home = tmp_path_factory.mktemp("stages")
    run = stages.open_task_run("sciworld", load_profile(NANO), BenchmarkSources(home=home))
    results = {}
    with EnvironmentPool() as envs:
        results["expert"] = stages.generate_expert_data(run, envs)
        results["base_model"] = stages.build_base_model(run, "tiny")
        results["sft"] = stages.train_sft_policy(run, "tiny")
        results["base"] = stages.evaluate_base_model(run, "tiny", open_backend, envs)
        results["eval0"] = stages.evaluate(run, 0, open_backend, envs)
        results["explore"] = stages.explore(run, 1, open_backend, envs)
        results["pairs"] = stages.make_pairs(run, 1)
        results["dpo"] = stages.train_dpo_policy(run, 1)
        results["eval1"] = stages.evaluate(run, 1, open_backend, envs)
        assert envs.idle(), "environments went back to the pool for the next stage"
    results["report"] = stages.report_iterations(run.layout, 1)
    return run, results


def test_expert_stage_writes_experts_splits_and_prompt_book(iteration):
    run, results = iteration
    result = results["expert"]
    assert result.metrics["expert_count"] == 2 and result.metrics["expert_avg_reward"] == 1.0
    splits = json.loads(run.layout.splits_json.read_text())
    assert [len(splits[s]) for s in ("train", "seen", "unseen")] == [2, 1, 1]
    assert {p.name for p, _ in result.artifacts} == {
        "expert_trajectories.jsonl",
        "expert_trajectories.eto.json",  # the same trajectories in ETO's SFT layout
        "prompt_book.json",
        "splits.json",
    }
    assert [d.context for d in result.datasets] == ["splits"]
    assert result.tags["eto.comparable_with_paper"].startswith("false: generated expert trajectories")


def test_base_model_stage_builds_the_tiny_model_and_records_it(iteration):
    run, results = iteration
    result = results["base_model"]
    assert (run.layout.base_model_dir / "tokenizer.json").is_file()
    assert (run.layout.base_model_dir / "config.json").is_file()
    assert result.params == {"base_model": "tiny", "base_model_path": str(run.layout.base_model_dir)}
    assert [d.context for d in result.datasets] == ["tokenizer"]  # built from the expert data
    assert stages.PolicyRecord.read(run.layout, -1).checkpoint == str(run.layout.base_model_dir)


def test_sft_stage_trains_from_the_base_model_and_records_the_policy(iteration):
    run, results = iteration
    result = results["sft"]
    assert Path(result.policy.checkpoint).parent == run.layout.checkpoints_dir(0) and result.register_policy
    assert stages.PolicyRecord.read(run.layout, 0).checkpoint == result.policy.checkpoint
    assert result.metrics["sft_train_loss"] > 0 and result.history and result.history_prefix == "sft"


def test_exploration_plays_every_train_task_with_an_expert(iteration):
    run, results = iteration
    result = results["explore"]
    assert result.metrics_step == 1 and result.metrics["explore_episodes"] == 2
    explored = read_trajectories(run.layout.rollouts_jsonl(1))
    assert sorted(t.task_id for t in explored) == sorted(
        json.loads(run.layout.splits_json.read_text())["train"]
    )
    assert result.params["policy"] == results["sft"].policy.checkpoint


def test_pairs_and_dpo_chain_the_policy(iteration):
    run, results = iteration
    pairs = results["pairs"]
    assert pairs.metrics["pairs_count"] + pairs.metrics["pairs_dropped_ties"] == 2
    ids = [p.task_id for p in read_pairs(run.layout.pairs_jsonl(1))]
    assert ids == sorted(ids)  # task order, whatever order the episodes finished in
    dpo = results["dpo"]
    assert dpo.params["reference"] == results["sft"].policy.checkpoint
    if pairs.metrics["pairs_count"]:
        assert Path(dpo.policy.checkpoint).parent == run.layout.checkpoints_dir(1) and dpo.register_policy
    else:
        assert dpo.policy.carried_over_from == 0


def test_evaluation_covers_both_held_out_splits_greedily(iteration):
    run, results = iteration
    for k in (0, 1):
        result = results[f"eval{k}"]
        assert result.metrics_step == k
        assert set(result.metrics) == {
            "eval_seen_avg_reward",
            "eval_seen_success_rate",
            "eval_unseen_avg_reward",
            "eval_unseen_success_rate",
            "eval_avg_steps",
            "eval_resumed",
            "eval_discarded",
            "eval_failed",
            "eval_cut_turns",
            "eval_cut_episodes",
            "eval_env_restarts",
        }
        assert result.metrics["eval_discarded"] == 0 and result.metadata["resume"] == "nothing to resume"
        report = stages.EvalReport.read(run.layout.eval_report(k))
        assert {s: m.episodes for s, m in report.splits.items()} == {"seen": 1, "unseen": 1}
        # the numbers go on the iteration's policy (the asset layer resolves it to a model version)
        assert set(result.policy_tags) == {k}
        seen = f"{result.metrics['eval_seen_avg_reward']:.4f}"
        assert result.policy_tags[k]["eval/seen_avg_reward"] == seen


def test_the_untrained_model_is_evaluated_on_the_same_tasks_and_compared(iteration):
    run, results = iteration
    base = results["base"]
    assert base.metrics_step == -1 and base.params["checkpoint"] == str(run.layout.base_model_dir)
    for split in ("seen", "unseen"):
        sft_tasks = [t.task_id for t in read_trajectories(run.layout.eval_jsonl(0, split))]
        assert [t.task_id for t in read_trajectories(run.layout.eval_jsonl(-1, split))] == sft_tasks
    assert run.layout.eval_report(-1).parent.name == "base_model_eval"
    rows = run.layout.report_csv.read_text().splitlines()
    assert run.layout.report_csv == run.layout.root / "report" / "iterations.csv"
    assert [r.split(",")[:2] for r in rows[1:]] == [["base", "base"], ["0", "sft"], ["1", "eto-1"]]
    seen = f"{base.metrics['eval_seen_avg_reward']:.3f}"
    assert f"| base | base | {seen} |" in results["report"].metadata["table"]


@pytest.mark.parametrize("stage", ["sft", "base_eval"])
def test_sft_and_the_base_model_evaluation_need_the_base_model_stage(tmp_path, stage):
    run = stages.open_task_run("sciworld", load_profile(NANO), BenchmarkSources(home=tmp_path))
    with pytest.raises(FileNotFoundError, match="materialize base_model/checkpoint first"):
        if stage == "sft":
            stages.train_sft_policy(run, "tiny")
        else:
            stages.evaluate_base_model(run, "tiny", open_backend, EnvironmentPool())


def test_report_marks_the_best_iteration_by_the_seen_split(iteration):
    run, results = iteration
    result = results["report"]
    assert "| 0" in result.metadata["table"] and "| 1" in result.metadata["table"]
    seen = [results[f"eval{k}"].metrics["eval_seen_avg_reward"] for k in (0, 1)]
    best = 1 if seen[1] > seen[0] else 0
    assert result.metadata["best_iteration"] == best and result.aliases == {"champion": best}
    assert run.layout.summary_md == run.layout.root / "report" / "summary.md"
    assert run.layout.summary_md.read_text().startswith("# ETO on sciworld")


def test_dpo_without_pairs_carries_the_policy_over(iteration, tmp_path):
    run, _ = iteration
    write_jsonl(run.layout.pairs_jsonl(1), [])
    result = stages.train_dpo_policy(run, 1)
    assert result.policy.carried_over_from == 0 and not result.register_policy
    assert result.tags == {"eto.dpo_skipped": "no pairs"} and result.warnings
    assert (
        stages.PolicyRecord.read(run.layout, 1).checkpoint
        == stages.PolicyRecord.read(run.layout, 0).checkpoint
    )


def test_a_stage_without_its_input_names_what_is_missing(tmp_path):
    run = stages.open_task_run("sciworld", load_profile(NANO), BenchmarkSources(home=tmp_path))
    with pytest.raises(FileNotFoundError, match="no policy for iteration 0 of sciworld") as raised:
        stages.evaluate(run, 0, open_backend, EnvironmentPool())
    assert str(run.layout.policy_json(0)) in str(raised.value)
    assert "materialize that iteration's checkpoint first" in str(raised.value)


def test_a_retrain_with_other_settings_never_touches_the_weights_of_the_first(iteration):
    """Registered versions name checkpoint folders: a retrain with another learning rate writes a
    new folder, leaving the first one's files as they were; the same training again reuses its own."""
    import dataclasses

    from eto_assets.data.files import folder_identity

    run, results = iteration
    first = results["sft"].policy.checkpoint
    before = folder_identity(first)
    sft = run.profile.sft.model_copy(update={"learning_rate": run.profile.sft.learning_rate / 3})
    other = dataclasses.replace(run, profile=run.profile.model_copy(update={"sft": sft}))
    try:
        second = stages.train_sft_policy(other, "tiny").policy.checkpoint
        assert second != first and Path(second).parent == Path(first).parent
        assert folder_identity(first) == before
        assert stages.PolicyRecord.read(run.layout, 0).checkpoint == second
        again = stages.train_sft_policy(run, "tiny").policy.checkpoint
        assert again == first  # the same inputs and settings: the same folder
    finally:
        stages.PolicyRecord(first).write(run.layout, 0)


def test_a_settings_sweep_evaluates_on_the_seen_split_only(iteration, tmp_path):
    """``held_out``: what the learning benchmark's DPO sweep scores on, so unseen is never looked at."""
    import os
    import shutil

    run, _ = iteration
    home = tmp_path / "copy"
    shutil.copytree(run.layout.home, home, copy_function=os.link)
    trial = stages.open_task_run("sciworld", load_profile(NANO), BenchmarkSources(home=home))
    for split in ("seen", "unseen"):
        trial.layout.eval_jsonl(1, split).unlink()
    with EnvironmentPool() as envs:
        result = stages.evaluate(trial, 1, open_backend, envs, held_out=("seen",))
    assert "eval_seen_avg_reward" in result.metrics and "eval_unseen_avg_reward" not in result.metrics
    assert not trial.layout.eval_jsonl(1, "unseen").exists()
    assert set(stages.EvalReport.read(trial.layout.eval_report(1)).splits) == {"seen"}
    assert run.layout.eval_jsonl(1, "unseen").exists()  # the original run is untouched
