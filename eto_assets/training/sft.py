"""Behavioural cloning: TRL ``SFTTrainer`` on expert conversations, loss on agent turns only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from eto_assets.agent.prompt import PromptBook, training_conversation
from eto_assets.config.training import TrainConfig
from eto_assets.data.schemas import Trajectory
from eto_assets.training.common import (
    TrainResult,
    load_for_training,
    prepare_run,
    run_identity,
    train_and_save,
    trainer_kwargs,
)


def sft_dataset(trajectories: Sequence[Trajectory], book: PromptBook) -> Dataset:
    rows = [{"messages": training_conversation(book, t.task_type, t.messages)} for t in trajectories]
    return Dataset.from_list(rows)


def train_sft(
    base_model: str | Path,
    trajectories: Sequence[Trajectory],
    book: PromptBook,
    output_dir: Path,
    params: TrainConfig,
) -> TrainResult:
    """Fine-tune ``base_model`` on the expert trajectories and save the checkpoint to ``output_dir``."""
    if not trajectories:
        raise ValueError("SFT needs at least one expert trajectory; the expert dataset is empty")
    dataset = sft_dataset(trajectories, book)
    resume_from = prepare_run(output_dir, run_identity("sft", base_model, dataset.to_list(), params))
    model, tokenizer = load_for_training(base_model, "base_model")
    config = SFTConfig(
        assistant_only_loss=True, packing=False, **trainer_kwargs(params, output_dir, len(trajectories))
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return train_and_save(trainer, tokenizer, output_dir, len(trajectories), resume_from)
