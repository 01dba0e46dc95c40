"""The batched rollout engine used by exploration and evaluation.

Many episodes run at once. The prompts of all episodes waiting for an action are generated as one
batch (each naming its episode, so the backend reuses that episode's earlier turns); the
environments step in parallel threads (ScienceWorld's engines run in their own JVMs and the worker
pool's environments in their own processes, so the GIL is not held while they work); finished
episodes are retired and new ones admitted at once (continuous batching at the episode level).
With ``batch_fraction < 1`` the model starts on the episodes already waiting while the others'
environments still step. Sampling seeds are per episode and step, so a sampled episode does not
depend on which others shared its batch. With ``concurrency=1`` it is the classic
one-generation-per-step loop, which the benchmark compares against.

Each finished episode is appended to the output JSONL at once; a rerun skips the episodes already
there, so an interrupted stage resumes without duplicating work.
"""

from __future__ import annotations

import json
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from eto_assets.agent.backends import GenerationConfig, InferenceBackend
from eto_assets.agent.parsing import parse_answer
from eto_assets.agent.prompt import PromptBook, build_conversation
from eto_assets.config.profile import RolloutConfig
from eto_assets.data.schemas import Message, Trajectory, append_jsonl
from eto_assets.envs.base import Environment, StepResult, TaskInstance, format_observation


@dataclass
class RolloutStats:
    episodes: int = 0
    resumed: int = 0
    model_seconds: float = 0.0
    env_seconds: float = 0.0  # wall time with at least one environment call running
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
    step_rewards: list[float] = field(default_factory=list)  # episode reward after each step

    @property
    def key(self) -> str:
        return episode_key(self.task.task_id, self.sample)


def episode_key(task_id: str, sample: int) -> str:
    return f"{task_id}#{sample}"


def seed_for(*parts: object) -> int:
    """A stable 31-bit sampling seed from any parts (run seed, episode key, step)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode()) & 0x7FFFFFFF


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
    config: RolloutConfig,
    *,
    temperature: float = 0.0,
    source: str = "agent",
    desc: str = "rollouts",
    stats: RolloutStats | None = None,
    release_env: Callable[[Environment], None] | None = None,
) -> list[Trajectory]:
    """Play every task once (greedy unless ``temperature`` > 0); returns all trajectories in task
    order, resumed ones included.

    Environments come from ``make_env`` and go back through ``release_env`` (default: closed), so a
    caller can keep expensive engines alive across stages."""
    release_env = release_env or (lambda env: env.close())
    stats = stats if stats is not None else RolloutStats()
    started = time.perf_counter()
    finished = load_finished(out_path)
    if finished:
        _rewrite_clean(out_path, finished)
    stats.resumed = len(finished)
    order = [(t, 0) for t in tasks]
    pending = deque((t, s) for t, s in order if episode_key(t.task_id, s) not in finished)
    progress = tqdm(total=len(order), initial=len(finished), desc=desc, unit="ep", mininterval=2.0)
    rewards = [t.reward for t in finished.values()]
    n_envs = min(config.concurrency, len(pending))
    pool = ThreadPoolExecutor(max_workers=max(1, n_envs))
    free_envs: list[Environment] = []
    stepping: dict[Future, _Episode] = {}  # environment calls in flight
    ready: list[_Episode] = []  # episodes waiting for the model
    env_busy = _BusyClock()

    def admit() -> None:
        while pending and free_envs:
            task, sample = pending.popleft()
            ep = _Episode(task, sample, free_envs.pop(), [])
            stepping[pool.submit(env_busy.timed, ep.env.reset, task)] = ep

    def retire(ep: _Episode) -> None:
        traj = _to_trajectory(ep, source)
        append_jsonl(out_path, traj)
        finished[ep.key] = traj
        rewards.append(traj.reward)
        stats.episodes += 1
        free_envs.append(ep.env)
        backend.end_session(ep.key)
        progress.update(1)
        progress.set_postfix(mean_reward=f"{sum(rewards) / len(rewards):.3f}")

    def quorum() -> int:
        """Generate once this many episodes wait (or nothing else will arrive), so the model works
        on one part of the episodes while the environments of the others step."""
        return max(1, math.ceil(config.batch_fraction * (len(stepping) + len(ready))))

    try:
        free_envs.extend(pool.map(lambda _: make_env(), range(n_envs)))
        admit()
        while stepping or ready:
            while stepping and len(ready) < quorum():
                done, _ = wait(stepping, return_when=FIRST_COMPLETED)
                for future in done:
                    ep = stepping.pop(future)
                    _record(ep, future.result())
                    if ep.ended_by:
                        retire(ep)
                    else:
                        ready.append(ep)
                admit()
            if not ready:
                continue
            batch, ready = ready, []
            t0 = time.perf_counter()
            answers = backend.generate(
                [build_conversation(book, ep.task.task_type, ep.messages) for ep in batch],
                GenerationConfig(config.max_new_tokens, temperature, config.seed),
                seeds=[seed_for(config.seed, ep.key, ep.steps) for ep in batch],
                sessions=[ep.key for ep in batch],
            )
            stats.model_seconds += time.perf_counter() - t0
            for ep, answer in zip(batch, answers, strict=True):
                if answer is None:
                    ep.ended_by = "context_limit"
                    retire(ep)
                    continue
                ep.messages.append(Message("assistant", answer.strip()))
                ep.steps += 1
                stepping[pool.submit(env_busy.timed, ep.env.step, parse_answer(answer).action)] = ep
            admit()
    finally:
        progress.close()
        pool.shutdown(wait=True)
        for env in free_envs + [ep.env for ep in (*stepping.values(), *ready)]:
            release_env(env)
        stats.env_seconds += env_busy.seconds
        stats.wall_seconds += time.perf_counter() - started
    return [finished[episode_key(t.task_id, s)] for t, s in order]


def _record(ep: _Episode, result: str | StepResult) -> None:
    """Apply an environment reply: the task message after a reset, else a step's result."""
    if isinstance(result, str):
        ep.messages.append(Message("user", result))
        return
    ep.last = result
    ep.step_rewards.append(result.reward)
    ep.messages.append(Message("user", format_observation(result.observation)))
    if result.done:
        ep.ended_by = "done"
    elif ep.steps >= ep.task.max_steps:
        ep.ended_by = "max_steps"


class _BusyClock:
    """Wall time during which at least one environment call was running."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._running = 0
        self._since = 0.0
        self._lock = threading.Lock()

    def timed(self, fn: Callable, *args):
        with self._lock:
            if self._running == 0:
                self._since = time.perf_counter()
            self._running += 1
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self.seconds += time.perf_counter() - self._since


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
        metadata={
            "sample": ep.sample,
            "steps": ep.steps,
            "ended_by": ep.ended_by,
            "step_rewards": ep.step_rewards,
        },
    )
