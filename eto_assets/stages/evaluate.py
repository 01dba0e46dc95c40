"""Stage 6, evaluation: the policy of iteration k plays the held-out splits greedily; average
reward and success rate per split and per task type."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eto_assets.agent.backends import InferenceBackend
from eto_assets.agent.prompt import PromptBook
from eto_assets.agent.rollout import run_rollouts
from eto_assets.data.schemas import Trajectory
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import Markdown, StageResult
from eto_assets.stages.task import TaskRun

EVAL_SPLITS = ("seen", "unseen")


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

    @classmethod
    def read(cls, path: Path) -> EvalReport:
        return cls.from_dict(json.loads(path.read_text()))

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path


def per_type_table(report: EvalReport) -> str:
    """Reward and success per task type and split, as a Markdown table."""
    lines = ["| split | task type | episodes | avg reward | success rate |", "|---|---|---|---|---|"]
    for split, metrics in report.splits.items():
        for task_type, row in metrics.per_type.items():
            lines.append(
                f"| {split} | {task_type} | {int(row['episodes'])} | {row['avg_reward']:.3f} | "
                f"{row['success_rate']:.3f} |"
            )
    return "\n".join(lines)


def evaluate(
    run: TaskRun, iteration: int, open_backend: Callable[[str], InferenceBackend], envs: EnvironmentPool
) -> StageResult:
    """Greedy episodes on every held-out split (splits with no tasks are skipped)."""
    layout = run.layout
    policy = PolicyRecord.read(layout, iteration)
    book = PromptBook.read(layout.prompt_book)
    make_env, release_env = envs.for_rollouts(run.benchmark)
    splits: dict[str, SplitMetrics] = {}
    backend = open_backend(policy.checkpoint)
    try:
        for split in EVAL_SPLITS:
            tasks = run.tasks(split)
            if not tasks:
                continue
            trajectories = run_rollouts(
                tasks,
                make_env,
                backend,
                book,
                layout.eval_jsonl(iteration, split),
                run.profile.rollout,
                temperature=0.0,
                desc=f"eval {split} it{iteration}",
                release_env=release_env,
            )
            splits[split] = summarize(trajectories)
    finally:
        backend.close()
    report = EvalReport(run.task, iteration, policy.checkpoint, splits)
    report.write(layout.eval_report(iteration))
    outputs = [layout.eval_report(iteration), *(layout.eval_jsonl(iteration, s) for s in splits)]
    return StageResult(
        metrics=report.metrics(),
        metrics_step=iteration,
        params={"checkpoint": policy.checkpoint},
        tags={"eto.model_version": policy.model_version},
        artifacts=[(p, "eval") for p in outputs],
        metadata={
            "model_version": f"eto-{run.task} v{policy.model_version}" if policy.model_version else "",
            "per_type": Markdown(per_type_table(report)),
            "path": layout.eval_report(iteration),
        },
    )
