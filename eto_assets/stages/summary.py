"""Stage 7, the iteration comparison: reward by iteration and the best iteration, chosen on the
seen split (the unseen split is never used for selection); the chosen checkpoint gets the registered
model's ``champion`` alias, with the reason on the version."""

from __future__ import annotations

import json
from dataclasses import dataclass

from eto_assets.stages.evaluate import EvalReport
from eto_assets.stages.layout import ArtifactLayout
from eto_assets.stages.policy import model_name
from eto_assets.stages.result import Markdown, StageResult

COLUMNS = (
    "eval_seen_avg_reward",
    "eval_seen_success_rate",
    "eval_unseen_avg_reward",
    "eval_unseen_success_rate",
    "eval_avg_steps",
)


@dataclass
class IterationRow:
    iteration: int
    stage: str
    metrics: dict[str, float]
    model_version: str


def collect_rows(layout: ArtifactLayout, iterations: int) -> list[IterationRow]:
    rows = []
    for k in range(iterations + 1):
        path = layout.eval_report(k)
        if not path.is_file():
            continue
        policy_path = layout.policy_json(k)
        policy = json.loads(policy_path.read_text()) if policy_path.is_file() else {}
        rows.append(
            IterationRow(
                k,
                "sft" if k == 0 else "eto",
                EvalReport.read(path).metrics(),
                str(policy.get("model_version", "")),
            )
        )
    return rows


def best_row(rows: list[IterationRow]) -> IterationRow | None:
    """Highest seen (dev) reward, the earlier iteration on ties; unseen is never used for selection."""
    if not rows:
        return None
    return max(rows, key=lambda r: (r.metrics.get("eval_seen_avg_reward", 0.0), -r.iteration))


def markdown_table(rows: list[IterationRow], best: IterationRow | None) -> str:
    present = [c for c in COLUMNS if any(c in r.metrics for r in rows)]
    head = "| iteration | policy | " + " | ".join(c.removeprefix("eval_") for c in present) + " |"
    sep = "|---|---|" + "---|" * len(present)
    lines = [head, sep]
    for r in rows:
        mark = " (best)" if best is not None and r.iteration == best.iteration else ""
        cells = " | ".join(f"{r.metrics[c]:.3f}" if c in r.metrics else "-" for c in present)
        lines.append(f"| {r.iteration}{mark} | {r.stage} v{r.model_version} | {cells} |")
    return "\n".join(lines)


SELECTION_RULE = (
    "best iteration: the highest seen-split (dev) average reward, the earlier iteration on ties; "
    "the unseen split (test) is never used to choose"
)


def selection_note(best: IterationRow | None) -> str:
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


def write_summary(layout: ArtifactLayout, iterations: int) -> tuple[str, IterationRow | None]:
    """Write ``summary.md``; returns the table and the best row."""
    rows = collect_rows(layout, iterations)
    best = best_row(rows)
    table = markdown_table(rows, best)
    layout.summary_md.parent.mkdir(parents=True, exist_ok=True)
    layout.summary_md.write_text(f"# ETO on {layout.task}\n\n{table}\n\n{selection_note(best)}\n")
    return table, best


COMPARABLE_TAG = "eto.comparable_with_paper"


def comparability_reasons(layout: ArtifactLayout) -> list[str] | None:
    """Why the run is not comparable with the paper, as the expert stage recorded it (None: unknown)."""
    path = layout.expert_dir / "comparability.json"
    if not path.is_file():
        return None
    return [str(r) for r in json.loads(path.read_text()).get("reasons", [])]


def summarize_iterations(layout: ArtifactLayout, iterations: int) -> StageResult:
    table, best = write_summary(layout, iterations)
    result = StageResult(
        metadata={"table": Markdown(table), "selection": selection_note(best), "path": layout.summary_md}
    )
    reasons = comparability_reasons(layout)
    if reasons is not None:
        tag = "true" if not reasons else "false: " + "; ".join(reasons)
        result.tags[COMPARABLE_TAG] = tag
        result.metadata["comparable_with_paper"] = tag
        with layout.summary_md.open("a") as fh:
            fh.write(f"\nComparable with the paper's table: {tag}\n")
    if best is not None:
        result.metadata["best_iteration"] = best.iteration
        if best.model_version:
            result.aliases[CHAMPION] = best.model_version
            reason = champion_reason(best)
            result.version_tags[best.model_version] = {"eto.champion_reason": reason}
            result.metadata["champion"] = (
                f"models:/{model_name(layout.task)}@{CHAMPION} (v{best.model_version})"
            )
            result.tags["eto.champion"] = f"v{best.model_version}: {reason}"
    return result


CHAMPION = "champion"


def champion_reason(best: IterationRow) -> str:
    seen = best.metrics.get("eval_seen_avg_reward", 0.0)
    return (
        f"iteration {best.iteration} has the highest seen-split average reward ({seen:.3f}); {SELECTION_RULE}"
    )
