"""The ETO stages as plain functions (no Dagster): each reads its inputs from files, writes its
artifact under the task's :class:`ArtifactLayout`, and returns a small summary the caller can
record. Dagster assets call these; so can a notebook or a script."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from eto_assets.agent.backends import InferenceBackend
from eto_assets.agent.prompt import PromptBook, make_prompt_book
from eto_assets.agent.rollout import RolloutConfig, RolloutStats, run_rollouts
from eto_assets.data.pairs import build_preference_pairs
from eto_assets.data.schemas import Trajectory, write_jsonl
from eto_assets.envs.base import Benchmark, Environment, TaskInstance

EVAL_SPLITS = ("seen", "unseen")


@dataclass
class ExpertSummary:
    count: int
    dropped: int
    avg_reward: float
    dropped_tasks: list[str] = field(default_factory=list)


def generate_expert_data(
    benchmark: Benchmark,
    tasks: Sequence[TaskInstance],
    out_path: Path,
    env: Environment,
) -> tuple[list[Trajectory], ExpertSummary]:
    """Replay the expert on every train task through the real engine; keep the successful ones."""
    kept: list[Trajectory] = []
    dropped: list[str] = []
    for task in tqdm(tasks, desc=f"{benchmark.name} expert", unit="task", mininterval=2.0):
        traj = benchmark.expert_trajectory(env, task)
        if traj is None:
            dropped.append(task.task_id)
        else:
            kept.append(traj)
    write_jsonl(out_path, kept)
    avg = sum(t.reward for t in kept) / len(kept) if kept else 0.0
    return kept, ExpertSummary(len(kept), len(dropped), avg, dropped)


def write_prompt_book(benchmark: Benchmark, experts: Sequence[Trajectory], path: Path) -> PromptBook:
    book = make_prompt_book(benchmark.prompt_spec(), experts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(book.to_dict(), indent=1, ensure_ascii=False))
    return book


def read_prompt_book(path: Path) -> PromptBook:
    return PromptBook.from_dict(json.loads(path.read_text()))


def explore(
    tasks: Sequence[TaskInstance],
    make_env: Callable[[], Environment],
    backend: InferenceBackend,
    book: PromptBook,
    out_path: Path,
    config: RolloutConfig,
    desc: str,
    release_env: Callable[[Environment], None] | None = None,
) -> tuple[list[Trajectory], RolloutStats]:
    stats = RolloutStats()
    trajectories = run_rollouts(
        tasks, make_env, backend, book, out_path, config, desc=desc, stats=stats, release_env=release_env
    )
    return trajectories, stats


def make_pairs(experts: Sequence[Trajectory], explored: Sequence[Trajectory], out_path: Path):
    pairs, stats = build_preference_pairs(experts, explored)
    write_jsonl(out_path, pairs)
    return pairs, stats


@dataclass
class SplitMetrics:
    episodes: int
    avg_reward: float
    success_rate: float
    avg_steps: float
    per_type: dict[str, dict[str, float]]


def summarize(trajectories: Sequence[Trajectory]) -> SplitMetrics:
    if not trajectories:
        return SplitMetrics(0, 0.0, 0.0, 0.0, {})
    by_type: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajectories:
        by_type[t.task_type].append(t)

    def stats(ts: Sequence[Trajectory]) -> dict[str, float]:
        n = len(ts)
        return {
            "episodes": n,
            "avg_reward": sum(t.reward for t in ts) / n,
            "success_rate": sum(t.success for t in ts) / n,
        }

    n = len(trajectories)
    return SplitMetrics(
        episodes=n,
        avg_reward=sum(t.reward for t in trajectories) / n,
        success_rate=sum(t.success for t in trajectories) / n,
        avg_steps=sum(t.num_steps for t in trajectories) / n,
        per_type={k: stats(v) for k, v in sorted(by_type.items())},
    )


@dataclass
class EvalReport:
    task: str
    iteration: int
    checkpoint: str
    splits: dict[str, SplitMetrics]

    def metrics(self) -> dict[str, float]:
        """The flat metrics every eval run logs (``eval_<split>_avg_reward`` ...)."""
        out: dict[str, float] = {}
        steps, episodes = 0.0, 0
        for split in EVAL_SPLITS:
            m = self.splits.get(split)
            if m is None or m.episodes == 0:
                continue
            out[f"eval_{split}_avg_reward"] = m.avg_reward
            out[f"eval_{split}_success_rate"] = m.success_rate
            steps += m.avg_steps * m.episodes
            episodes += m.episodes
        out["eval_avg_steps"] = steps / episodes if episodes else 0.0
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> EvalReport:
        splits = {name: SplitMetrics(**m) for name, m in record["splits"].items()}
        return cls(record["task"], int(record["iteration"]), record["checkpoint"], splits)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def evaluate(
    task: str,
    iteration: int,
    checkpoint: Path,
    split_tasks: dict[str, Sequence[TaskInstance]],
    make_env: Callable[[], Environment],
    backend: InferenceBackend,
    book: PromptBook,
    out_paths: dict[str, Path],
    config: RolloutConfig,
    release_env: Callable[[Environment], None] | None = None,
) -> EvalReport:
    """Greedy episodes on every held-out split (splits with no tasks are skipped)."""
    greedy = RolloutConfig(config.concurrency, 0.0, config.max_new_tokens, 1, config.seed)
    splits: dict[str, SplitMetrics] = {}
    for split, tasks in split_tasks.items():
        if not tasks:
            continue
        trajs, _ = explore(
            tasks,
            make_env,
            backend,
            book,
            out_paths[split],
            greedy,
            f"eval {split} it{iteration}",
            release_env,
        )
        splits[split] = summarize(trajs)
    return EvalReport(task, iteration, str(checkpoint), splits)
