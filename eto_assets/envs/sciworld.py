"""ScienceWorld on its real Java engine (PyPI ``scienceworld``).

Splits follow ETO: train from the engine's train variations, "seen" test from dev variations,
"unseen" test from test variations; the inclined-plane and Mendelian-genetics families are left
out (their trajectories are too long); at most 10 variations per task type in each test split.
The wrapper's ``step`` asks the engine only for the observation, score and completion flag: the
stock ``ScienceWorldEnv.step`` also builds the valid-action list, look and inventory on every
step, which the agent never sees and which costs most of the step time.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from eto_assets.data.schemas import Trajectory
from eto_assets.envs.base import (
    INVALID_FORMAT_OBSERVATION,
    BenchmarkNotAvailable,
    PromptSpec,
    StepResult,
    TaskInstance,
    replay_actions,
)

SIMPLIFICATION = "easy"
EXCLUDED_PREFIXES = ("inclined-plane", "mendelian-genetics")

# Step limits per task type (the engine's short task names), as in ETO's evaluation.
MAX_STEPS: dict[str, int] = {
    "boil": 100,
    "change-the-state-of-matter-of": 80,
    "freeze": 80,
    "melt": 80,
    "measure-melting-point-known-substance": 120,
    "use-thermometer": 30,
    "power-component": 20,
    "power-component-renewable-vs-nonrenewable-energy": 30,
    "test-conductivity": 30,
    "test-conductivity-of-unknown-substances": 30,
    "find-animal": 15,
    "find-living-thing": 15,
    "find-non-living-thing": 15,
    "find-plant": 15,
    "grow-fruit": 60,
    "grow-plant": 30,
    "chemistry-mix": 60,
    "chemistry-mix-paint-secondary-color": 15,
    "chemistry-mix-paint-tertiary-color": 30,
    "lifespan-longest-lived": 10,
    "lifespan-longest-lived-then-shortest-lived": 12,
    "lifespan-shortest-lived": 10,
    "identify-life-stages-1": 30,
    "identify-life-stages-2": 30,
}

SPLIT_CAPS = {"train": 120, "seen": 10, "unseen": 10}
SPLIT_SEED = 20240305

INSTRUCTION = """You are a science agent in a text-based simulated world of rooms, objects, living \
things and devices. You get a science task and complete it by acting in the world, one action per turn.
After each action you receive an observation describing what happened.

Actions you can use (OBJ and LOC are object or place names exactly as they appear in observations):
- look around: describe the current room
- look at OBJ / look in OBJ: describe an object or a container's contents
- go to LOC: move to an adjacent room (doors must be open)
- open OBJ / close OBJ
- pick up OBJ / put down OBJ / move OBJ to OBJ: carry objects or place them in containers
- pour OBJ into OBJ / mix OBJ: combine substances
- activate OBJ / deactivate OBJ: switch devices on or off
- connect OBJ to OBJ / disconnect OBJ: build electrical circuits
- use OBJ on OBJ: use a tool (for example a thermometer) on something
- eat OBJ / read OBJ / dunk OBJ into OBJ / teleport to LOC / inventory / wait / wait1
- focus on OBJ: declare the object your task is about; focusing on the wrong object ends the task
- When a task asks you to choose, answer by focusing on or moving the chosen object as instructed.

Answer every turn with exactly one line of the form
Action: <one action>
"""


@dataclass(frozen=True)
class SciWorldSplits:
    """task type -> sorted variation indices, per split."""

    train: dict[str, list[int]]
    seen: dict[str, list[int]]
    unseen: dict[str, list[int]]

    def as_dict(self) -> dict[str, dict[str, list[int]]]:
        return {"train": self.train, "seen": self.seen, "unseen": self.unseen}


def _import_engine():
    try:
        from scienceworld import ScienceWorldEnv
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise BenchmarkNotAvailable("ScienceWorld needs the `scienceworld` package and Java 17") from exc
    return ScienceWorldEnv


def task_types() -> list[str]:
    """Task types ETO uses, in a stable order."""
    return sorted(MAX_STEPS)


def _sample(variations: list[int], cap: int, rng: random.Random) -> list[int]:
    if len(variations) <= cap:
        return sorted(variations)
    return sorted(rng.sample(sorted(variations), cap))


@functools.lru_cache(maxsize=1)
def compute_splits() -> SciWorldSplits:
    """Ask the engine for its train/dev/test variations and sample ETO-sized splits (deterministic)."""
    engine = _import_engine()("", envStepLimit=10_000)
    try:
        names = set(engine.get_task_names())
        splits: dict[str, dict[str, list[int]]] = {"train": {}, "seen": {}, "unseen": {}}
        for task_type in task_types():
            if task_type not in names:
                raise BenchmarkNotAvailable(f"ScienceWorld engine has no task {task_type!r}")
            engine.load(task_type, 0, SIMPLIFICATION, generateGoldPath=False)
            per_split = {
                "train": list(engine.get_variations_train()),
                "seen": list(engine.get_variations_dev()),
                "unseen": list(engine.get_variations_test()),
            }
            for split, variations in per_split.items():
                rng = random.Random(f"{SPLIT_SEED}-{task_type}-{split}")
                splits[split][task_type] = _sample(variations, SPLIT_CAPS[split], rng)
    finally:
        engine.close()
    return SciWorldSplits(**splits)


class SciWorldEnv:
    """One ScienceWorld engine (one JVM); plays one episode at a time."""

    def __init__(self) -> None:
        self._engine = _import_engine()("", envStepLimit=10_000)
        self._best_score = 0.0
        self._done = True

    def _load(self, task: TaskInstance, gold: bool) -> None:
        self._engine.load(
            task.task_type, int(task.payload["variation"]), SIMPLIFICATION, generateGoldPath=gold
        )
        self._best_score = 0.0
        self._done = False

    def reset(self, task: TaskInstance) -> str:
        self._load(task, gold=False)
        return self._engine.get_task_description().strip()

    def step(self, action: str) -> StepResult:
        if self._done:
            raise RuntimeError("step() after the episode ended; call reset() first")
        if action is None or action == "":
            return StepResult(INVALID_FORMAT_OBSERVATION, self._best_score, False, False)
        server = self._engine.server
        observation = server.step(action)
        score = float(server.getScore())  # 0..1; negative when the task failed
        completed = bool(server.getCompleted())
        self._best_score = max(self._best_score, score)
        success = completed and score >= 1.0
        self._done = completed or score < 0
        return StepResult(observation, min(self._best_score, 1.0), self._done, success)

    def gold_actions(self, task: TaskInstance) -> list[str]:
        self._load(task, gold=True)
        return list(self._engine.get_gold_action_sequence())

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
            engine.close = lambda: None  # the engine's __del__ closes again and hits a dead pipe


class SciWorldBenchmark:
    name = "sciworld"

    def __init__(self, task_types: list[str] | None = None, max_steps_cap: int | None = None) -> None:
        unknown = sorted(set(task_types or []) - set(MAX_STEPS))
        if unknown:
            raise ValueError(f"unknown ScienceWorld task types {unknown}; known: {sorted(MAX_STEPS)}")
        self._task_types = list(task_types) if task_types else sorted(MAX_STEPS)
        self._max_steps_cap = max_steps_cap

    def tasks(self, split: str) -> list[TaskInstance]:
        by_type = compute_splits().as_dict()[split]
        out = []
        for task_type in self._task_types:
            limit = MAX_STEPS[task_type]
            if self._max_steps_cap:
                limit = min(limit, self._max_steps_cap)
            for variation in by_type[task_type]:
                out.append(
                    TaskInstance(
                        task_id=f"{task_type}/{variation}",
                        task_type=task_type,
                        split=split,
                        max_steps=limit,
                        payload={"variation": variation},
                    )
                )
        return out

    def make_env(self) -> SciWorldEnv:
        return SciWorldEnv()

    def prompt_spec(self) -> PromptSpec:
        return PromptSpec(instruction=INSTRUCTION, with_thoughts=False)

    def expert_trajectory(self, env: SciWorldEnv, task: TaskInstance) -> Trajectory | None:
        gold = env.gold_actions(task)
        # The gold path can be longer than the step limit; the expert gets the full gold path.
        full = TaskInstance(
            task.task_id, task.task_type, task.split, max(task.max_steps, len(gold)), task.payload
        )
        trajectory = replay_actions(env, full, [(None, a) for a in gold])
        return trajectory if trajectory.success else None
