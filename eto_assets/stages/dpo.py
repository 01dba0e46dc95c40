"""Stage 5, DPO: train the policy of iteration k-1 on iteration k's pairs, with that same policy
as the frozen reference; only action tokens count. With no pairs the policy carries over."""

from __future__ import annotations

from pathlib import Path

from eto_assets.data.schemas import read_pairs
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.task import TaskRun
from eto_assets.training.launch import plan_training, train


def train_dpo_policy(
    run: TaskRun, iteration: int, accelerate_config: str | None = None, *, sft_weight: float | None = None
) -> StageResult:
    """``sft_weight`` (IPR) adds an SFT loss on the chosen side with that weight."""
    layout = run.layout
    previous = PolicyRecord.read(layout, iteration - 1)
    pairs_path = layout.pairs_jsonl(iteration)
    pairs = read_pairs(pairs_path)
    params = run.profile.dpo_for(run.task, iteration)
    if sft_weight is not None:
        params = params.model_copy(update={"sft_weight": sft_weight})
    common = dict(
        params={
            "reference": previous.checkpoint,
            "dpo.beta": params.beta,
            "dpo.learning_rate": params.learning_rate,
            "dpo.lr_scheduler_type": params.lr_scheduler_type,
            "dpo.sft_weight": params.sft_weight,
        },
        datasets=[DatasetInput(pairs_path, f"{run.task}-pairs-it{iteration}", "train")],
    )
    if not pairs:
        # Nothing to contrast (every pair tied): the policy carries over unchanged.
        carried = PolicyRecord(previous.checkpoint, carried_over_from=iteration - 1)
        carried.write(layout, iteration)
        return StageResult(
            **common,
            tags={"eto.dpo_skipped": "no pairs"},
            policy=carried,
            metadata={"pairs": 0, "carried_over": previous.checkpoint},
            warnings=[f"{run.task} iteration {iteration}: no preference pairs; keeping the previous policy"],
        )
    spec = plan_training(
        "dpo",
        previous.checkpoint,
        str(pairs_path),
        str(layout.prompt_book),
        layout.checkpoints_dir(iteration),
        params,
    )
    out_dir = Path(spec.output_dir)
    result = train(spec, accelerate_config)
    policy = PolicyRecord(str(out_dir))
    policy.write(layout, iteration)
    return StageResult(
        **common,
        metrics={f"dpo_{k}": v for k, v in result.metrics.items()},
        history=result.log_history,
        history_prefix="dpo",
        policy=policy,
        register_policy=True,
        metadata={
            "train_loss": result.metrics.get("train_loss", float("nan")),
            "pairs": result.num_examples,
            "beta": params.beta,
            "path": out_dir,
        },
    )
