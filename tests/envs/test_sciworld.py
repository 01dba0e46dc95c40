"""The real ScienceWorld engine: gold-path replay, reward accounting, splits."""

import collections
import json
import os
from pathlib import Path

import pytest

from eto_assets.envs.base import INVALID_FORMAT_OBSERVATION
from eto_assets.envs.sciworld import MAX_STEPS, TASK_TURN_PREFIX, compute_splits, golden_task_turn


def test_gold_path_replay_scores_100(sciworld_small):
    bench, env = sciworld_small
    task = bench.tasks("train")[0]
    traj = bench.expert_trajectory(env, task)
    assert traj is not None
    assert traj.reward == 1.0 and traj.success
    assert traj.messages[0].content.startswith("Your task is to")
    assert traj.messages[-1].role == "assistant"
    observations = [m.content for m in traj.messages if m.content.startswith("Observation: ")]
    assert len(observations) == traj.num_steps - 1  # the final observation is dropped
    assert all(len(o) > len("Observation: ") for o in observations)


def test_invalid_format_counts_and_reward_is_running_max(sciworld_small):
    bench, env = sciworld_small
    task = bench.tasks("seen")[0]
    gold = env.gold_actions(task)
    env.reset(task)
    result = env.step("")
    assert result.observation == INVALID_FORMAT_OBSERVATION and not result.done
    best = 0.0
    for action in gold[: len(gold) // 2]:
        result = env.step(action)
        assert result.reward >= best  # running maximum never drops
        best = result.reward
    assert 0.0 < best < 1.0
    assert not result.success


def test_wrong_focus_ends_episode_with_zero(sciworld_small):
    bench, env = sciworld_small
    task = [t for t in bench.tasks("seen") if t.task_type == "find-animal"][0]
    env.reset(task)
    result = env.step("focus on agent")
    assert result.done and not result.success
    assert result.reward == 0.0


def test_splits_are_deterministic_and_follow_eto_rules():
    splits = compute_splits().as_dict()
    assert set(splits["train"]) == set(MAX_STEPS)
    assert not any(t.startswith(("inclined-plane", "mendelian")) for t in splits["train"])
    assert all(len(v) <= 10 for s in ("seen", "unseen") for v in splits[s].values())
    assert all(len(v) <= 120 for v in splits["train"].values())
    for task_type in MAX_STEPS:
        assert not set(splits["train"][task_type]) & set(splits["unseen"][task_type])
    compute_splits.cache_clear()
    assert compute_splits().as_dict() == splits
    assert all(10 <= n <= 120 for n in MAX_STEPS.values())
    assert (
        MAX_STEPS["boil"] == 100
        and MAX_STEPS["find-animal"] == 15
        and MAX_STEPS["lifespan-longest-lived"] == 10
    )


def test_unseen_split_sizes_match_eto(data_dir):
    eto = json.loads((data_dir / "sciworld" / "eto_splits" / "test_indices.json").read_text())
    eto_counts = collections.Counter(name for name, _ in eto)
    ours = compute_splits().unseen
    assert sum(len(v) for v in ours.values()) == sum(eto_counts.values())
    assert len(ours) == len(eto_counts) == 24


def test_games_sharing_a_jvm_match_games_played_alone(sciworld_small):
    """Two games interleaved on one JVM see exactly what each sees alone; the JVM stops with its
    last game."""
    from eto_assets.envs.sciworld import EngineHosts, SciWorldEnv

    bench, solo = sciworld_small
    tasks = [bench.tasks("seen")[0], bench.tasks("unseen")[-1]]
    golds = [solo.gold_actions(t) for t in tasks]
    alone = []
    for task, gold in zip(tasks, golds, strict=True):
        solo.reset(task)
        alone.append([])
        for action in gold:
            alone[-1].append(solo.step(action))
            if alone[-1][-1].done:
                break

    hosts = EngineHosts(max_hosts=1)
    envs = [SciWorldEnv(hosts) for _ in tasks]
    assert len(hosts) == 1 and envs[0]._host is envs[1]._host
    for env, task in zip(envs, tasks, strict=True):
        env.reset(task)
    shared = [[], []]
    for i in range(max(map(len, golds))):
        for k, (env, gold) in enumerate(zip(envs, golds, strict=True)):
            if i < len(gold) and not (shared[k] and shared[k][-1].done):
                shared[k].append(env.step(gold[i]))
    assert shared == alone
    assert [r[-1].success for r in shared] == [True, True]
    java = envs[0]._host.engine._gateway.java_process
    envs[0].close()
    assert len(hosts) == 1 and java.poll() is None
    envs[1].close()
    assert len(hosts) == 0
    assert java.wait(timeout=30) is not None


def test_jvm_cap_defaults_to_one_per_two_cores():
    from eto_assets.envs.sciworld import EngineHosts, shared_hosts

    assert EngineHosts(3).max_hosts == 3
    assert EngineHosts().max_hosts == max(1, (os.cpu_count() or 2) // 2)
    assert shared_hosts(2) is shared_hosts(2) and shared_hosts(2) is not shared_hosts(3)


def test_benchmark_splits_are_etos_lists(data_dir):
    """ETO's index files are the source of truth: the counts come out of the benchmark's tasks()."""
    from eto_assets.envs.eto_splits import load_sciworld_eto_splits
    from eto_assets.envs.sciworld import SciWorldBenchmark

    bench = SciWorldBenchmark(data_dir=data_dir)
    assert bench.split_source == "eto"
    counts = {split: len(bench.tasks(split)) for split in ("train", "seen", "unseen")}
    assert counts == {"train": 1483, "seen": 194, "unseen": 211}
    eto = load_sciworld_eto_splits(data_dir)
    assert [t.task_id for t in bench.tasks("seen")] == [i.task_id for i in eto.dev]  # ETO's order
    # ETO's quirk, kept: 54 train tasks are also dev ("seen") tasks; unseen is disjoint from both.
    train = {t.task_id for t in bench.tasks("train")}
    seen = {t.task_id for t in bench.tasks("seen")}
    unseen = {t.task_id for t in bench.tasks("unseen")}
    assert len(train & seen) == 54 and not (train | seen) & unseen


def test_small_profiles_take_the_first_n_per_type_in_eto_order(data_dir):
    from eto_assets.config.profile import load_profile
    from eto_assets.envs.eto_splits import first_per_type, load_sciworld_eto_splits
    from eto_assets.envs.registry import scoped_tasks
    from eto_assets.envs.sciworld import SciWorldBenchmark

    scope = load_profile("tiny").scope("sciworld")
    bench = SciWorldBenchmark(scope.task_types, data_dir=data_dir)
    eto = load_sciworld_eto_splits(data_dir)
    for split, theirs, n in (("train", "train", scope.train_per_type), ("seen", "dev", scope.eval_per_type)):
        wanted = [i for i in eto.split(theirs) if i.task_name in scope.task_types]
        expected = [i.task_id for i in first_per_type(wanted, n)]
        assert [t.task_id for t in scoped_tasks(bench, split, scope)] == expected
        assert len(expected) == n * len(scope.task_types)


def test_missing_eto_splits_fall_back_loudly(tmp_path):
    from eto_assets.envs.sciworld import SciWorldBenchmark

    bench = SciWorldBenchmark(["find-animal"], data_dir=tmp_path)
    with pytest.warns(UserWarning, match="FALLING BACK"):
        assert bench.split_source == "engine-sampled"
    assert bench.tasks("unseen") and all(t.task_type == "find-animal" for t in bench.tasks("unseen"))


def test_task_turn_is_etos_task_description(sciworld_small):
    """ETO's agent reads the engine's ``info["taskDesc"]`` as its task turn
    (ETO eval_agent/envs/sciworld_env.py:95-97), which starts with ``Task Description:\\n``;
    the expert episode keeps the form of ETO's golden records, which lack it
    (ETO construct_preference.py:74 strips it from explored episodes)."""
    bench, env = sciworld_small
    task = bench.tasks("train")[0]
    turn = env.reset(task)
    assert turn.startswith(TASK_TURN_PREFIX + "Your task is to")
    expert = bench.expert_trajectory(env, task)
    assert expert is not None
    assert expert.messages[0].content == golden_task_turn(turn) == turn[len(TASK_TURN_PREFIX) :].strip()


def test_imported_eto_record_and_our_episodes_have_the_same_task_turn_form(sciworld_small, tmp_path):
    """An imported ETO ScienceWorld record's task turn, our expert's and our agent's with ETO's
    prefix removed (as construct_preference.py:74 does) all read "Your task is to ...": the
    importer keeps the text as is, and pairing our episodes with imported ones compares like with
    like once the prefix is stripped."""
    from eto_assets.data.eto_format import read_eto_sft, to_eto_turns

    fixture = Path(__file__).parents[1] / "fixtures/eto_layout/data/record_kinds_sciworld_sft.json"
    records, _ = read_eto_sft(fixture, on_bad_record="skip")
    assert records
    bench, env = sciworld_small
    task = bench.tasks("train")[0]
    agent_turn = env.reset(task)
    expert = bench.expert_trajectory(env, task)
    assert expert is not None
    ours = [to_eto_turns(expert.messages)[0]["value"], golden_task_turn(agent_turn)]
    theirs = [r.messages[0].content for r in records]
    for text in ours + theirs:
        assert text.startswith("Your task is to") and not text.startswith(TASK_TURN_PREFIX), text
    assert to_eto_turns(records[0].messages)[0]["from"] == to_eto_turns(expert.messages)[0]["from"]
    assert agent_turn == TASK_TURN_PREFIX + expert.messages[0].content
