"""The real ScienceWorld engine: gold-path replay, reward accounting, splits."""

import collections
import json
import os

from eto_assets.envs.base import INVALID_FORMAT_OBSERVATION
from eto_assets.envs.sciworld import MAX_STEPS, compute_splits


def test_gold_path_replay_scores_100(sciworld_small):
    bench, env = sciworld_small
    task = bench.tasks("train")[0]
    traj = bench.expert_trajectory(env, task)
    assert traj is not None
    assert traj.reward == 1.0 and traj.success
    assert traj.messages[0].content.startswith("Your task is to")
    assert traj.messages[-1].role == "assistant"
    observations = [m.content for m in traj.messages if m.content.startswith("Observation:")]
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
