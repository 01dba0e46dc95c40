"""Stage 2, SFT: behavioural cloning of the base model on the expert trajectories (loss on agent
turns only). With ``base_model='tiny'`` the base model is built here from the run's own text."""

from __future__ import annotations

from pathlib import Path

from eto_assets.agent.backends import check_model_dir
from eto_assets.agent.prompt import PromptBook, tokenizer_corpus
from eto_assets.data.schemas import read_trajectories
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.task import TaskRun
from eto_assets.training.launch import TrainSpec, train

TINY = "tiny"


def base_model_path(run: TaskRun, base_model: str) -> Path:
    """Where the base model is: the task's ``base_model`` folder for ``tiny`` (built by
    :func:`prepare_base_model`), else the user's folder, checked."""
    if base_model == TINY:
        return run.layout.base_model_dir
    return check_model_dir(base_model, "base_model setting")


def prepare_base_model(run: TaskRun, base_model: str) -> Path:
    """The base model folder: built from the expert data for ``tiny``, else the user's folder."""
    if base_model != TINY:
        return base_model_path(run, base_model)
    from eto_assets.training.tiny_model import build_tiny_model

    book = PromptBook.read(run.layout.prompt_book)
    experts = read_trajectories(run.layout.expert_jsonl)
    return build_tiny_model(
        tokenizer_corpus(book, experts), base_model_path(run, base_model), run.profile.tiny_model
    )


def train_sft_policy(run: TaskRun, base_model: str, accelerate_config: str | None = None) -> StageResult:
    layout = run.layout
    base = prepare_base_model(run, base_model)
    out_dir = layout.checkpoint_dir(0)
    spec = TrainSpec(
        "sft", str(base), str(layout.expert_jsonl), str(layout.prompt_book), str(out_dir), run.profile.sft
    )
    result = train(spec, accelerate_config)
    policy = PolicyRecord(str(out_dir))
    policy.write(layout, 0)
    return StageResult(
        metrics={f"sft_{k}": v for k, v in result.metrics.items()},
        params={"base_model_path": str(base)},
        datasets=[DatasetInput(layout.expert_jsonl, f"{run.task}-expert", "train")],
        history=result.log_history,
        history_prefix="sft",
        policy=policy,
        register_policy=True,
        metadata={
            "train_loss": result.metrics.get("train_loss", float("nan")),
            "examples": result.num_examples,
            "base_model": str(base),
            "path": out_dir,
        },
    )
