"""The protocol every benchmark implements, and the expert-replay helper they share.

A *benchmark* knows its task instances (deterministic splits), how to make an environment, the
prompt text the agent sees, and how to produce expert trajectories. An *environment* plays one
episode at a time: ``reset(task)`` returns the task message, ``step(action)`` returns a
:class:`StepResult` whose ``reward`` is the episode reward so far in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from eto_assets.data.schemas import Message, Trajectory

SPLITS = ("train", "seen", "unseen")


class BenchmarkNotAvailable(RuntimeError):
    """The benchmark is known but cannot run here (not implemented yet, or its data is missing)."""


@dataclass(frozen=True)
class TaskInstance:
    """One playable task: ``task_id`` is unique across splits of a benchmark."""

    task_id: str
    task_type: str
    split: str
    max_steps: int
    payload: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


# How an observation is introduced in the agent's user turn. ETO writes "Observation: <text>" for
# ScienceWorld and ALFWorld and for every engine message; WebShop's pages come as "Observation:\n<page>"
# (eval_agent/envs/webshop_env.py:62, its SFT data and in-context example alike).
OBSERVATION_PREFIX = "Observation: "
PAGE_OBSERVATION_PREFIX = "Observation:\n"


@dataclass(frozen=True)
class StepResult:
    observation: str
    reward: float  # episode reward so far, in [0, 1]
    done: bool
    success: bool
    prefix: str = OBSERVATION_PREFIX  # set by the environment: see PAGE_OBSERVATION_PREFIX


@runtime_checkable
class Environment(Protocol):
    def reset(self, task: TaskInstance) -> str:
        """Start ``task``; return the first user message (task description and first observation)."""

    def step(self, action: str) -> StepResult:
        """Apply one parsed action (or the invalid-format marker, see :func:`is_invalid_format`)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class PromptSpec:
    """What the agent is told before the task: how to act, and whether answers carry thoughts."""

    instruction: str
    with_thoughts: bool


class Benchmark(Protocol):
    name: str
    pure_python: bool  # True: rollouts may host its environments in worker processes

    @property
    def key(self) -> str:
        """The benchmark's configuration (its constructor arguments): environments are pooled per key."""

    def tasks(self, split: str) -> list[TaskInstance]:
        """Deterministic task instances of ``split`` (one of :data:`SPLITS`)."""

    def make_env(self) -> Environment: ...

    def prompt_spec(self) -> PromptSpec: ...

    def expert_trajectory(self, env: Environment, task: TaskInstance) -> Trajectory | None:
        """Play the expert on ``task`` through the real engine; None when it does not succeed."""


# The observation an agent gets when its answer holds no parsable action (the step still counts).
INVALID_FORMAT_OBSERVATION = (
    "Invalid format. Answer with one line 'Action: <action>' (optionally preceded by 'Thought: ...')."
)


def is_invalid_format(action: str | None) -> bool:
    """Whether a parsed action is the invalid-format marker (the answer had no ``Action:`` line).

    Every environment answers it with :data:`INVALID_FORMAT_OBSERVATION`; the rollout engine uses it
    to apply the profile's ``rollout.invalid_format_reward`` rule to that turn's reward."""
    return not (action or "").strip()


def format_agent_turn(action: str, thought: str | None) -> str:
    """The canonical agent message, as the expert data and the parser agree on it."""
    if thought:
        return f"Thought: {thought}\nAction: {action}"
    return f"Action: {action}"


def format_observation(result: StepResult) -> str:
    """The user turn that carries a step's observation, in the environment's own form."""
    return f"{result.prefix}{result.observation.strip()}"


def replay_actions(
    env: Environment,
    task: TaskInstance,
    steps: list[tuple[str | None, str]],
    *,
    source: str = "expert",
) -> Trajectory:
    """Play ``(thought, action)`` steps through ``env`` and record every real observation."""
    messages = [Message("user", env.reset(task))]
    result = StepResult("", 0.0, False, False)
    step_rewards: list[float] = []
    for thought, action in steps[: task.max_steps]:
        messages.append(Message("assistant", format_agent_turn(action, thought)))
        result = env.step(action)
        step_rewards.append(result.reward)
        messages.append(Message("user", format_observation(result)))
        if result.done:
            break
    if messages[-1].role == "user" and len(messages) > 1:
        messages.pop()  # a trajectory ends on the agent's last action
    return Trajectory(
        task_id=task.task_id,
        task_type=task.task_type,
        split=task.split,
        messages=messages,
        reward=result.reward,
        success=result.success,
        source=source,
        metadata={"step_rewards": step_rewards},
    )
