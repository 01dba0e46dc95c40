"""Stage 7, the iteration report a user reads after a run: one row per policy (the untrained base
model where the profile evaluates it, SFT, each ETO iteration) with held-out reward and success per
split, average steps, pair counts, training loss and wall time, as Markdown and CSV; the best
iteration, chosen on the seen split (the unseen split is never used for selection) and named as the
``champion``; and three plots: reward by iteration, the paper's efficiency curve (mean reward
reached by step t) and the explored reward distribution with pair counts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eto_assets.data.files import atomic_write_text
from eto_assets.data.schemas import Trajectory, read_pairs, read_trajectories
from eto_assets.stages.evaluate import EVAL_SPLITS, EvalReport
from eto_assets.stages.expert import COMPARABLE_TAG, comparability_path, comparability_tag
from eto_assets.stages.layout import BASE_ITERATION, ArtifactLayout, iteration_label
from eto_assets.stages.result import Markdown, StageResult

TRAIN_RESULT = "train_result.json"  # written next to every checkpoint by the training launcher
CHAMPION = "champion"
SELECTION_RULE = (
    "best iteration: the highest seen-split (dev) average reward, the earlier iteration on ties; "
    "the unseen split (test) is never used to choose"
)
COLUMNS = (
    *(f"eval_{s}_{m}" for s in EVAL_SPLITS for m in ("avg_reward", "success_rate")),
    "eval_avg_steps",
    "pairs",
    "train_loss",
    "wall_seconds",
)


@dataclass
class PolicyRow:
    """One evaluated policy: ``iteration`` -1 is the untrained base model, 0 SFT, k ETO iteration k."""

    iteration: int
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return {BASE_ITERATION: "base", 0: "sft"}.get(self.iteration, f"eto-{self.iteration}")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def collect_rows(
    layout: ArtifactLayout, iterations: int, wall_seconds: Mapping[int, float] | None = None
) -> list[PolicyRow]:
    """One row per evaluated policy, in iteration order; ``wall_seconds`` (iteration -> seconds of
    its stages) comes from whoever timed the stages."""
    rows = []
    for k in range(BASE_ITERATION, iterations + 1):
        if not layout.eval_report(k).is_file():
            continue
        row = PolicyRow(k, EvalReport.read(layout.eval_report(k)).metrics())
        if k > 0 and layout.pairs_jsonl(k).is_file():
            row.metrics["pairs"] = len(read_pairs(layout.pairs_jsonl(k)))
        loss = _read_json(layout.checkpoint_dir(k) / TRAIN_RESULT).get("metrics", {}).get("train_loss")
        if loss is not None:
            row.metrics["train_loss"] = float(loss)
        if wall_seconds and k in wall_seconds:
            row.metrics["wall_seconds"] = float(wall_seconds[k])
        rows.append(row)
    return rows


def best_row(rows: Sequence[PolicyRow]) -> PolicyRow | None:
    """Highest seen (dev) reward, the earlier iteration on ties; unseen is never used for selection.
    The untrained base model is a baseline, never a candidate."""
    candidates = [r for r in rows if r.iteration >= 0]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (r.metrics.get("eval_seen_avg_reward", 0.0), -r.iteration))


def _present(rows: Sequence[PolicyRow]) -> list[str]:
    return [c for c in COLUMNS if any(c in r.metrics for r in rows)]


def markdown_table(rows: Sequence[PolicyRow], best: PolicyRow | None) -> str:
    present = _present(rows)
    lines = [
        "| iteration | method | " + " | ".join(c.removeprefix("eval_") for c in present) + " |",
        "|---|---|" + "---|" * len(present),
    ]
    for r in rows:
        mark = " (best)" if best is not None and r.iteration == best.iteration else ""
        cells = " | ".join(f"{r.metrics[c]:.3f}" if c in r.metrics else "-" for c in present)
        lines.append(f"| {iteration_label(r.iteration)}{mark} | {r.method} | {cells} |")
    return "\n".join(lines)


def csv_table(rows: Sequence[PolicyRow]) -> str:
    present = _present(rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["iteration", "method", *present])
    for r in rows:
        writer.writerow([iteration_label(r.iteration), r.method, *(r.metrics.get(c, "") for c in present)])
    return out.getvalue()


def selection_note(best: PolicyRow | None) -> str:
    """The rule, and the test numbers of the chosen iteration."""
    if best is None:
        return SELECTION_RULE + "."
    test = ", ".join(
        f"{c.removeprefix('eval_unseen_')} {best.metrics[c]:.3f}"
        for c in ("eval_unseen_avg_reward", "eval_unseen_success_rate")
        if c in best.metrics
    )
    chosen = f"Chosen: iteration {best.iteration}" + (f"; its test (unseen) numbers: {test}" if test else "")
    return f"{SELECTION_RULE}. {chosen}."


def champion_reason(best: PolicyRow) -> str:
    seen = best.metrics.get("eval_seen_avg_reward", 0.0)
    return (
        f"iteration {best.iteration} has the highest seen-split average reward ({seen:.3f}); {SELECTION_RULE}"
    )


def comparability_reasons(layout: ArtifactLayout) -> list[str] | None:
    """Why the run is not comparable with the paper, as the expert stage recorded it (None: unknown)."""
    path = comparability_path(layout)
    if not path.is_file():
        return None
    return [str(r) for r in json.loads(path.read_text()).get("reasons", [])]


def report_table(layout: ArtifactLayout, iterations: int) -> tuple[str, PolicyRow | None]:
    """The table and the best row from the artifacts as they are (writes nothing): what the CLI
    prints after a run."""
    rows = collect_rows(layout, iterations)
    best = best_row(rows)
    return markdown_table(rows, best), best


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

    def save(fig, path: Path) -> Path:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

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
    paths.append(save(fig, out / "reward_by_iteration.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    curves: dict[str, list[float]] = {}
    for r in rows:
        path = layout.eval_jsonl(r.iteration, "seen")
        if path.is_file():
            trajectories = read_trajectories(path)
            curves[r.method] = reward_by_step(
                trajectories, max((t.num_steps for t in trajectories), default=0)
            )
    if layout.expert_jsonl.is_file():
        experts = read_trajectories(layout.expert_jsonl)
        curves["expert (train tasks)"] = reward_by_step(
            experts, max((t.num_steps for t in experts), default=0)
        )
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, label=label)
    ax.set(xlabel="step t", ylabel="mean reward reached by step t", title=f"{layout.task}: efficiency (seen)")
    ax.legend(fontsize=7)
    paths.append(save(fig, out / "efficiency_curve.png"))

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
    paths.append(save(fig, out / "exploration_and_pairs.png"))
    return paths


def report_iterations(
    layout: ArtifactLayout, iterations: int, wall_seconds: Mapping[int, float] | None = None
) -> StageResult:
    """Write the report (``summary.md``, ``iterations.csv``, plots) and name the champion."""
    out = layout.report_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(layout, iterations, wall_seconds)
    best = best_row(rows)
    table = markdown_table(rows, best)
    note = selection_note(best)
    summary = f"# ETO on {layout.task}\n\n{table}\n\n{note}\n"
    result = StageResult(metadata={"table": Markdown(table), "selection": note})
    reasons = comparability_reasons(layout)
    if reasons is not None:
        tag = comparability_tag(reasons)
        result.tags[COMPARABLE_TAG] = tag
        result.metadata["comparable_with_paper"] = tag
        summary += f"\nComparable with the paper's table: {tag}\n"
    atomic_write_text(layout.summary_md, summary)
    atomic_write_text(layout.report_csv, csv_table(rows))
    plots = _plots(layout, rows, iterations, out) if rows else []
    result.artifacts = [(p, "report") for p in (layout.summary_md, layout.report_csv, *plots)]
    result.metadata.update({p.stem: p for p in plots})
    result.metadata["path"] = layout.summary_md
    if best is not None:
        result.metadata["best_iteration"] = best.iteration
        reason = champion_reason(best)
        result.aliases[CHAMPION] = best.iteration
        result.policy_tags[best.iteration] = {"eto.champion_reason": reason}
        result.tags["eto.champion"] = f"iteration {best.iteration}: {reason}"
    return result
