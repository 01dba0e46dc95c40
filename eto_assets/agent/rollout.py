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

A prompt that no longer fits the model's context (with ``max_new_tokens``) loses its oldest
(action, observation) rounds, as few as needed, and the episode goes on (``rollout.context_overflow:
cut_oldest_rounds``, the default; ETO's FastChat worker cuts the oldest prompt tokens instead): the
instruction, ``OK``, the in-context example and the task turn always stay, only the prompt is cut,
and the stored episode stays whole. An episode whose task and newest round alone do not fit ends
(``ended_by`` "context_limit"), as every overflowing one does under ``end_episode``. Backends that
count tokens are asked before generating; for one that cannot (``openai``), a ``None`` answer
makes the engine ask again with one more round left out. Records note the turns whose prompt was
cut (``metadata["cut_turns"]``) and the most rounds left out (``"cut_rounds"``).

An episode may start from a given prefix (:class:`EpisodeStart` ``forced``): its first agent turns
are an expert's, replayed in the real environment (which restores the state the expert was in, on
every benchmark), and the policy plays on from there. The step-level methods branch from every
step of an expert trajectory this way; the prefixes of one trajectory share their tokens, which the
backend's prefix cache computes once.

Each finished episode is appended to the output JSONL at once; a rerun skips the episodes already
there, so an interrupted stage resumes without duplicating work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from eto_assets.agent.backends import Conversation, GenerationConfig, InferenceBackend, fits
from eto_assets.agent.prompt import PromptBook, build_conversation, episode_rounds
from eto_assets.config.profile import RolloutConfig
from eto_assets.data.files import folder_identity
from eto_assets.data.react import parse_answer
from eto_assets.data.schemas import DataFormatError, Message, Trajectory, append_jsonl, write_jsonl
from eto_assets.envs.base import (
    Environment,
    StepResult,
    TaskInstance,
    format_observation,
    is_invalid_format,
)


@dataclass
class RolloutStats:
    episodes: int = 0
    resumed: int = 0
    discarded: int = 0  # finished records of another policy or settings, redone
    failed: int = 0  # episodes recorded as failed after their retries
    env_faults: int = 0  # environment calls that failed or timed out (each restarts an episode)
    cut_turns: int = 0  # agent turns whose prompt left out the episode's oldest rounds (context)
    cut_episodes: int = 0  # episodes with at least one such turn
    resume_note: str = ""
    model_seconds: float = 0.0
    env_seconds: float = 0.0  # wall time with at least one environment call running
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class EpisodeStart:
    """One episode to play: ``task``, as its sample ``sample``, with its first ``len(forced)`` agent
    turns given (whole turns, thought and action, replayed in the environment before the policy
    plays on). ``branch`` tells apart episodes of one task and sample that start differently."""

    task: TaskInstance
    sample: int = 0
    forced: tuple[str, ...] = ()
    branch: str = ""

    @property
    def key(self) -> str:
        return episode_key(self.task.task_id, self.sample, self.branch)


@dataclass
class _Episode:
    task: TaskInstance
    sample: int
    env: Environment
    messages: list[Message]
    forced: tuple[str, ...] = ()
    branch: str = ""
    last: StepResult = field(default_factory=lambda: StepResult("", 0.0, False, False))
    steps: int = 0
    ended_by: str = ""
    step_rewards: list[float] = field(default_factory=list)  # episode reward after each step
    attempt: int = 0  # 0 = first try; each environment fault restarts the episode from scratch
    failed: str = ""  # why the episode was given up (set only after the last retry)
    invalid_turn: bool = False  # the step in flight answers an invalid-format turn
    cut: int = 0  # oldest rounds left out of the prompt (only grows: the episode only grows)
    cut_turns: int = 0  # turns played with a cut prompt

    @property
    def key(self) -> str:
        return episode_key(self.task.task_id, self.sample, self.branch)


def episode_key(task_id: str, sample: int, branch: str = "") -> str:
    return f"{task_id}#{sample}" + (f"@{branch}" if branch else "")


def record_key(traj: Trajectory) -> str:
    """The :func:`episode_key` of a rollout record."""
    return episode_key(traj.task_id, int(traj.metadata.get("sample", 0)), traj.metadata.get("branch", ""))


def seed_for(*parts: object) -> int:
    """A stable 31-bit sampling seed from any parts (run seed, episode key, step)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode()) & 0x7FFFFFFF


# RolloutConfig fields that change what an episode plays (concurrency, batching, retries and
# timeouts do not: results are the same whatever the batch).
FINGERPRINT_FIELDS = ("max_new_tokens", "seed", "invalid_format_reward", "context_overflow")


def rollout_fingerprint(
    checkpoint: str | Path,
    config: RolloutConfig,
    *,
    temperature: float,
    max_steps: int | None,
    extra: str = "",
) -> str:
    """What resume compares: the policy (its :func:`~eto_assets.data.files.folder_identity`), the
    rollout settings that change episodes, the temperature, the step cap and anything else the
    caller adds (the prompt book)."""
    parts = {
        "policy": folder_identity(checkpoint),
        **{name: getattr(config, name) for name in FINGERPRINT_FIELDS},
        "temperature": temperature,
        "max_steps": max_steps,
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ResumeState:
    """What a rollout file holds for a rerun."""

    finished: dict[str, Trajectory]
    discarded: int = 0  # records of another fingerprint
    retried: int = 0  # records of episodes that had failed: played again
    rewrite: bool = False  # the file must be rewritten (torn line, dropped records)

    def note(self) -> str:
        total = len(self.finished) + self.discarded + self.retried
        if not total:
            return ""
        text = f"kept {len(self.finished)} of {total} finished episodes"
        reasons = []
        if self.discarded:
            were = "was" if self.discarded == 1 else "were"
            reasons.append(
                f"{self.discarded} {were} produced by another policy or settings and {were} redone"
            )
        if self.retried:
            were = "was" if self.retried == 1 else "were"
            reasons.append(f"{self.retried} had failed in the environment and {were} retried")
        return text + ("; " + "; ".join(reasons) if reasons else "")


def scan_finished(path: Path, fingerprint: str | None = None) -> ResumeState:
    """Finished episodes already in ``path``. A torn last line (an interrupted append, with or
    without good lines before it) is dropped; a bad line elsewhere raises
    :class:`DataFormatError` naming the file and line. With a ``fingerprint``, records of another
    fingerprint (or none) are dropped and counted; episodes recorded as failed are played again."""
    state = ResumeState({})
    if not path.exists():
        return state
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        state.rewrite = True  # the next append must start on a new line
    lines = raw.decode("utf-8", errors="replace").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            traj = Trajectory.from_dict(json.loads(line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            if lineno == len(lines):
                state.rewrite = True
                continue
            raise DataFormatError(f"{path}:{lineno}: malformed rollout record ({exc!r})") from exc
        if fingerprint and traj.metadata.get("fingerprint") != fingerprint:
            state.discarded += 1
            state.rewrite = True
            continue
        if traj.metadata.get("failed"):
            state.retried += 1
            state.rewrite = True
            continue
        state.finished[record_key(traj)] = traj
    return state


def load_finished(path: Path, fingerprint: str | None = None) -> dict[str, Trajectory]:
    """Finished episodes already in ``path`` (see :func:`scan_finished`)."""
    return scan_finished(path, fingerprint).finished


def _rewrite_clean(path: Path, finished: dict[str, Trajectory]) -> None:
    """Keep only the kept records (no torn line, nothing stale) before appending again."""
    write_jsonl(path, finished.values())


def _discard(env: Environment) -> None:
    """Give up a failed environment without waiting on it: its ``discard`` when it has one (a
    ScienceWorld game kills a hung JVM, a remote one a hung worker), else ``close`` in the
    background (a hung call may hold its locks)."""
    discard = getattr(env, "discard", None)
    if discard is not None:
        with contextlib.suppress(Exception):
            discard()
        return

    def close() -> None:
        with contextlib.suppress(Exception):
            env.close()

    threading.Thread(target=close, daemon=True, name="discard-env").start()


class EnvironmentUnavailable(RuntimeError):
    """No environment could be made to replace a failed one."""


def run_rollouts(
    tasks: Sequence[TaskInstance],
    make_env: Callable[[], Environment],
    backend: InferenceBackend,
    book: PromptBook,
    out_path: Path,
    config: RolloutConfig,
    *,
    temperature: float = 0.0,
    samples: int = 1,
    source: str = "agent",
    desc: str = "rollouts",
    stats: RolloutStats | None = None,
    release_env: Callable[[Environment], None] | None = None,
    fingerprint: str = "",
    starts: Sequence[EpisodeStart] | None = None,
) -> list[Trajectory]:
    """Play every task ``samples`` times (greedy unless ``temperature`` > 0; each sample has its own
    seeds), or the episodes ``starts`` lists instead (prefixes given); returns all trajectories in
    task order (samples of a task together) or in the order of ``starts``, resumed ones included.

    Environments come from ``make_env`` and go back through ``release_env`` (default: closed), so a
    caller can keep expensive engines alive across stages. ``fingerprint`` (see
    :func:`rollout_fingerprint`) is stored in every record; a rerun keeps only the records with the
    same one. An environment call that raises (a dead JVM or worker) or runs past
    ``config.step_timeout_s`` discards that environment, makes a new one and replays the episode
    from scratch, at most ``config.max_episode_retries`` times; then the episode is recorded as
    failed (reward 0, ``metadata["failed"]`` = the reason) and the others go on."""
    release_env = release_env or (lambda env: env.close())
    stats = stats if stats is not None else RolloutStats()
    started = time.perf_counter()
    resume = scan_finished(out_path, fingerprint or None)
    finished = resume.finished
    if resume.rewrite:
        _rewrite_clean(out_path, finished)
    stats.discarded = resume.discarded
    stats.resume_note = resume.note()
    order = (
        list(starts) if starts is not None else [EpisodeStart(t, s) for t in tasks for s in range(samples)]
    )
    if len({start.key for start in order}) != len(order):
        raise ValueError(f"{desc}: two episodes to play share a task, sample and branch")
    pending = deque((start, 0) for start in order if start.key not in finished)
    # resumed: the asked-for episodes already in the file (it may hold others, e.g. other branches)
    rewards = [finished[start.key].reward for start in order if start.key in finished]
    stats.resumed = len(rewards)
    progress = tqdm(total=len(order), initial=len(rewards), desc=desc, unit="ep", mininterval=2.0)
    n_envs = min(config.concurrency, len(pending))
    pools = [ThreadPoolExecutor(max_workers=max(1, n_envs))]
    free_envs: list[Environment] = []
    stepping: dict[Future, _Episode] = {}  # environment calls in flight
    call_started: dict[Future, float] = {}
    ready: list[_Episode] = []  # episodes waiting for the model
    env_busy = _BusyClock()
    timeout = config.step_timeout_s

    def submit(ep: _Episode, fn: Callable, *args) -> None:
        future = pools[-1].submit(env_busy.timed, fn, *args)
        stepping[future] = ep
        call_started[future] = time.perf_counter()

    def admit() -> None:
        while pending and free_envs:
            start, attempt = pending.popleft()
            ep = _Episode(
                start.task, start.sample, free_envs.pop(), [], start.forced, start.branch, attempt=attempt
            )
            submit(ep, ep.env.reset, start.task)

    def act(ep: _Episode, answer: str) -> None:
        """Play ``answer`` (the policy's or a given turn) in the episode's environment."""
        ep.messages.append(Message("assistant", answer.strip()))
        ep.steps += 1
        action = parse_answer(answer).action
        ep.invalid_turn = is_invalid_format(action)
        submit(ep, ep.env.step, action)

    def retire(ep: _Episode) -> None:
        traj = _to_trajectory(ep, source, fingerprint)
        append_jsonl(out_path, traj)
        finished[ep.key] = traj
        rewards.append(traj.reward)
        stats.episodes += 1
        stats.cut_turns += ep.cut_turns
        stats.cut_episodes += ep.cut_turns > 0
        if not ep.failed:
            free_envs.append(ep.env)
        backend.end_session(ep.key)
        progress.update(1)
        cut = {"cut_episodes": stats.cut_episodes} if stats.cut_episodes else {}
        progress.set_postfix(mean_reward=f"{sum(rewards) / len(rewards):.3f}", **cut)

    def fault(ep: _Episode, reason: str, hung: bool) -> None:
        """The episode's environment failed: discard it, make a new one, replay or give up."""
        stats.env_faults += 1
        _discard(ep.env)
        if hung:  # the hung call keeps its thread; later calls get fresh threads
            pools[-1].shutdown(wait=False)
            pools.append(ThreadPoolExecutor(max_workers=max(1, n_envs)))
        try:
            free_envs.append(make_env())
        except Exception as exc:
            if not (free_envs or stepping or ready):
                raise EnvironmentUnavailable(
                    f"{desc}: no environment could be made after a fault ({reason}): {exc}"
                ) from exc
        if ep.attempt < config.max_episode_retries:
            backend.end_session(ep.key)
            pending.appendleft((EpisodeStart(ep.task, ep.sample, ep.forced, ep.branch), ep.attempt + 1))
            return
        ep.failed = reason
        ep.ended_by = "failed"
        stats.failed += 1
        retire(ep)

    def check_timeouts() -> None:
        if timeout is None:
            return
        now = time.perf_counter()
        for future in [f for f in stepping if now - call_started[f] >= timeout]:
            ep = stepping.pop(future)
            call_started.pop(future)
            what = "reset" if not ep.messages else f"step {ep.steps}"
            fault(ep, f"environment {what} of task {ep.task.task_id} timed out after {timeout:g} s", True)

    def quorum() -> int:
        """Generate once this many episodes wait (or nothing else will arrive), so the model works
        on one part of the episodes while the environments of the others step."""
        return max(1, math.ceil(config.batch_fraction * (len(stepping) + len(ready))))

    try:
        free_envs.extend(pools[0].map(lambda _: make_env(), range(n_envs)))
        admit()
        while stepping or ready or pending:
            while stepping and len(ready) < quorum():
                wait_for = None
                if timeout is not None:
                    oldest = min(call_started[f] for f in stepping)
                    wait_for = max(0.0, oldest + timeout - time.perf_counter())
                done, _ = wait(stepping, timeout=wait_for, return_when=FIRST_COMPLETED)
                for future in done:
                    ep = stepping.pop(future)
                    call_started.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:
                        what = "reset" if not ep.messages else f"step {ep.steps}"
                        fault(
                            ep,
                            f"environment {what} of task {ep.task.task_id} failed: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                            False,
                        )
                        continue
                    _record(ep, result, config.invalid_format_reward)
                    if ep.ended_by:
                        retire(ep)
                    elif ep.steps < len(ep.forced):  # a given turn: no model call
                        act(ep, ep.forced[ep.steps])
                    else:
                        ready.append(ep)
                check_timeouts()
                admit()
            if not ready:
                if pending and not stepping and not free_envs:
                    raise EnvironmentUnavailable(f"{desc}: no environment left for {len(pending)} episodes")
                admit()
                continue
            batch, ready = ready, []
            t0 = time.perf_counter()
            prompts = [_prompt(ep, book, backend, config) for ep in batch]
            for ep, prompt in zip(batch, prompts, strict=True):
                if prompt is None:  # even the task and the newest round overflow
                    ep.ended_by = "context_limit"
                    retire(ep)
            batch = [ep for ep, prompt in zip(batch, prompts, strict=True) if prompt is not None]
            answers: list[str | None] = []
            if batch:
                answers = backend.generate(
                    [prompt for prompt in prompts if prompt is not None],
                    GenerationConfig(config.max_new_tokens, temperature, config.seed),
                    seeds=[seed_for(config.seed, ep.key, ep.steps) for ep in batch],
                    sessions=[ep.key for ep in batch],
                )
            stats.model_seconds += time.perf_counter() - t0
            for ep, answer in zip(batch, answers, strict=True):
                if answer is None:  # the prompt did not fit the context
                    cuttable = ep.cut + 1 < episode_rounds(ep.messages)  # the newest round stays
                    if config.context_overflow == "cut_oldest_rounds" and cuttable:
                        ep.cut += 1  # ask again with one more round left out
                        ready.append(ep)
                        continue
                    ep.ended_by = "context_limit"
                    retire(ep)
                    continue
                ep.cut_turns += ep.cut > 0
                act(ep, answer)
            admit()
    finally:
        progress.close()
        for pool in pools[:-1]:
            pool.shutdown(wait=False)
        pools[-1].shutdown(wait=True)
        for env in free_envs + [ep.env for ep in (*stepping.values(), *ready)]:
            release_env(env)
        stats.env_seconds += env_busy.seconds
        stats.wall_seconds += time.perf_counter() - started
    return [finished[start.key] for start in order]


def _prompt(
    ep: _Episode, book: PromptBook, backend: InferenceBackend, config: RolloutConfig
) -> Conversation | None:
    """The conversation sent for ``ep``'s next turn: under ``cut_oldest_rounds``, with the fewest
    oldest rounds left out that make it fit the backend's context, or None when its task and newest
    round alone do not fit. A backend that cannot count (no ``prompt_tokens`` or ``max_context``,
    or None from them) gets the episode cut as far as earlier ``None`` answers made it; under
    ``end_episode`` the whole episode goes, and the backend's ``None`` ends it."""
    conversation = build_conversation(book, ep.task.task_type, ep.messages, ep.cut)
    count = getattr(backend, "prompt_tokens", None)
    limit = getattr(backend, "max_context", None)
    if config.context_overflow != "cut_oldest_rounds" or count is None or limit is None:
        return conversation
    most = max(0, episode_rounds(ep.messages) - 1)  # the newest round always stays
    while True:
        tokens = count(conversation)
        if tokens is None or fits(tokens, config.max_new_tokens, limit):
            return conversation
        if ep.cut >= most:
            return None
        ep.cut += 1
        conversation = build_conversation(book, ep.task.task_type, ep.messages, ep.cut)


def _record(ep: _Episode, result: str | StepResult, invalid_format_reward: str = "zero") -> None:
    """Apply an environment reply: the task message after a reset, else a step's result.

    The one place of the invalid-format reward rule, for every benchmark: under ``"zero"`` (ETO's
    ``step``, which sets the episode reward to 0 on such a turn) that step's reward is 0, so an
    episode ending there scores 0; a later valid step takes the environment's reward again. Under
    ``"keep"`` the environment's reward (the running maximum) stands."""
    if isinstance(result, str):
        ep.messages.append(Message("user", result))
        return
    if ep.invalid_turn and invalid_format_reward == "zero":
        result = replace(result, reward=0.0)
    ep.last = result
    ep.step_rewards.append(result.reward)
    ep.messages.append(Message("user", format_observation(result)))
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


def _to_trajectory(ep: _Episode, source: str, fingerprint: str = "") -> Trajectory:
    messages = list(ep.messages)
    if len(messages) > 1 and messages[-1].role == "user":
        messages.pop()  # a trajectory ends on the agent's last action
    return Trajectory(
        task_id=ep.task.task_id,
        task_type=ep.task.task_type,
        split=ep.task.split,
        messages=messages,
        reward=0.0 if ep.failed else ep.last.reward,
        success=False if ep.failed else ep.last.success,
        source=source,
        metadata={
            "sample": ep.sample,
            "steps": ep.steps,
            "ended_by": ep.ended_by,
            "step_rewards": ep.step_rewards,
            "cut_turns": ep.cut_turns,
            "cut_rounds": ep.cut,
            **({"forced_steps": len(ep.forced)} if ep.forced else {}),
            **({"branch": ep.branch} if ep.branch else {}),
            **({"fingerprint": fingerprint} if fingerprint else {}),
            **({"failed": ep.failed, "attempts": ep.attempt + 1} if ep.failed else {}),
        },
    )
