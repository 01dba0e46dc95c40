"""The iteration comparison a user reads after a run: one row per policy (the untrained base model
where the profile evaluates it, SFT, each ETO iteration)
with held-out reward and success per split, average steps, pair counts, training loss and wall
time, as CSV and Markdown; and three plots: reward by iteration, the paper's efficiency curve
(mean reward reached by step t) and the explored reward distribution with pair counts."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eto_assets.data.schemas import Trajectory, read_pairs, read_trajectories
from eto_assets.stages.evaluate import EVAL_SPLITS, EvalReport
from eto_assets.stages.layout import BASE_ITERATION, ArtifactLayout, iteration_label
from eto_assets.stages.result import Markdown, StageResult

TRAIN_RESULT = "train_result.json"  # written next to every checkpoint by the training launcher
TIMINGS = "stage_seconds.json"


@dataclass
class PolicyRow:
    iteration: int
    method: str
    metrics: dict[str, float] = field(default_factory=dict)


def record_stage_seconds(layout: ArtifactLayout, iteration: int, stage: str, seconds: float) -> None:
    """Remember a stage's wall time (the comparison's time column)."""
    path = layout.iteration_dir(iteration) / TIMINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[stage] = seconds
    path.write_text(json.dumps(timings, indent=1))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def method_name(k: int) -> str:
    return {BASE_ITERATION: "base", 0: "sft"}.get(k, f"eto-{k}")


def collect(layout: ArtifactLayout, iterations: int) -> list[PolicyRow]:
    """One row per evaluated policy: the untrained base model (when evaluated), SFT, each iteration."""
    rows = []
    for k in range(BASE_ITERATION, iterations + 1):
        if not layout.eval_report(k).is_file():
            continue
        row = PolicyRow(k, method_name(k))
        report = EvalReport.read(layout.eval_report(k))
        row.metrics.update(report.metrics())
        if k > 0 and layout.pairs_jsonl(k).is_file():
            row.metrics["pairs"] = len(read_pairs(layout.pairs_jsonl(k)))
        loss = _read_json(layout.checkpoint_dir(k) / TRAIN_RESULT).get("metrics", {}).get("train_loss")
        if loss is not None:
            row.metrics["train_loss"] = float(loss)
        timings = _read_json(layout.iteration_dir(k) / TIMINGS)
        if timings:
            row.metrics["wall_seconds"] = float(sum(timings.values()))
        rows.append(row)
    return rows


COLUMNS = (
    *(f"eval_{s}_{m}" for s in EVAL_SPLITS for m in ("avg_reward", "success_rate")),
    "eval_avg_steps",
    "pairs",
    "train_loss",
    "wall_seconds",
)


def write_tables(rows: Sequence[PolicyRow], csv_path: Path, md_path: Path) -> str:
    present = [c for c in COLUMNS if any(c in r.metrics for r in rows)]
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["iteration", "method", *present])
        for r in rows:
            cells = [r.metrics.get(c, "") for c in present]
            writer.writerow([iteration_label(r.iteration), r.method, *cells])
    head = "| iteration | method | " + " | ".join(c.removeprefix("eval_") for c in present) + " |"
    lines = [head, "|---|---|" + "---|" * len(present)]
    for r in rows:
        cells = " | ".join(f"{r.metrics[c]:.3f}" if c in r.metrics else "-" for c in present)
        lines.append(f"| {iteration_label(r.iteration)} | {r.method} | {cells} |")
    table = "\n".join(lines)
    md_path.write_text(table + "\n")
    return table


def reward_by_step(trajectories: Sequence[Trajectory], horizon: int) -> list[float]:
    """Mean over episodes of the reward reached by step t, t = 1..horizon (the last value holds)."""
    if not trajectories:
        return []
    curve = []
    for t in range(1, horizon + 1):
        total = 0.0
        for traj in trajectories:
            rewards = traj.metadata.get("step_rewards") or [traj.reward] * max(1, traj.num_steps)
            total += rewards[min(t, len(rewards)) - 1] if rewards else 0.0
        curve.append(total / len(trajectories))
    return curve


def _plots(layout: ArtifactLayout, rows: Sequence[PolicyRow], iterations: int, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for split in EVAL_SPLITS:
        points = [
            (r.iteration, r.metrics[f"eval_{split}_avg_reward"])
            for r in rows
            if f"eval_{split}_avg_reward" in r.metrics
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=split)
    ax.set(xlabel="policy", ylabel="average reward", title=f"{layout.task}: reward by iteration")
    ax.set_xticks([r.iteration for r in rows], [r.method for r in rows])
    ax.legend()
    paths.append(_save(fig, out / "reward_by_iteration.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    curves: dict[str, list[float]] = {}
    for r in rows:
        path = layout.eval_jsonl(r.iteration, "seen")
        if path.is_file():
            trajectories = read_trajectories(path)
            horizon = max((t.num_steps for t in trajectories), default=0)
            curves[r.method] = reward_by_step(trajectories, horizon)
    if layout.expert_jsonl.is_file():
        experts = read_trajectories(layout.expert_jsonl)
        curves["expert (train tasks)"] = reward_by_step(
            experts, max((t.num_steps for t in experts), default=0)
        )
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=label)
    ax.set(xlabel="step t", ylabel="mean reward reached by step t", title=f"{layout.task}: efficiency (seen)")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "efficiency_curve.png"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.5))
    counts = []
    for k in range(1, iterations + 1):
        if layout.rollouts_jsonl(k).is_file():
            rewards = [t.reward for t in read_trajectories(layout.rollouts_jsonl(k))]
            left.hist(rewards, bins=10, range=(0, 1), alpha=0.5, label=f"iteration {k}")
        if layout.pairs_jsonl(k).is_file():
            counts.append((k, len(read_pairs(layout.pairs_jsonl(k)))))
    left.set(xlabel="explored reward", ylabel="episodes", title="explored rewards")
    if counts:
        left.legend(fontsize=7)
        right.bar([f"it {k}" for k, _ in counts], [c for _, c in counts])
    right.set(ylabel="preference pairs", title="pairs per iteration")
    paths.append(_save(fig, out / "exploration_and_pairs.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def compare_iterations(layout: ArtifactLayout, iterations: int) -> StageResult:
    out = layout.root / "comparison"
    out.mkdir(parents=True, exist_ok=True)
    rows = collect(layout, iterations)
    table = write_tables(rows, out / "iterations.csv", out / "iterations.md")
    plots = _plots(layout, rows, iterations, out) if rows else []
    metadata: dict = {"table": Markdown(table)}
    metadata.update({p.stem: p for p in plots})
    return StageResult(
        artifacts=[(p, "comparison") for p in (out / "iterations.csv", out / "iterations.md", *plots)],
        metadata=metadata,
    )
