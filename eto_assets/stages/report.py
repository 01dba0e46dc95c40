"""Stage 7, the iteration report a user reads after a run: one row per policy (the untrained base
model where the profile evaluates it, SFT, each ETO iteration) with held-out reward and success per
split, average steps, pair counts, training loss and wall time, as Markdown and CSV; the champion
(a registered-model alias) by the profile's ``selection`` rule, stated in the summary, the stage
metadata and the champion's reason tag: ``seen`` (the best seen-split reward), ``seen_not_in_train``
(the same on the seen tasks that are not train tasks) or ``final`` (ETO's protocol, no selection:
the last iteration; every iteration's test numbers are reported); the unseen split (test) is never
used to choose. Where seen tasks are also train tasks (ETO's ScienceWorld dev list: 54 of 194), the
report says how many, from the evaluated tasks. And three plots: reward by iteration, the paper's
efficiency curve (mean reward reached by step t) and the explored reward distribution with pair
counts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eto_assets.data.files import atomic_write_text
from eto_assets.data.schemas import Trajectory, read_pairs, read_trajectories
from eto_assets.stages.evaluate import EVAL_SPLITS, SEEN_NOT_IN_TRAIN, EvalReport, train_overlap
from eto_assets.stages.expert import COMPARABLE_TAG, comparability_path, comparability_tag
from eto_assets.stages.layout import BASE_ITERATION, ETO, ArtifactLayout, iteration_label
from eto_assets.stages.methods import ITERATED_METHODS
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import Markdown, StageResult

TRAIN_RESULT = "train_result.json"  # written next to every checkpoint by the training launcher
CHAMPION = "champion"
# The champion's numbers on the pipeline's parent run (its overview): reward and success per split.
HEADLINE = tuple(f"{split}_{m}" for split in ("seen", "unseen") for m in ("avg_reward", "success_rate"))
SELECTION_TAG = "eto.selection"
_NEVER_TEST = "the unseen split (test) is never used to choose"
SELECTION_RULES = {  # the profile's `selection` -> the rule, as the report states it
    "seen": "best iteration: the highest seen-split (dev) average reward, the earlier iteration on ties; "
    + _NEVER_TEST,
    SEEN_NOT_IN_TRAIN: "best iteration: the highest average reward on the seen-split (dev) tasks that are "
    "not also train tasks, the earlier iteration on ties; " + _NEVER_TEST,
    "final": "no model selection, as in ETO (run_eto.sh evaluates --split test after SFT and after every "
    "iteration): every policy's test (unseen) numbers are reported and the champion is the last "
    "iteration evaluated, whatever its numbers",
}
COLUMNS = (
    *(
        f"eval_{s}_{m}"
        for s in (*EVAL_SPLITS[:1], SEEN_NOT_IN_TRAIN, *EVAL_SPLITS[1:])
        for m in ("avg_reward", "success_rate")
    ),
    "eval_avg_steps",
    "pairs",
    "train_loss",
    "wall_seconds",
)


@dataclass
class PolicyRow:
    """One evaluated policy: for ETO (``source`` ``eto``) ``iteration`` -1 is the untrained base
    model, 0 SFT, k ETO iteration k; for another method, its iteration (Best-of-N's 0 samples SFT)."""

    iteration: int
    metrics: dict[str, float] = field(default_factory=dict)
    seen_tasks: int = 0  # seen tasks evaluated
    seen_in_train: int | None = None  # how many of them are also train tasks (None: not recorded)
    source: str = ETO  # the method whose folder holds the evaluation

    @property
    def method(self) -> str:
        """The row's name in the tables (the ``eto.method`` of its runs, with its iteration)."""
        if self.source != ETO:
            return f"{self.source}-{self.iteration}" if self.source in ITERATED_METHODS else self.source
        return {BASE_ITERATION: "base", 0: "sft"}.get(self.iteration, f"eto-{self.iteration}")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _with_train_overlap(layout: ArtifactLayout, report: EvalReport) -> EvalReport:
    """An evaluation from before the overlap was recorded gets it from the files: the train task
    ids of the run's splits and the seen episodes played."""
    seen = layout.eval_jsonl(report.iteration, "seen")
    if report.seen_in_train is not None or not layout.splits_json.is_file() or not seen.is_file():
        return report
    train_ids = set(json.loads(layout.splits_json.read_text()).get("train", []))
    report.seen_in_train, report.seen_not_in_train = train_overlap(read_trajectories(seen), train_ids)
    return report


def _train_loss(layout: ArtifactLayout, k: int) -> float | None:
    """The training loss of iteration ``k``'s policy, from the ``train_result.json`` in the
    checkpoint its ``policy.json`` names (None: not trained here, e.g. carried over or the base)."""
    if k < 0 or not layout.policy_json(k).is_file():
        return None
    policy = PolicyRecord.read(layout, k)
    if policy.carried_over_from is not None:
        return None
    return _read_json(Path(policy.checkpoint) / TRAIN_RESULT).get("metrics", {}).get("train_loss")


def _iterations_of(method: str, iterations: int) -> range:
    if method == ETO:
        return range(BASE_ITERATION, iterations + 1)
    return range(0, iterations + 1) if method in ITERATED_METHODS else range(0, 2)


def collect_rows(
    layout: ArtifactLayout,
    iterations: int,
    wall_seconds: Mapping[tuple[str, int], float] | None = None,
    methods: Sequence[str] = (ETO,),
) -> list[PolicyRow]:
    """One row per evaluated policy: SFT (and the base model) first, then each of ``methods`` in
    order, each in iteration order (ETO's iterations only when ETO is among them); ``wall_seconds``
    ((method, iteration) -> seconds of its stages) comes from whoever timed the stages."""
    rows = []
    for method in (ETO, *(m for m in methods if m != ETO)):
        folder = layout.for_method(method)
        for k in _iterations_of(method, iterations):
            if not folder.eval_report(k).is_file() or (method == ETO and k > 0 and ETO not in methods):
                continue
            report = _with_train_overlap(folder, EvalReport.read(folder.eval_report(k)))
            in_train = None if report.seen_in_train is None else len(report.seen_in_train)
            row = PolicyRow(k, report.metrics(), report.seen_tasks, in_train, method)
            if k > 0 and folder.pairs_jsonl(k).is_file():
                row.metrics["pairs"] = len(read_pairs(folder.pairs_jsonl(k)))
            loss = _train_loss(folder, k) if method == ETO or k > 0 else None
            if loss is not None:
                row.metrics["train_loss"] = float(loss)
            if wall_seconds and (method, k) in wall_seconds:
                row.metrics["wall_seconds"] = float(wall_seconds[method, k])
            rows.append(row)
    return rows


def check_selection(selection: str) -> str:
    if selection not in SELECTION_RULES:
        raise ValueError(f"unknown selection {selection!r}; known: {sorted(SELECTION_RULES)}")
    return selection


def selection_metric(row: PolicyRow, selection: str) -> str:
    """The metric ``selection`` chooses on for ``row``: the seen split's reward, or for
    ``seen_not_in_train`` the reward over the seen tasks not in train; that is the seen split's
    own where no seen task is a train task (ALFWorld, WebShop)."""
    if selection == SEEN_NOT_IN_TRAIN and row.seen_in_train:
        return f"eval_{SEEN_NOT_IN_TRAIN}_avg_reward"
    return "eval_seen_avg_reward"


def best_row(rows: Sequence[PolicyRow], selection: str = "seen") -> PolicyRow | None:
    """The champion under ``selection`` (see :data:`SELECTION_RULES`): ``final`` the last iteration;
    otherwise the highest reward on the rule's metric, the earlier iteration on ties (a policy
    without that number counts 0). Unseen is never used for selection. The untrained base model is
    a baseline, never a candidate."""
    check_selection(selection)
    candidates = [r for r in rows if r.iteration >= 0 and r.source == ETO]
    if not candidates:
        return None
    if selection == "final":
        return max(candidates, key=lambda r: r.iteration)
    return max(candidates, key=lambda r: (r.metrics.get(selection_metric(r, selection), 0.0), -r.iteration))


def seen_overlap(rows: Sequence[PolicyRow]) -> tuple[int, int] | None:
    """(seen tasks that are also train tasks, seen tasks), from the latest evaluation that recorded
    it; None when none did."""
    recorded = [r for r in rows if r.seen_in_train is not None]
    return (recorded[-1].seen_in_train, recorded[-1].seen_tasks) if recorded else None


def overlap_note(rows: Sequence[PolicyRow], selection: str) -> str:
    """What the report says about seen tasks that are also train tasks (empty where none are)."""
    overlap = seen_overlap(rows)
    if overlap is None or not overlap[0]:
        if selection == SEEN_NOT_IN_TRAIN and overlap is not None and overlap[1]:
            return "No seen task is a train task here, so this is the seen-split rule."
        return ""
    both, seen = overlap
    counts = f"{both} of the {seen} seen (dev) tasks are also train tasks"
    rest = f"the {seen - both} that are not (column seen_not_in_train)"
    if selection == "seen":
        return (
            f"{counts}, so the seen numbers, and this choice, partly measure tasks the policies were "
            f"trained on; `selection: seen_not_in_train` chooses on {rest}."
        )
    if selection == SEEN_NOT_IN_TRAIN:
        if seen == both:
            return f"{counts}: no seen task is left to choose on, so the earliest iteration stands."
        return f"{counts}; the choice uses {rest}."
    return f"{counts}: the seen numbers partly measure tasks the policies were trained on; see {rest}."


def _present(rows: Sequence[PolicyRow]) -> list[str]:
    return [c for c in COLUMNS if any(c in r.metrics for r in rows)]


def markdown_table(rows: Sequence[PolicyRow], best: PolicyRow | None, selection: str = "seen") -> str:
    present = _present(rows)
    label = " (champion)" if selection == "final" else " (best)"
    lines = [
        "| iteration | method | " + " | ".join(c.removeprefix("eval_") for c in present) + " |",
        "|---|---|" + "---|" * len(present),
    ]
    for r in rows:
        mark = label if r is best else ""
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


def _empty_seen_note(rows: Sequence[PolicyRow]) -> str:
    if rows and not any("eval_seen_avg_reward" in r.metrics for r in rows):
        return "No seen (dev) task was evaluated (the seen split is empty), so the table has no seen column."
    return ""


def selection_note(best: PolicyRow | None, selection: str = "seen", rows: Sequence[PolicyRow] = ()) -> str:
    """The rule, the test numbers of the chosen iteration, and what the seen split holds."""
    rule = SELECTION_RULES[check_selection(selection)]
    notes = " ".join(n for n in (overlap_note(rows, selection), _empty_seen_note(rows)) if n)
    if best is None:
        return f"Selection ({selection}): {rule}." + (f" {notes}" if notes else "")
    test = ", ".join(
        f"{c.removeprefix('eval_unseen_')} {best.metrics[c]:.3f}"
        for c in ("eval_unseen_avg_reward", "eval_unseen_success_rate")
        if c in best.metrics
    )
    if selection == "final":
        chosen = f"Champion: iteration {best.iteration}, the last one evaluated, not chosen on any split"
    else:
        chosen = f"Chosen: iteration {best.iteration}"
    chosen += f"; its test (unseen) numbers: {test}" if test else ""
    return f"Selection ({selection}): {rule}. {chosen}." + (f" {notes}" if notes else "")


def champion_reason(best: PolicyRow, selection: str = "seen", rows: Sequence[PolicyRow] = ()) -> str:
    """Why ``best`` is the champion: the rule's own words, with the number it was chosen on."""
    rule = SELECTION_RULES[check_selection(selection)]
    note = overlap_note(rows, selection) if selection != "final" else ""  # final reads no seen split
    if selection == "final":
        why = f"iteration {best.iteration} is the last iteration evaluated (selection: final)"
    elif selection_metric(best, selection) == f"eval_{SEEN_NOT_IN_TRAIN}_avg_reward":
        value = best.metrics.get(f"eval_{SEEN_NOT_IN_TRAIN}_avg_reward", 0.0)
        why = (
            f"iteration {best.iteration} has the highest average reward on the seen tasks that are not "
            f"train tasks ({value:.3f})"
        )
    else:
        seen = best.metrics.get("eval_seen_avg_reward", 0.0)
        why = f"iteration {best.iteration} has the highest seen-split average reward ({seen:.3f})"
    return f"{why}; {rule}" + (f". {note}" if note else "")


def comparability_reasons(layout: ArtifactLayout) -> list[str] | None:
    """Why the run is not comparable with the paper, as the expert stage recorded it (None: unknown)."""
    path = comparability_path(layout)
    if not path.is_file():
        return None
    return [str(r) for r in json.loads(path.read_text()).get("reasons", [])]


def report_table(
    layout: ArtifactLayout, iterations: int, selection: str = "seen", methods: Sequence[str] = (ETO,)
) -> tuple[str, PolicyRow | None]:
    """The table and the champion row from the artifacts as they are (writes nothing): what the
    CLI prints after a run."""
    rows = collect_rows(layout, iterations, methods=methods)
    best = best_row(rows, selection)
    return markdown_table(rows, best, selection), best


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
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(rows)), 3.5))
    for split in EVAL_SPLITS:
        points = [
            (i, r.metrics[f"eval_{split}_avg_reward"])
            for i, r in enumerate(rows)
            if f"eval_{split}_avg_reward" in r.metrics
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=split)
    ax.set(xlabel="policy", ylabel="average reward", title=f"{layout.task}: reward by policy")
    ax.set_xticks(range(len(rows)), [r.method for r in rows], rotation=30, fontsize=7)
    ax.legend()
    paths.append(save(fig, out / "reward_by_iteration.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    curves: dict[str, list[float]] = {}
    # the seen split's episodes; the unseen split's where seen is empty (WebShop without a dev slice)
    split = (
        "seen"
        if any(_folder(layout, r).eval_jsonl(r.iteration, "seen").is_file() for r in rows)
        else "unseen"
    )
    for r in rows:
        path = _folder(layout, r).eval_jsonl(r.iteration, split)  # Best-of-N: all of its samples
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
    title = f"{layout.task}: efficiency ({split})"
    ax.set(xlabel="step t", ylabel="mean reward reached by step t", title=title)
    if curves:
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


def _folder(layout: ArtifactLayout, row: PolicyRow) -> ArtifactLayout:
    return layout.for_method(row.source)


def report_iterations(
    layout: ArtifactLayout,
    iterations: int,
    wall_seconds: Mapping[tuple[str, int], float] | None = None,
    selection: str = "seen",
    methods: Sequence[str] = (ETO,),
) -> StageResult:
    """Write the report (``summary.md``, ``iterations.csv``, plots) and name the champion by the
    profile's ``selection`` rule (:data:`SELECTION_RULES`)."""
    check_selection(selection)
    out = layout.report_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(layout, iterations, wall_seconds, methods)
    best = best_row(rows, selection)
    table = markdown_table(rows, best, selection)
    note = selection_note(best, selection, rows)
    summary = f"# ETO on {layout.task}\n\n{table}\n\n{note}\n"
    result = StageResult(
        metadata={"table": Markdown(table), "selection": note, "selection_rule": selection},
        tags={SELECTION_TAG: selection},
    )
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
        reason = champion_reason(best, selection, rows)
        result.aliases[CHAMPION] = best.iteration
        result.policy_tags[best.iteration] = {"eto.champion_reason": reason}
        result.tags["eto.champion"] = f"iteration {best.iteration}: {reason}"
        numbers = best.metrics
        result.summary = {
            f"summary/champion_{k}": numbers[f"eval_{k}"] for k in HEADLINE if f"eval_{k}" in numbers
        }
    return result
