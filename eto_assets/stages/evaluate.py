"""Stage 6, evaluation: the policy of iteration k plays the held-out splits greedily; average
reward and success rate per split and per task type, and over the seen tasks that are not also
train tasks (ETO's ScienceWorld dev list shares 54 of its 194 tasks with train) where some are."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eto_assets.agent.backends import InferenceBackend
from eto_assets.agent.prompt import PromptBook
from eto_assets.agent.rollout import RolloutStats, rollout_fingerprint, run_rollouts
from eto_assets.data.baselines import best_of_n
from eto_assets.data.files import atomic_write_json
from eto_assets.data.schemas import Trajectory
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.stages.layout import BASE_ITERATION
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import DatasetInput, Markdown, StageResult
from eto_assets.stages.task import TaskRun

EVAL_SPLITS = ("seen", "unseen")
SEEN_NOT_IN_TRAIN = "seen_not_in_train"  # the seen tasks that are not train tasks (not a split of its own)


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
    # the seen tasks that are also train tasks (ids), and the metrics over the other seen tasks
    # (only when some are: else they are the seen split's); None: not recorded (an older report)
    seen_in_train: list[str] | None = None
    seen_not_in_train: SplitMetrics | None = None

    @property
    def seen_tasks(self) -> int:
        seen = self.splits.get("seen")
        return seen.episodes if seen is not None else 0

    def metrics(self) -> dict[str, float]:
        """The flat metrics every eval run logs (``eval_<split>_avg_reward`` ...; also
        ``eval_seen_not_in_train_*`` where some seen tasks are train tasks and some are not)."""
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
            if split == "seen" and self.seen_not_in_train is not None and self.seen_not_in_train.episodes:
                out[f"eval_{SEEN_NOT_IN_TRAIN}_avg_reward"] = self.seen_not_in_train.avg_reward
                out[f"eval_{SEEN_NOT_IN_TRAIN}_success_rate"] = self.seen_not_in_train.success_rate
        out["eval_avg_steps"] = steps / episodes if episodes else 0.0
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> EvalReport:
        splits = {name: SplitMetrics(**m) for name, m in record["splits"].items()}
        subset = record.get(SEEN_NOT_IN_TRAIN)
        return cls(
            record["task"],
            int(record["iteration"]),
            record["checkpoint"],
            splits,
            record.get("seen_in_train"),
            SplitMetrics(**subset) if subset is not None else None,
        )

    @classmethod
    def read(cls, path: Path) -> EvalReport:
        return cls.from_dict(json.loads(path.read_text()))

    def write(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())


def train_overlap(seen: Sequence[Trajectory], train_ids: set[str]) -> tuple[list[str], SplitMetrics | None]:
    """The seen tasks that are also train tasks (ids, in seen order), and the metrics over the
    others (None when no seen task is a train task: they would be the seen split's own)."""
    in_train = [t.task_id for t in seen if t.task_id in train_ids]
    if not in_train:
        return [], None
    return in_train, summarize([t for t in seen if t.task_id not in train_ids])


def per_type_table(report: EvalReport) -> str:
    """Reward and success per task type and split, as a Markdown table."""
    lines = ["| split | task type | episodes | avg reward | success rate |", "|---|---|---|---|---|"]
    subset = {SEEN_NOT_IN_TRAIN: report.seen_not_in_train} if report.seen_not_in_train else {}
    for split, metrics in {**report.splits, **subset}.items():
        for task_type, row in metrics.per_type.items():
            lines.append(
                f"| {split} | {task_type} | {int(row['episodes'])} | {row['avg_reward']:.3f} | "
                f"{row['success_rate']:.3f} |"
            )
    return "\n".join(lines)


def evaluate(
    run: TaskRun,
    iteration: int,
    open_backend: Callable[[str], InferenceBackend],
    envs: EnvironmentPool,
    *,
    best_of: int = 1,
    temperature: float = 0.0,
    held_out: Sequence[str] = EVAL_SPLITS,
) -> StageResult:
    """Greedy episodes on every split of ``held_out`` (a settings sweep scores on seen only;
    splits with no tasks are skipped). Best-of-N
    (``best_of`` > 1, sampled at ``temperature``) plays each task that many times as one batch and
    scores it by its best episode; every episode is kept in the split's JSONL."""
    layout = run.layout
    policy = PolicyRecord.read(layout, iteration)
    book = PromptBook.read(layout.prompt_book)
    make_env, release_env = envs.for_rollouts(run.benchmark)
    splits: dict[str, SplitMetrics] = {}
    fingerprint = rollout_fingerprint(
        policy.checkpoint,
        run.profile.rollout,
        temperature=temperature,
        max_steps=run.scope.max_steps_cap,
        extra=layout.prompt_book.read_text() + (f"\nbest_of={best_of}" if best_of != 1 else ""),
    )
    resume = {split: RolloutStats() for split in EVAL_SPLITS}
    train_ids = {t.task_id for t in run.tasks("train")}
    in_train, subset = [], None
    backend = open_backend(policy.checkpoint)
    try:
        for split in held_out:
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
                temperature=temperature,
                samples=best_of,
                desc=f"eval {split} {layout.method} it{iteration}",
                release_env=release_env,
                stats=resume[split],
                fingerprint=fingerprint,
            )
            if best_of > 1:
                trajectories = best_of_n(trajectories)
            splits[split] = summarize(trajectories)
            if split == "seen":
                in_train, subset = train_overlap(trajectories, train_ids)
    finally:
        backend.close()
    report = EvalReport(run.task, iteration, policy.checkpoint, splits, in_train, subset)
    report.write(layout.eval_report(iteration))
    outputs = [layout.eval_report(iteration), *(layout.eval_jsonl(iteration, s) for s in splits)]
    task_lists = {}  # the held-out task ids, logged as the evaluation's dataset inputs
    for split in splits:
        path = layout.iteration_dir(iteration) / f"eval_{split}_tasks.json"
        atomic_write_json(path, [t.task_id for t in run.tasks(split)])
        task_lists[split] = path
    metrics = report.metrics()
    resume_metrics = {
        "eval_resumed": sum(s.resumed for s in resume.values()),
        "eval_discarded": sum(s.discarded for s in resume.values()),
        "eval_cut_turns": sum(s.cut_turns for s in resume.values()),
        "eval_cut_episodes": sum(s.cut_episodes for s in resume.values()),
        "eval_failed": sum(s.failed for s in resume.values()),
        "eval_env_restarts": sum(s.env_faults for s in resume.values()),
    }
    overlap = f"{len(in_train)} of the {report.seen_tasks} seen tasks are also train tasks" + (
        f" (metrics {SEEN_NOT_IN_TRAIN}_* are over the other {subset.episodes})" if subset else ""
    )
    if not report.seen_tasks:
        overlap = "no seen task was evaluated (the seen split is empty)"
    resume_note = "; ".join(f"{split}: {s.resume_note}" for split, s in resume.items() if s.resume_note)
    # the evaluated policy carries its own numbers in the registry
    policy_tags = {iteration: {f"eval/{k.removeprefix('eval_')}": f"{v:.4f}" for k, v in metrics.items()}}
    return StageResult(
        metrics={**metrics, **resume_metrics},
        metrics_step=iteration,
        params={
            "checkpoint": policy.checkpoint,
            **({"best_of": best_of, "temperature": temperature} if best_of > 1 else {}),
        },
        datasets=[DatasetInput(p, f"{run.task}-{split}", split) for split, p in task_lists.items()],
        policy_tags=policy_tags,
        artifacts=[(p, "eval") for p in outputs],
        metadata={
            "per_type": Markdown(per_type_table(report)),
            "resume": resume_note or "nothing to resume",
            "seen_in_train": overlap,
            "path": layout.eval_report(iteration),
        },
    )


def evaluate_base_model(
    run: TaskRun, base_model: str, open_backend: Callable[[str], InferenceBackend], envs: EnvironmentPool
) -> StageResult:
    """The untrained base model on the same held-out tasks, greedy, with the same prompts: the
    baseline SFT and ETO are measured against (``iteration`` :data:`BASE_ITERATION`). The tiny
    model is the one its own stage built from the expert data."""
    from eto_assets.stages.sft import built_base_model

    PolicyRecord(str(built_base_model(run, base_model))).write(run.layout, BASE_ITERATION)
    result = evaluate(run, BASE_ITERATION, open_backend, envs)
    result.params["base_model"] = base_model
    return result
