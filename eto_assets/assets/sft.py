"""Behavioural cloning of the expert: the iteration-0 policy."""

import mlflow
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from eto_assets import tracking
from eto_assets.agent.backends import check_model_dir
from eto_assets.agent.prompt import preamble
from eto_assets.assets.common import (
    TASK_PARTITIONS,
    run_link_metadata,
    settings_params,
    stage_context,
    user_errors,
)
from eto_assets.assets.expert import expert_trajectories
from eto_assets.data.schemas import read_trajectories
from eto_assets.layout import write_policy_info
from eto_assets.pipeline import read_prompt_book
from eto_assets.training.launch import TrainSpec, train
from eto_assets.training.tiny_model import build_tiny_model
from resources import EtoSettings, MlflowTracking


@asset(
    partitions_def=TASK_PARTITIONS,
    group_name="iteration_0",
    deps=[expert_trajectories],
    kinds={"pytorch", "mlflow"},
    description="SFT (behavioural cloning) of the base model on the expert trajectories, loss on agent "
    "turns only. With base_model='tiny' the base model is built here from the expert data.",
)
def sft_checkpoint(
    context: AssetExecutionContext, settings: EtoSettings, mlflow_tracking: MlflowTracking
) -> MaterializeResult:
    sc = stage_context(context, settings)
    with user_errors():
        experts = read_trajectories(sc.layout.expert_jsonl)
        book = read_prompt_book(sc.layout.prompt_book)
        if settings.base_model == "tiny":
            texts = [m.content for t in experts for m in (*preamble(book, t.task_type), *t.messages)]
            base = build_tiny_model(texts, sc.layout.base_model_dir, sc.profile.tiny_model.spec())
        else:
            base = check_model_dir(settings.base_model, "base_model setting")
    out_dir = sc.layout.checkpoint_dir(0)
    params = {**settings_params(settings, sc.profile), "base_model_path": str(base)}
    with mlflow_tracking.stage_run(sc.home, sc.task, "sft", 0, context=context, params=params) as (run, link):
        tracking.log_dataset_input(sc.layout.expert_jsonl, f"{sc.task}-expert", "train")
        context.log.info(f"SFT on {len(experts)} expert trajectories from {base}")
        spec = TrainSpec(
            "sft",
            str(base),
            str(sc.layout.expert_jsonl),
            str(sc.layout.prompt_book),
            str(out_dir),
            sc.profile.sft.model_dump(),
        )
        result = train(spec, settings.accelerate_config)
        tracking.log_history(result.log_history, "sft")
        mlflow.log_metrics({f"sft_{k}": v for k, v in result.metrics.items()})
        version = tracking.register_checkpoint(sc.task, out_dir, iteration=0, stage="sft")
    write_policy_info(
        sc.layout, 0, {"checkpoint": str(out_dir), "model_version": version, "mlflow_run_id": run.info.run_id}
    )
    return MaterializeResult(
        metadata={
            "train_loss": result.metrics.get("train_loss", float("nan")),
            "examples": result.num_examples,
            "base_model": str(base),
            "model_version": f"eto-{sc.task} v{version}",
            "path": MetadataValue.path(str(out_dir)),
            **run_link_metadata(link, run),
        }
    )
