"""Expert trajectories: the benchmark's expert replayed through the real engine."""

import json

import mlflow
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from eto_assets import pipeline, tracking
from eto_assets.assets.common import TASK_PARTITIONS, run_link_metadata, settings_params, stage_context
from eto_assets.envs.base import SPLITS
from eto_assets.envs.registry import scoped_tasks
from resources import EnvironmentPool, EtoSettings, MlflowTracking


@asset(
    partitions_def=TASK_PARTITIONS,
    group_name="expert",
    kinds={"python", "mlflow"},
    description="Expert trajectories replayed through the real environment (failed replays dropped), "
    "the deterministic splits, and the prompt book (instruction + one example per task type).",
)
def expert_trajectories(
    context: AssetExecutionContext,
    settings: EtoSettings,
    mlflow_tracking: MlflowTracking,
    envs: EnvironmentPool,
) -> MaterializeResult:
    sc = stage_context(context, settings)
    splits = {split: scoped_tasks(sc.benchmark, split, sc.scope) for split in SPLITS}
    sc.layout.splits_json.parent.mkdir(parents=True, exist_ok=True)
    sc.layout.splits_json.write_text(
        json.dumps({s: [t.task_id for t in ts] for s, ts in splits.items()}, indent=1)
    )
    params = {**settings_params(settings, sc.profile), "train_tasks": len(splits["train"])}
    with mlflow_tracking.stage_run(sc.home, sc.task, "expert", 0, context=context, params=params) as (
        run,
        link,
    ):
        env = envs.acquire(sc.benchmark)
        try:
            experts, summary = pipeline.generate_expert_data(
                sc.benchmark, splits["train"], sc.layout.expert_jsonl, env
            )
        finally:
            envs.release(sc.benchmark, env)
        book = pipeline.write_prompt_book(sc.benchmark, experts, sc.layout.prompt_book)
        tracking.log_dataset_input(sc.layout.splits_json, f"{sc.task}-splits", "splits")
        mlflow.log_metrics(
            {
                "expert_count": summary.count,
                "expert_dropped": summary.dropped,
                "expert_avg_reward": summary.avg_reward,
            }
        )
        for path in (sc.layout.expert_jsonl, sc.layout.prompt_book, sc.layout.splits_json):
            mlflow.log_artifact(str(path), artifact_path="expert")
    if not experts:
        raise RuntimeError(f"{sc.task}: the expert solved none of the {len(splits['train'])} train tasks")
    return MaterializeResult(
        metadata={
            "expert_count": summary.count,
            "expert_dropped": summary.dropped,
            "expert_avg_reward": summary.avg_reward,
            "dropped_tasks": MetadataValue.json(summary.dropped_tasks[:50]),
            "split_sizes": MetadataValue.json({s: len(ts) for s, ts in splits.items()}),
            "example_task_types": MetadataValue.json(sorted(book.examples)),
            "path": MetadataValue.path(str(sc.layout.expert_jsonl)),
            **run_link_metadata(link, run),
        }
    )
