"""DPO on TRL with ETO's rule: only the agent's action tokens count in the chosen/rejected
log-probabilities. Stock TRL scores every completion token, environment observations included;
here each completion carries an action mask (from the chat template's ``{% generation %}``
markers) and the collator hands TRL that mask as ``completion_mask``, so the loss, the reference
log-probs (precomputed once, reference = the policy that explored) and the reward metrics all
ignore observation tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import pad

from eto_assets.agent.prompt import PromptBook, training_conversation
from eto_assets.config.training import DPOTrainConfig
from eto_assets.data.schemas import PreferencePair
from eto_assets.training.common import (
    TrainResult,
    common_prefix_length,
    load_for_training,
    prepare_run,
    run_identity,
    train_and_save,
    trainer_kwargs,
)

MASK_COLUMNS = ("chosen_action_mask", "rejected_action_mask")


def dpo_dataset(pairs: Sequence[PreferencePair], book: PromptBook) -> Dataset:
    rows = []
    for pair in pairs:
        rows.append(
            {
                "prompt": training_conversation(book, pair.task_type, pair.prompt),
                "chosen": [{"role": m.role, "content": m.content} for m in pair.chosen],
                "rejected": [{"role": m.role, "content": m.content} for m in pair.rejected],
            }
        )
    return Dataset.from_list(rows)


def tokenize_pair(example: dict[str, Any], tokenizer) -> dict[str, list[int]]:
    """prompt/chosen/rejected ids plus a 1-per-action-token mask over each completion."""
    prompt_ids = tokenizer.apply_chat_template(example["prompt"], tokenize=True, return_dict=True)[
        "input_ids"
    ]
    out: dict[str, list[int]] = {}
    full = {}
    for key in ("chosen", "rejected"):
        full[key] = tokenizer.apply_chat_template(
            example["prompt"] + example[key],
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
    prompt_len = min(common_prefix_length(prompt_ids, full[k]["input_ids"]) for k in full)
    out["prompt_ids"] = list(prompt_ids[:prompt_len])
    for key, enc in full.items():
        out[f"{key}_ids"] = list(enc["input_ids"][prompt_len:])
        out[f"{key}_action_mask"] = [int(x) for x in enc["assistant_masks"][prompt_len:]]
    return out


class ActionMaskCollator(DataCollatorForPreference):
    """TRL's preference collator with ``completion_mask`` replaced by the action mask."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        masks = [[0] * len(ex["prompt_ids"]) + list(ex["chosen_action_mask"]) for ex in examples]
        masks += [[0] * len(ex["prompt_ids"]) + list(ex["rejected_action_mask"]) for ex in examples]
        if self.max_length is not None:
            masks = [m[: self.max_length] for m in masks]
        width = output["input_ids"].shape[1]
        padded = pad(
            [torch.tensor(m, dtype=torch.long) for m in masks], padding_value=0, padding_side="right"
        )
        mask = torch.zeros((len(masks), width), dtype=torch.long)
        mask[:, : min(width, padded.shape[1])] = padded[:, :width]
        output["completion_mask"] = mask * output["attention_mask"]
        return output


class ActionMaskedDPOTrainer(DPOTrainer):
    """DPOTrainer whose datasets carry action masks (see module docstring)."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        columns = dataset.column_names
        dataset = dataset.map(
            tokenize_pair,
            fn_kwargs={"tokenizer": processing_class},
            remove_columns=columns,
            desc=f"Tokenizing {dataset_name} pairs with action masks",
        )
        if args.max_length is not None:
            dataset = dataset.filter(lambda ex: len(ex["prompt_ids"]) < args.max_length)
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None:
            self._signature_columns = list(dict.fromkeys([*self._signature_columns, *MASK_COLUMNS]))


def train_dpo(
    policy_model: str | Path,
    pairs: Sequence[PreferencePair],
    book: PromptBook,
    output_dir: Path,
    params: DPOTrainConfig,
) -> TrainResult:
    """Train ``policy_model`` on ``pairs`` against itself as the frozen reference; save to ``output_dir``."""
    if not pairs:
        raise ValueError("DPO needs at least one preference pair; every pair was a tie or the set is empty")
    dataset = dpo_dataset(pairs, book)
    resume_from = prepare_run(output_dir, run_identity("dpo", policy_model, dataset.to_list(), params))
    model, tokenizer = load_for_training(policy_model, "policy checkpoint")
    config = DPOConfig(precompute_ref_log_probs=True, **trainer_kwargs(params, output_dir, len(pairs)))
    collator = ActionMaskCollator(pad_token_id=tokenizer.pad_token_id, max_length=params.max_length)
    trainer = ActionMaskedDPOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=collator,
    )
    return train_and_save(trainer, tokenizer, output_dir, len(pairs), resume_from)
