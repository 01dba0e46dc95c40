"""The per-iteration comparison a user reads at the end of a run: which iteration is best."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from eto_assets.layout import ArtifactLayout
from eto_assets.pipeline import EvalReport

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
        policy_path = layout.iteration_dir(k) / "policy.json"
        policy = json.loads(policy_path.read_text()) if policy_path.is_file() else {}
        rows.append(
            IterationRow(
                k,
                "sft" if k == 0 else "eto",
                EvalReport.from_dict(json.loads(path.read_text())).metrics(),
                str(policy.get("model_version", "")),
            )
        )
    return rows


def best_row(rows: list[IterationRow]) -> IterationRow | None:
    """Highest seen (dev) reward; the held-out unseen split is never used for selection."""
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


def write_summary(layout: ArtifactLayout, iterations: int) -> tuple[Path, str, IterationRow | None]:
    rows = collect_rows(layout, iterations)
    best = best_row(rows)
    table = markdown_table(rows, best)
    path = layout.root / "summary.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# ETO on {layout.task}\n\n{table}\n")
    return path, table, best
