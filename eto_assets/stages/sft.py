"""Stage 2, SFT: behavioural cloning of the base model on the expert trajectories (loss on agent
turns only), from the base model its own stage prepared."""

from __future__ import annotations

from pathlib import Path

from eto_assets.agent.backends import check_model_dir
from eto_assets.agent.prompt import PromptBook, tokenizer_corpus
from eto_assets.data.schemas import read_trajectories
from eto_assets.stages.layout import BASE_ITERATION
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.task import TaskRun
from eto_assets.training.launch import plan_training, train

TINY = "tiny"


def base_model_path(run: TaskRun, base_model: str) -> Path:
    """Where the base model is: the task's ``base_model`` folder for ``tiny`` (built by
    :func:`build_base_model`), else the user's folder, checked."""
    if base_model == TINY:
        return run.layout.base_model_dir
    return check_model_dir(base_model, "base_model setting")


def built_base_model(run: TaskRun, base_model: str) -> Path:
    """The base model folder, which must exist: a tiny model is built by its own stage first."""
    path = base_model_path(run, base_model)
    if base_model == TINY and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: the tiny base model is built from the expert data by its own stage; "
            "materialize base_model/checkpoint first"
        )
    return path


def build_base_model(run: TaskRun, base_model: str) -> StageResult:
    """The model SFT starts from: built from the expert data for ``tiny`` (its tokenizer learns the
    run's own text), else the user's Hugging Face folder, checked. Records which folder it is."""
    path = base_model_path(run, base_model)
    datasets = []
    if base_model == TINY:
        from eto_assets.training.tiny_model import build_tiny_model

        book = PromptBook.read(run.layout.prompt_book)
        experts = read_trajectories(run.layout.expert_jsonl)
        build_tiny_model(tokenizer_corpus(book, experts), path, run.profile.tiny_model)
        datasets.append(DatasetInput(run.layout.expert_jsonl, f"{run.task}-expert", "tokenizer"))
    PolicyRecord(str(path)).write(run.layout, BASE_ITERATION)
    return StageResult(
        params={"base_model": base_model, "base_model_path": str(path)},
        datasets=datasets,
        metadata={"base_model": base_model, "path": path},
    )


def train_sft_policy(run: TaskRun, base_model: str, accelerate_config: str | None = None) -> StageResult:
    layout = run.layout
    base = built_base_model(run, base_model)
    spec = plan_training(
        "sft",
        str(base),
        str(layout.expert_jsonl),
        str(layout.prompt_book),
        layout.checkpoints_dir(0),
        run.profile.sft,
    )
    out_dir = Path(spec.output_dir)
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
