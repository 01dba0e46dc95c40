"""The batched rollout engine used by exploration and evaluation.

Many episodes run at once. Every round, the prompts of all episodes waiting for an action are
generated as one batch, the environments step in parallel threads (ScienceWorld's engines run in
their own JVMs, so the GIL is not held while they work), finished episodes are retired and new
ones admitted (continuous batching at the episode level). With ``concurrency=1`` it is the classic
one-generation-per-step loop, which the benchmark compares against.

Each finished episode is appended to the output JSONL at once; a rerun skips the episodes already
there, so an interrupted stage resumes without duplicating work.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from eto_assets.agent.backends import GenerationConfig, InferenceBackend
from eto_assets.agent.parsing import parse_answer
from eto_assets.agent.prompt import PromptBook, build_conversation
from eto_assets.data.schemas import Message, Trajectory, append_jsonl
from eto_assets.envs.base import Environment, StepResult, TaskInstance, format_observation


@dataclass(frozen=True)
class RolloutConfig:
    concurrency: int = 16
    temperature: float = 0.0
    max_new_tokens: int = 128
    samples_per_task: int = 1
    seed: int = 0
    env_threads: int | None = None  # environments stepping at once; None = one per CPU core


@dataclass
class RolloutStats:
    episodes: int = 0
    resumed: int = 0
    model_seconds: float = 0.0
    env_seconds: float = 0.0
    wall_seconds: float = 0.0


@dataclass
class _Episode:
    task: TaskInstance
    sample: int
    env: Environment
    messages: list[Message]
    last: StepResult = field(default_factory=lambda: StepResult("", 0.0, False, False))
    steps: int = 0
    ended_by: str = ""

    @property
    def key(self) -> str:
        return episode_key(self.task.task_id, self.sample)


def episode_key(task_id: str, sample: int) -> str:
    return f"{task_id}#{sample}"


def load_finished(path: Path) -> dict[str, Trajectory]:
    """Finished episodes already in ``path``; a torn last line (interrupted append) is ignored."""
    done: dict[str, Trajectory] = {}
    if not path.exists():
        return done
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            traj = Trajectory.from_dict(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if lineno == len(lines):
                continue
            raise
        done[episode_key(traj.task_id, int(traj.metadata.get("sample", 0)))] = traj
    return done


def _rewrite_clean(path: Path, finished: dict[str, Trajectory]) -> None:
    """Drop a torn tail line before appending again."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for traj in finished.values():
            fh.write(json.dumps(traj.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)


def run_rollouts(
    tasks: Sequence[TaskInstance],
    make_env: Callable[[], Environment],
    backend: InferenceBackend,
    book: PromptBook,
    out_path: Path,
    config: RolloutConfig = RolloutConfig(),
    *,
    source: str = "agent",
    desc: str = "rollouts",
    stats: RolloutStats | None = None,
    release_env: Callable[[Environment], None] | None = None,
) -> list[Trajectory]:
    """Play every (task, sample) once; returns all trajectories in task order (resumed ones included).

    Environments come from ``make_env`` and go back through ``release_env`` (default: closed), so a
    caller can keep expensive engines alive across stages."""
    release_env = release_env or (lambda env: env.close())
    stats = stats if stats is not None else RolloutStats()
    started = time.perf_counter()
    finished = load_finished(out_path)
    if finished:
        _rewrite_clean(out_path, finished)
    stats.resumed = len(finished)
    order = [(t, s) for t in tasks for s in range(config.samples_per_task)]
    pending = deque((t, s) for t, s in order if episode_key(t.task_id, s) not in finished)
    free_envs: list[Environment] = []
    active: list[_Episode] = []
    progress = tqdm(total=len(order), initial=len(finished), desc=desc, unit="ep", mininterval=2.0)
    rewards = [t.reward for t in finished.values()]
    n_envs = min(config.concurrency, len(pending))
    pool = ThreadPoolExecutor(max_workers=max(1, min(n_envs, config.env_threads or os.cpu_count() or 1)))
    try:
        free_envs.extend(pool.map(lambda _: make_env(), range(n_envs)))
        while pending or active:
            admitted = []
            while pending and free_envs:
                task, sample = pending.popleft()
                admitted.append(_Episode(task, sample, free_envs.pop(), []))
            t0 = time.perf_counter()
            for ep, first in zip(admitted, pool.map(lambda e: e.env.reset(e.task), admitted), strict=True):
                ep.messages.append(Message("user", first))
            stats.env_seconds += time.perf_counter() - t0
            active.extend(admitted)

            t0 = time.perf_counter()
            conversations = [build_conversation(book, ep.task.task_type, ep.messages) for ep in active]
            answers = backend.generate(
                conversations,
                GenerationConfig(config.max_new_tokens, config.temperature, config.seed + stats.episodes),
            )
            stats.model_seconds += time.perf_counter() - t0

            stepping = []
            for ep, answer in zip(active, answers, strict=True):
                if answer is None:
                    ep.ended_by = "context_limit"
                    continue
                parsed = parse_answer(answer)
                ep.messages.append(Message("assistant", answer.strip()))
                ep.steps += 1
                stepping.append((ep, parsed.action))
            t0 = time.perf_counter()
            results = list(pool.map(lambda item: item[0].env.step(item[1]), stepping))
            stats.env_seconds += time.perf_counter() - t0
            for (ep, _), result in zip(stepping, results, strict=True):
                ep.last = result
                ep.messages.append(Message("user", format_observation(result.observation)))
                if result.done:
                    ep.ended_by = "done"
                elif ep.steps >= ep.task.max_steps:
                    ep.ended_by = "max_steps"

            still_active = []
            for ep in active:
                if not ep.ended_by:
                    still_active.append(ep)
                    continue
                traj = _to_trajectory(ep, source)
                append_jsonl(out_path, traj)
                finished[ep.key] = traj
                rewards.append(traj.reward)
                stats.episodes += 1
                free_envs.append(ep.env)
                progress.update(1)
                progress.set_postfix(mean_reward=f"{sum(rewards) / len(rewards):.3f}")
            active = still_active
    finally:
        progress.close()
        for env in free_envs + [ep.env for ep in active]:
            release_env(env)
        pool.shutdown()
        stats.wall_seconds += time.perf_counter() - started
    return [finished[episode_key(t.task_id, s)] for t, s in order]


def _to_trajectory(ep: _Episode, source: str) -> Trajectory:
    messages = list(ep.messages)
    if len(messages) > 1 and messages[-1].role == "user":
        messages.pop()  # a trajectory ends on the agent's last action
    return Trajectory(
        task_id=ep.task.task_id,
        task_type=ep.task.task_type,
        split=ep.task.split,
        messages=messages,
        reward=ep.last.reward,
        success=ep.last.success,
        source=source,
        metadata={"sample": ep.sample, "steps": ep.steps, "ended_by": ep.ended_by},
    )
