"""Stage 4, preference pairs: expert vs explored trajectory of the same task, higher reward chosen,
ties dropped (rules in :mod:`eto_assets.data.pairs`). Also exported in ETO's DPO JSON layout."""

from __future__ import annotations

from pathlib import Path

from eto_assets.agent.prompt import PromptBook
from eto_assets.data.eto_format import dpo_records, write_json
from eto_assets.data.pairs import build_preference_pairs, truncates_rejected
from eto_assets.data.schemas import PreferencePair, read_trajectories, write_jsonl
from eto_assets.envs.sciworld import golden_form
from eto_assets.stages.layout import ArtifactLayout
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.task import TaskRun


def write_pairs(layout: ArtifactLayout, iteration: int, pairs: list[PreferencePair]) -> tuple[Path, Path]:
    """The iteration's pairs as JSONL (what DPO reads) and in ETO's DPO JSON layout; both paths."""
    out = layout.pairs_jsonl(iteration)
    write_jsonl(out, pairs)
    book = PromptBook.read(layout.prompt_book)
    return out, write_json(out.with_suffix(".eto.json"), dpo_records(pairs, book.instruction))


def make_pairs(run: TaskRun, iteration: int) -> StageResult:
    layout = run.layout
    experts = read_trajectories(layout.expert_jsonl)
    explored = read_trajectories(layout.rollouts_jsonl(iteration))
    # An episode whose environment failed (see run_rollouts) says nothing about the policy.
    failed = [t for t in explored if t.metadata.get("failed")]
    # in task order, not the order episodes happened to finish in: DPO sees the same data order
    # (and so trains the same model) however the rollouts were scheduled
    explored = sorted((t for t in explored if not t.metadata.get("failed")), key=lambda t: t.task_id)
    # ETO strips "Task Description:" from explored episodes so they read like its golden records
    # (construct_preference.py:74, :141): a chosen agent episode's prompt then matches the expert's
    explored = [golden_form(t) for t in explored]
    pairs, stats = build_preference_pairs(experts, explored, truncates_rejected(run.task))
    out, eto_json = write_pairs(layout, iteration, pairs)
    return StageResult(
        metrics={
            "pairs_count": stats.pairs,
            "pairs_dropped_ties": stats.dropped_ties,
            "pairs_agent_chosen": stats.agent_chosen,
            "pairs_dropped_not_ending_on_agent": stats.dropped_empty,
            "pairs_skipped_failed_episodes": len(failed),
        },
        metrics_step=iteration,
        datasets=[
            DatasetInput(layout.expert_jsonl, f"{run.task}-expert", "expert"),
            DatasetInput(layout.rollouts_jsonl(iteration), f"{run.task}-explore-it{iteration}", "explored"),
        ],
        artifacts=[(out, "pairs"), (eto_json, "pairs")],
        metadata={"path": out},
    )
