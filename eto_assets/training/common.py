"""What SFT and DPO share: TrainingArguments fields from typed params, and the result record."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eto_assets.config.training import TrainConfig


@dataclass
class TrainResult:
    output_dir: Path
    metrics: dict[str, float]
    log_history: list[dict[str, Any]] = field(default_factory=list)
    num_examples: int = 0


def num_processes() -> int:
    """Training processes: ``WORLD_SIZE`` as ``accelerate launch`` / torchrun set it, else 1."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def optimizer_steps(params: TrainConfig, num_examples: int, processes: int) -> int:
    """Optimizer steps of a run: batches per process per epoch, over accumulation, times epochs."""
    per_process = math.ceil(num_examples / (params.per_device_train_batch_size * processes))
    accumulation = params.gradient_accumulation_steps(processes)
    return max(1, math.ceil(per_process / accumulation)) * math.ceil(params.num_train_epochs)


def trainer_kwargs(
    params: TrainConfig, output_dir: Path, num_examples: int | None = None, processes: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for a TRL config: the profile's fields as they are, the gradient
    accumulation that keeps the global batch at ``batch_size`` over all processes (fails when it
    does not divide), a warm-up ratio that rounds to zero steps kept at zero, and no hub, no
    external reporting, CPU when no GPU."""
    cuda = torch.cuda.is_available()
    processes = num_processes() if processes is None else processes
    fields = params.trainer_fields()
    if fields["bf16"] is None:
        fields["bf16"] = cuda and torch.cuda.is_bf16_supported()
    if num_examples is not None:
        fields["warmup_steps"] = params.warmup_steps_for(optimizer_steps(params, num_examples, processes))
    return dict(
        **fields,
        output_dir=str(output_dir),
        gradient_accumulation_steps=params.gradient_accumulation_steps(processes),
        use_cpu=not cuda,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        push_to_hub=False,
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


def load_for_training(path: str | Path, setting: str):
    """Model and tokenizer from a local folder, the tokenizer given a template that marks
    assistant tokens and a pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eto_assets.agent.backends import check_model_dir
    from eto_assets.agent.chat_template import ensure_training_template

    model_dir = check_model_dir(path, setting)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ensure_training_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(model_dir), tokenizer


def train_and_save(trainer, tokenizer, output_dir: Path, num_examples: int) -> TrainResult:
    trainer.train()
    trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(output_dir)
    history = list(trainer.state.log_history)
    return TrainResult(output_dir, final_metrics(history), history, num_examples)


def final_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The trainer's summary line (train_loss, runtime, ...) as floats."""
    summary = next((row for row in reversed(log_history) if "train_runtime" in row), {})
    return {k: float(v) for k, v in summary.items() if isinstance(v, int | float)}
