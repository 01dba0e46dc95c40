"""Behavioural cloning: TRL ``SFTTrainer`` on expert conversations, loss on agent turns only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from eto_assets.agent.backends import check_model_dir
from eto_assets.agent.prompt import PromptBook, build_conversation
from eto_assets.data.schemas import Trajectory
from eto_assets.training.chat_template import ensure_training_template
from eto_assets.training.common import TrainResult, final_metrics, trainer_kwargs
from eto_assets.training.hyperparams import TrainParams


def sft_dataset(trajectories: Sequence[Trajectory], book: PromptBook) -> Dataset:
    rows = [{"messages": build_conversation(book, t.task_type, t.messages)} for t in trajectories]
    return Dataset.from_list(rows)


def train_sft(
    base_model: str | Path,
    trajectories: Sequence[Trajectory],
    book: PromptBook,
    output_dir: Path,
    params: TrainParams,
) -> TrainResult:
    """Fine-tune ``base_model`` on the expert trajectories and save the checkpoint to ``output_dir``."""
    if not trajectories:
        raise ValueError("SFT needs at least one expert trajectory; the expert dataset is empty")
    model_dir = check_model_dir(base_model, "base_model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ensure_training_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = SFTConfig(assistant_only_loss=True, packing=False, **trainer_kwargs(params, output_dir))
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=sft_dataset(trajectories, book),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(output_dir)
    history = list(trainer.state.log_history)
    return TrainResult(output_dir, final_metrics(history), history, len(trajectories))
