"""What SFT and DPO share: TrainingArguments fields from typed params, the result record, and
training that survives a kill.

A run of output folder ``OUT`` saves trainer checkpoints every ``save_steps`` optimizer steps into
``OUT.work/checkpoint-N``; a rerun of the same run (same model, data and parameters, recorded in
``OUT.work/run.json``) resumes from the last complete one, and a different run starts afresh. The
final model is written into ``OUT.tmp`` and swapped in at ``OUT`` at the very end (the previous
``OUT`` stays intact until then), after which the work folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from eto_assets.config.memory import trim
from eto_assets.config.training import TrainConfig
from eto_assets.data.files import atomic_write_json, folder_identity, publish_dir, recover_dir

RESULT_FILE = "train_result.json"
RUN_FILE = "run.json"


@dataclass
class TrainResult:
    output_dir: Path
    metrics: dict[str, float]
    log_history: list[dict[str, Any]] = field(default_factory=list)
    num_examples: int = 0


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading token ids ``a`` and ``b`` share (where a rendered prompt ends in a rendered
    conversation)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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
    if params.save_steps is None:
        saving: dict[str, Any] = {"save_strategy": "no"}
    else:
        saving = {"save_strategy": "steps", "save_steps": params.save_steps, "save_total_limit": 2}
    return dict(
        **fields,
        **saving,
        output_dir=str(work_dir(output_dir)),
        gradient_accumulation_steps=params.gradient_accumulation_steps(processes),
        use_cpu=not cuda,
        logging_steps=1,
        report_to="none",
        push_to_hub=False,
        disable_tqdm=False,
        dataloader_num_workers=0,
    )


def score_counted_positions_only() -> None:
    """Make TRL's fused LM head project only the positions whose label counts (agent tokens) on
    the CPU too. TRL 1.16 does so on CUDA/XPU only and scores every position elsewhere, so that a
    compiled device (Neuron) keeps fixed tile shapes; eager CPU has nothing to recompile, and the
    prompt's and observations' full-vocabulary logits cost time and about a gigabyte of tiles.
    The log-probs are the same: masked positions are dropped from the loss either way."""
    import trl.trainer.utils as trl_utils

    current = trl_utils._use_triton
    if getattr(current, "_eto_cpu_compact", False):
        return

    def compact_here(device) -> bool:
        return device.type == "cpu" or current(device)

    compact_here._eto_cpu_compact = True
    trl_utils._use_triton = compact_here


def load_for_training(path: str | Path, setting: str):
    """Model and tokenizer from a local folder, the tokenizer given a template that marks
    assistant tokens and a pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eto_assets.agent.backends import check_model_dir
    from eto_assets.agent.chat_template import ensure_training_template

    score_counted_positions_only()
    model_dir = check_model_dir(path, setting)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ensure_training_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(model_dir), tokenizer


def work_dir(output_dir: Path) -> Path:
    """Where a run's resumable trainer checkpoints go."""
    output_dir = Path(output_dir)
    return output_dir.with_name(f"{output_dir.name}.work")


def _staging(output_dir: Path) -> Path:
    return output_dir.with_name(f"{output_dir.name}.tmp")


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run_identity(algo: str, model: str | Path, rows: Any, params: TrainConfig) -> dict[str, Any]:
    """What must match for a rerun to resume a run's checkpoints."""
    data = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
    return {
        "algo": algo,
        "model": folder_identity(model),
        "data": data,
        "params": params.model_dump(),
        "processes": num_processes(),
    }


def last_checkpoint(work: Path) -> Path | None:
    """The last complete ``checkpoint-N`` (its ``trainer_state.json``, written last, parses)."""
    if not work.is_dir():
        return None
    found = []
    for path in work.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())["global_step"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return path
    return None


def prepare_run(output_dir: Path, identity: dict[str, Any]) -> Path | None:
    """Get ``output_dir``'s work folder ready; returns the checkpoint to resume from (None: a
    fresh start). A work folder of another run (other model, data or parameters) is removed."""
    output_dir = Path(output_dir)
    work = work_dir(output_dir)
    if _is_main():
        recover_dir(output_dir)
        shutil.rmtree(_staging(output_dir), ignore_errors=True)
        try:
            same = json.loads((work / RUN_FILE).read_text()) == json.loads(json.dumps(identity))
        except (OSError, ValueError):
            same = False
        if work.exists() and not same:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_json(work / RUN_FILE, identity)
    return last_checkpoint(work)


class ReturnFreedMemory(TrainerCallback):
    """Hand the heap's free pages back to the OS after every forward/backward pass, so freed
    activations of varying lengths do not pile up resident (:mod:`eto_assets.config.memory`).
    The same 22-pair CPU DPO run of SmolLM2: peak 5.3 GB instead of a creep past 6."""

    def on_substep_end(self, args, state, control, **kwargs):
        trim(collect=False)

    def on_step_end(self, args, state, control, **kwargs):
        trim(collect=False)


def train_and_save(
    trainer, tokenizer, output_dir: Path, num_examples: int, resume_from: Path | None = None
) -> TrainResult:
    """Train (resuming from ``resume_from``), write the model, the tokenizer and the result record
    into a temporary folder and swap it in at ``output_dir``; then drop the work folder."""
    output_dir = Path(output_dir)
    trainer.add_callback(ReturnFreedMemory())
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    staging = _staging(output_dir)
    trainer.save_model(str(staging))
    history = list(trainer.state.log_history)
    metrics = final_metrics(history)
    if resume_from is not None:
        metrics["resumed_from_step"] = float(resume_from.name.split("-")[-1])
    if trainer.args.should_save:
        tokenizer.save_pretrained(staging)
        payload = {"metrics": metrics, "log_history": history, "num_examples": num_examples}
        atomic_write_json(staging / RESULT_FILE, payload, indent=None)
    trainer.accelerator.wait_for_everyone()
    if _is_main():
        publish_dir(staging, output_dir)
        shutil.rmtree(work_dir(output_dir), ignore_errors=True)
    return TrainResult(output_dir, metrics, history, num_examples)


def final_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The trainer's summary line (train_loss, runtime, ...) as floats."""
    summary = next((row for row in reversed(log_history) if "train_runtime" in row), {})
    return {k: float(v) for k, v in summary.items() if isinstance(v, int | float)}
