"""Stage 1, expert data: the benchmark's expert replayed through the real engine on every train
task; failed replays are dropped. Also writes the splits and the prompt book."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tqdm.auto import tqdm

from eto_assets.agent.prompt import make_prompt_book
from eto_assets.data.schemas import Trajectory, write_jsonl
from eto_assets.envs.base import SPLITS, Benchmark, Environment, TaskInstance
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.task import TaskRun


class NoExpertData(RuntimeError):
    """The expert solved none of the train tasks: nothing to train on."""


def play_experts(
    benchmark: Benchmark, tasks: Sequence[TaskInstance], env: Environment
) -> tuple[list[Trajectory], list[str]]:
    """Expert trajectories that reach success, and the ids of the tasks whose replay failed."""
    kept: list[Trajectory] = []
    dropped: list[str] = []
    for task in tqdm(tasks, desc=f"{benchmark.name} expert", unit="task", mininterval=2.0):
        traj = benchmark.expert_trajectory(env, task)
        if traj is None:
            dropped.append(task.task_id)
        else:
            kept.append(traj)
    return kept, dropped


def generate_expert_data(run: TaskRun, envs: EnvironmentPool) -> StageResult:
    layout = run.layout
    splits = {split: run.tasks(split) for split in SPLITS}
    layout.splits_json.parent.mkdir(parents=True, exist_ok=True)
    layout.splits_json.write_text(
        json.dumps({s: [t.task_id for t in ts] for s, ts in splits.items()}, indent=1)
    )
    env = envs.acquire(run.benchmark)
    try:
        experts, dropped = play_experts(run.benchmark, splits["train"], env)
    finally:
        envs.release(run.benchmark, env)
    if not experts:
        raise NoExpertData(f"{run.task}: the expert solved none of the {len(splits['train'])} train tasks")
    write_jsonl(layout.expert_jsonl, experts)
    book = make_prompt_book(run.benchmark.prompt_spec(), experts)
    book.write(layout.prompt_book)
    return StageResult(
        metrics={
            "expert_count": len(experts),
            "expert_dropped": len(dropped),
            "expert_avg_reward": sum(t.reward for t in experts) / len(experts),
        },
        params={"train_tasks": len(splits["train"])},
        datasets=[DatasetInput(layout.splits_json, f"{run.task}-splits", "splits")],
        artifacts=[(p, "expert") for p in (layout.expert_jsonl, layout.prompt_book, layout.splits_json)],
        metadata={
            "dropped_tasks": dropped[:50],
            "split_sizes": {s: len(ts) for s, ts in splits.items()},
            "example_task_types": sorted(book.examples),
            "path": layout.expert_jsonl,
        },
    )
