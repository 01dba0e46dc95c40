"""ALFWorld on the real TextWorld PDDL engine: splits, episode accounting and the expert.

The game tests need the json_2.1.1 files under ``$ETO_DATA_DIR/alfworld`` (conftest's ``data_dir``)
and ``textworld[pddl]``; they skip, saying why, where either is missing. The text helpers always run.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from eto_assets.envs.alfworld.benchmark import SHORT_TYPES, AlfWorldBenchmark, resolve_data_dir
from eto_assets.envs.alfworld.engine import clean_feedback, clean_intro, name_entities
from eto_assets.envs.alfworld.expert import class_of, visible_names
from eto_assets.envs.base import INVALID_FORMAT_OBSERVATION, BenchmarkNotAvailable, TaskInstance


# -- helpers that need no data -------------------------------------------------------------------
def test_entity_names_follow_alfworld_numbering():
    ids = [
        "cabinet_bar__minus_00_dot_50_bar__plus_00_dot_48",
        "cabinet_bar__plus_01_dot_20_bar__plus_00_dot_48",
        "sink_bar__plus_00_dot_00_bar__plus_00_dot_89_bar_sinkbasin",
        "mug_bar__plus_00_dot_10_bar__plus_00_dot_90",
        "mugtype",
    ]
    infos = {i: SimpleNamespace(id=i, name=None) for i in ids}
    name_entities(infos)
    assert infos[ids[0]].name == "cabinet 2"  # the first sorted id gets the highest number
    assert infos[ids[1]].name == "cabinet 1"
    assert infos[ids[2]].name == "sinkbasin 1"
    assert infos[ids[3]].name == "mug 1"
    assert infos["mugtype"].name == "mugtype"


def test_text_cleanup_and_parsing():
    intro = "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room.\n\nYour task is to: x."
    assert clean_intro(intro) == "You are in the middle of a room.\n\nYour task is to: x."
    observation = clean_feedback(
        "You arrive at loc 27. On the countertop 2, you see a egg 1, and an apple 3."
    )
    assert observation == "On the countertop 2, you see a egg 1, and an apple 3."
    assert visible_names(observation) == ["egg 1", "apple 3"]
    assert visible_names("On the drawer 1, you see nothing.") == []
    assert class_of("butterknife 12") == "butterknife"


def test_missing_data_names_the_path_and_the_download_step(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BenchmarkNotAvailable) as info:
        resolve_data_dir(None, tmp_path / "alfworld_data")
    assert str(tmp_path / "alfworld_data") in str(info.value)
    assert "alfworld-download" in str(info.value)
    with pytest.raises(BenchmarkNotAvailable):
        AlfWorldBenchmark(data_dir=tmp_path)


def test_unknown_task_type_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        AlfWorldBenchmark(data_dir=tmp_path, task_types=["fly"])


# -- the real games ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alf_data(data_dir: Path) -> Path:
    """The ETO_DATA_DIR-style root (conftest's ``data_dir``), skipping when it has no ALFWorld games."""
    if not (data_dir / "alfworld" / "json_2.1.1").is_dir():
        pytest.skip(f"no ALFWorld game files under {data_dir / 'alfworld' / 'json_2.1.1'}")
    return data_dir


@pytest.fixture(scope="module")
def bench(alf_data: Path) -> AlfWorldBenchmark:
    return AlfWorldBenchmark(data_dir=alf_data)


@pytest.fixture(scope="module")
def env(bench):
    pytest.importorskip("textworld", reason="ALFWorld's engine needs textworld[pddl]==1.6.2")
    pytest.importorskip("fast_downward", reason="ALFWorld's engine needs fast-downward-textworld")
    environment = bench.make_env()
    yield environment
    environment.close()


def _first_of_each_type(tasks: list[TaskInstance]) -> list[TaskInstance]:
    firsts: dict[str, TaskInstance] = {}
    for task in tasks:
        firsts.setdefault(task.task_type, task)
    return list(firsts.values())


def test_splits_hold_the_eto_games(bench, alf_data):
    seen, unseen, train = bench.tasks("seen"), bench.tasks("unseen"), bench.tasks("train")
    assert len(seen) == 140 and len(unseen) == 134 and train
    for split, tasks in (("seen", seen), ("unseen", unseen), ("train", train)):
        assert {t.task_type for t in tasks} == set(SHORT_TYPES)
        assert all(t.task_id.startswith(f"{split}/") and t.task_id.count("/") == 2 for t in tasks)
        assert all(t.max_steps == 40 and t.split == split for t in tasks)
    assert len({t.task_id for t in seen + unseen + train}) == len(seen) + len(unseen) + len(train)
    assert [t.task_id for t in train] == sorted(t.task_id for t in train)
    seen_per_type = {k: sum(t.task_type == k for t in seen) for k in SHORT_TYPES}
    assert seen_per_type == {"put": 35, "clean": 27, "heat": 16, "cool": 25, "examine": 13, "puttwo": 24}
    assert [t.task_id for t in AlfWorldBenchmark(data_dir=alf_data).tasks("seen")] == [
        t.task_id for t in seen
    ]


def test_type_filter_limit_and_step_cap(alf_data):
    small = AlfWorldBenchmark(
        data_dir=alf_data,
        task_types=["heat", "pick_two_obj_and_place"],
        max_steps_cap=12,
        limit_per_type=2,
    )
    tasks = small.tasks("unseen")
    assert [t.task_type for t in tasks] == ["heat", "heat", "puttwo", "puttwo"]
    assert all(t.max_steps == 12 for t in tasks)
    with pytest.raises(ValueError):
        small.tasks("dev")


def test_reset_and_inadmissible_actions_count_as_steps(bench, env):
    task = bench.tasks("seen")[0]
    capped = TaskInstance(task.task_id, task.task_type, task.split, 3, task.payload)
    first = env.reset(capped)
    assert "Your task is to" in first and "Welcome" not in first and "you see" in first
    result = env.step("fly to the moon")
    assert (result.observation, result.reward, result.done, result.success) == (
        "Nothing happens.",
        0.0,
        False,
        False,
    )
    assert env.steps == 1
    result = env.step("")
    assert result.observation == INVALID_FORMAT_OBSERVATION and env.steps == 2 and not result.done
    result = env.step("look")
    assert result.done and not result.success and result.reward == 0.0 and env.steps == 3
    with pytest.raises(RuntimeError):
        env.step("look")


def test_expert_wins_one_game_per_type_with_reward_accounting(bench, env):
    tasks = _first_of_each_type(bench.tasks("train")) + _first_of_each_type(bench.tasks("seen"))
    assert len(tasks) == 12
    for task in tasks:
        trajectory = bench.expert_trajectory(env, task)
        assert trajectory is not None, task.task_id
        assert trajectory.success and trajectory.reward == 1.0
        assert 0 < trajectory.num_steps <= task.max_steps
        assert trajectory.messages[0].role == "user" and "Your task is to" in trajectory.messages[0].content
        assert trajectory.messages[-1].role == "assistant"
    # Step by step on the last one: reward stays 0 until the winning action, then 1.0 and done.
    actions = [m.content.rsplit("Action: ", 1)[1] for m in trajectory.messages if m.role == "assistant"]
    env.reset(task)
    for index, action in enumerate(actions):
        result = env.step(action)
        last = index == len(actions) - 1
        assert (result.reward, result.done, result.success) == (
            (1.0, True, True) if last else (0.0, False, False)
        )


def test_engines_in_threads_keep_process_state(bench, env):
    """Resets from several threads go through one lock: no crash, and sys.argv/sys.stdout survive."""
    tasks = [t for t in bench.tasks("seen") if t.task_type == "examine"][:2]
    argv, stdout = list(sys.argv), sys.stdout
    envs = [bench.make_env() for _ in tasks]
    intros: list[str] = []
    threads = [
        threading.Thread(target=lambda e=e, t=t: intros.append(e.reset(t)))
        for e, t in zip(envs, tasks, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for environment in envs:
        environment.close()
    assert len(intros) == 2 and all("Your task is to" in text for text in intros)
    assert sys.argv == argv and sys.stdout is stdout
