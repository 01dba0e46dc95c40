"""Faults around the rollout engine: torn and stale rollout files, readers that name the bad line,
a killed ScienceWorld JVM, a hung environment. Real engine, real tiny model, micro sizes."""

import json
import os
import signal
import threading
import time

import pytest

from eto_assets.agent.backends import TransformersBackend
from eto_assets.agent.rollout import RolloutStats, load_finished, rollout_fingerprint, run_rollouts
from eto_assets.config.profile import RolloutConfig
from eto_assets.data.schemas import DataFormatError, read_jsonl, read_pairs, read_trajectories
from eto_assets.envs.base import StepResult
from eto_assets.envs.sciworld import EngineHosts, SciWorldEnv

CONFIG = RolloutConfig(concurrency=2, max_new_tokens=8)


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    path, _ = tiny_model_dir
    return TransformersBackend(path, max_batch_size=4)


def tasks(bench, n=2):
    return bench.tasks("seen")[:n]


# ------------------------------------------------------------------ torn lines and readers


def test_a_torn_only_line_is_dropped_not_glued_to_the_next_record(
    sciworld_small, tiny_model_dir, backend, tmp_path
):
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    out = tmp_path / "rollouts.jsonl"
    out.write_text('{"task_id": "x", "mess')  # an append killed mid-write, nothing before it
    trajs = run_rollouts(tasks(bench), bench.make_env, backend, book, out, CONFIG)
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["task_id"] != "x" for line in lines)
    assert [t.task_id for t in read_trajectories(out)] == [t.task_id for t in trajs]


def test_a_torn_last_line_without_newline_is_dropped_on_resume(
    sciworld_small, tiny_model_dir, backend, tmp_path
):
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    out = tmp_path / "rollouts.jsonl"
    run_rollouts(tasks(bench, 1), bench.make_env, backend, book, out, CONFIG)
    with out.open("a") as fh:
        fh.write('{"task_id": "y", "mess')
    stats = RolloutStats()
    run_rollouts(tasks(bench, 2), bench.make_env, backend, book, out, CONFIG, stats=stats)
    assert stats.resumed == 1 and stats.episodes == 1
    assert len(read_trajectories(out)) == 2


@pytest.mark.parametrize("reader", [read_jsonl, read_trajectories, read_pairs])
def test_readers_name_the_file_and_line_of_a_bad_record(tmp_path, reader):
    path = tmp_path / "data.jsonl"
    path.write_text('\n{"task_id": "x", "mess')
    with pytest.raises(DataFormatError, match=r"data\.jsonl:2: not valid JSON .*interrupted"):
        reader(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataFormatError, match=r"data\.jsonl:1: expected a JSON object"):
        reader(path)


def test_a_bad_line_in_the_middle_of_a_rollout_file_is_named(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    path.write_text('{"task_id": "x", "mess\n{"task_id": "y"}\n')
    with pytest.raises(DataFormatError, match=r"rollouts\.jsonl:1"):
        load_finished(path)


# ------------------------------------------------------------------ stale records


def test_resume_keeps_only_records_of_the_same_policy_and_settings(
    sciworld_small, tiny_model_dir, backend, tmp_path
):
    bench, _ = sciworld_small
    path, book = tiny_model_dir
    out = tmp_path / "rollouts.jsonl"
    old = rollout_fingerprint(path, CONFIG, temperature=0.0, max_steps=5)
    run_rollouts(tasks(bench, 2), bench.make_env, backend, book, out, CONFIG, fingerprint=old)
    # same policy and settings: everything is kept
    stats = RolloutStats()
    run_rollouts(tasks(bench, 2), bench.make_env, backend, book, out, CONFIG, stats=stats, fingerprint=old)
    assert (stats.resumed, stats.discarded, stats.episodes) == (2, 0, 0)
    assert stats.resume_note == "kept 2 of 2 finished episodes"
    # max_new_tokens 8 -> 1: a different fingerprint, every record is redone
    changed = RolloutConfig(concurrency=2, max_new_tokens=1)
    new = rollout_fingerprint(path, changed, temperature=0.0, max_steps=5)
    assert new != old
    stats = RolloutStats()
    trajs = run_rollouts(
        tasks(bench, 2), bench.make_env, backend, book, out, changed, stats=stats, fingerprint=new
    )
    assert (stats.resumed, stats.discarded, stats.episodes) == (0, 2, 2)
    assert stats.resume_note == (
        "kept 0 of 2 finished episodes; 2 were produced by another policy or settings and were redone"
    )
    stored = read_trajectories(out)
    assert len(stored) == 2 and {t.metadata["fingerprint"] for t in stored} == {new}
    assert [t.task_id for t in trajs] == [t.task_id for t in tasks(bench, 2)]


def test_records_without_a_fingerprint_are_redone(sciworld_small, tiny_model_dir, backend, tmp_path):
    bench, _ = sciworld_small
    path, book = tiny_model_dir
    out = tmp_path / "rollouts.jsonl"
    run_rollouts(tasks(bench, 1), bench.make_env, backend, book, out, CONFIG)  # an older file
    stats = RolloutStats()
    fp = rollout_fingerprint(path, CONFIG, temperature=0.0, max_steps=5)
    run_rollouts(tasks(bench, 1), bench.make_env, backend, book, out, CONFIG, stats=stats, fingerprint=fp)
    assert (stats.resumed, stats.discarded) == (0, 1)


def test_a_retrained_checkpoint_changes_the_fingerprint(tiny_model_dir, tmp_path):
    import shutil

    path, _ = tiny_model_dir
    copy = tmp_path / "ckpt"
    shutil.copytree(path, copy)
    before = rollout_fingerprint(copy, CONFIG, temperature=0.0, max_steps=5)
    assert before == rollout_fingerprint(copy, CONFIG, temperature=0.0, max_steps=5)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert rollout_fingerprint(copy, CONFIG, temperature=0.0, max_steps=5) != before
    assert rollout_fingerprint(copy, CONFIG, temperature=0.7, max_steps=5) != before


# ------------------------------------------------------------------ environments that recover


def test_a_killed_jvm_restarts_and_every_episode_finishes(
    sciworld_small, tiny_model_dir, backend, tmp_path, caplog
):
    """The JVM of the games is SIGKILLed mid-rollout (just before the third step of the run): the
    games on it fail, a new JVM is started, and those episodes are replayed from scratch; every
    task ends up in the file once. The restart is counted, and py4j prints no traceback for it."""
    caplog.set_level("DEBUG")
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    hosts = EngineHosts(1)
    killed: list[int] = []
    steps = []
    lock = threading.Lock()

    class KillingEnv(SciWorldEnv):
        def step(self, action):
            with lock:
                steps.append(action)
                if len(steps) == 3 and not killed:
                    killed.append(self.host_pid)
                    os.kill(self.host_pid, signal.SIGKILL)
                    time.sleep(0.2)
            return super().step("look around")  # a real engine call (the tiny model's may not parse)

    out = tmp_path / "rollouts.jsonl"
    todo = bench.tasks("seen")[:2] + bench.tasks("unseen")[:2]
    stats = RolloutStats()
    trajs = run_rollouts(
        todo,
        lambda: KillingEnv(hosts),
        backend,
        book,
        out,
        RolloutConfig(concurrency=4, max_new_tokens=8),
        stats=stats,
    )
    assert killed, "the JVM was killed during the rollouts"
    stored = read_trajectories(out)
    assert sorted(t.task_id for t in stored) == sorted(t.task_id for t in todo)  # each once
    assert [t.task_id for t in trajs] == [t.task_id for t in todo]
    assert stats.env_faults >= 1 and stats.failed == 0  # replayed, none given up
    assert not any(t.metadata.get("failed") for t in stored)
    assert all(h.pid != killed[0] for h in hosts._hosts)  # a new JVM took over
    py4j = [r for r in caplog.records if r.name.startswith("py4j") and r.levelname in ("ERROR", "CRITICAL")]
    assert not py4j, f"{len(py4j)} py4j errors logged, e.g. {py4j[0].getMessage()[:200]}"


class _HangingEnv:
    """A fake environment whose step on one task sleeps past the timeout."""

    def __init__(self, hang_on: str, seconds: float) -> None:
        self.hang_on, self.seconds = hang_on, seconds
        self.task = None

    def reset(self, task):
        self.task = task
        return f"Task {task.task_id}"

    def step(self, action):
        if self.task.task_id == self.hang_on:
            time.sleep(self.seconds)
        return StepResult("ok", 0.5, True, False)

    def close(self):
        pass


def test_a_hung_step_times_out_and_the_episode_is_recorded_failed(
    sciworld_small, tiny_model_dir, backend, tmp_path
):
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    todo = tasks(bench, 2)
    # the fake environment's reward is what counts here: a 4-token reply may have no valid action,
    # and ETO's invalid-format rule (tests/envs/test_invalid_format_reward.py) would score it 0
    config = RolloutConfig(
        concurrency=2,
        max_new_tokens=4,
        step_timeout_s=1.0,
        max_episode_retries=1,
        invalid_format_reward="keep",
    )
    stats = RolloutStats()
    started = time.perf_counter()
    trajs = run_rollouts(
        todo,
        lambda: _HangingEnv(todo[0].task_id, 3.0),
        backend,
        book,
        tmp_path / "rollouts.jsonl",
        config,
        stats=stats,
    )
    assert time.perf_counter() - started < 10
    hung, fine = trajs
    assert hung.reward == 0.0 and not hung.success
    assert hung.metadata["failed"] == f"environment step 1 of task {todo[0].task_id} timed out after 1 s"
    assert hung.metadata["attempts"] == 2 and stats.env_faults == 2 and stats.failed == 1
    assert fine.reward == 0.5 and "failed" not in fine.metadata
    # a rerun plays the failed episode again and keeps the good one
    stats = RolloutStats()
    run_rollouts(
        todo, lambda: _HangingEnv("none", 0), backend, book, tmp_path / "rollouts.jsonl", config, stats=stats
    )
    assert (stats.resumed, stats.episodes) == (1, 1)
    assert [t.reward for t in read_trajectories(tmp_path / "rollouts.jsonl")] == [0.5, 0.5]


class _CrashingEnv(_HangingEnv):
    def step(self, action):
        raise ConnectionError("engine went away")


def test_an_environment_that_keeps_failing_is_recorded_with_its_reason(
    sciworld_small, tiny_model_dir, backend, tmp_path
):
    bench, _ = sciworld_small
    _, book = tiny_model_dir
    todo = tasks(bench, 1)
    made = []

    def make_env():
        made.append(1)
        return _CrashingEnv("", 0)

    [traj] = run_rollouts(todo, make_env, backend, book, tmp_path / "r.jsonl", CONFIG)
    assert traj.metadata["failed"].endswith("failed: ConnectionError: engine went away")
    assert traj.metadata["attempts"] == 3 and len(made) == 4  # 1 + a new env after each of 3 faults
