"""ETO's DPO counts only the agent's action tokens in the chosen/rejected log-probs."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig

from eto_assets.config.training import DPOTrainConfig
from eto_assets.data.schemas import Message, PreferencePair
from eto_assets.training.dpo import (
    ActionMaskCollator,
    ActionMaskedDPOTrainer,
    dpo_dataset,
    tokenize_pair,
    train_dpo,
)


def pair(observation: str) -> PreferencePair:
    return PreferencePair(
        task_id="find-animal/0",
        task_type="find-animal",
        prompt=[Message("user", "Your task is to find a(n) animal.")],
        chosen=[
            Message("assistant", "Action: go to outside"),
            Message("user", f"Observation: {observation}"),
            Message("assistant", "Action: focus on frog"),
        ],
        rejected=[Message("assistant", "Action: look around")],
        chosen_reward=1.0,
        rejected_reward=0.0,
        chosen_source="expert",
        rejected_source="agent",
    )


def test_mask_covers_exactly_the_action_tokens(tiny_model_dir):
    path, book = tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    row = dpo_dataset([pair("You move to the outside.")], book)[0]
    enc = tokenize_pair(row, tok)
    kept = tok.decode([i for i, m in zip(enc["chosen_ids"], enc["chosen_action_mask"], strict=True) if m])
    assert kept == "Action: go to outside</s>Action: focus on frog</s>"
    dropped = tok.decode(
        [i for i, m in zip(enc["chosen_ids"], enc["chosen_action_mask"], strict=True) if not m]
    )
    assert "Observation: You move to the outside." in dropped


def _chosen_logps(trainer, tok, observation):
    row = dpo_dataset([pair(observation)], trainer._book)[0]
    example = tokenize_pair(row, tok)
    batch = trainer.data_collator([example])
    chosen, _ = trainer.compute_ref_log_probs(trainer.model, batch)
    return float(chosen[0])


def test_chosen_logps_sum_only_action_tokens(tiny_model_dir, tmp_path):
    path, book = tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    config = DPOConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, precompute_ref_log_probs=False
    )
    collator = ActionMaskCollator(pad_token_id=tok.pad_token_id)
    trainer = ActionMaskedDPOTrainer(
        model=model,
        ref_model=None,
        args=config,
        train_dataset=dpo_dataset([pair("x")], book),
        processing_class=tok,
        data_collator=collator,
    )
    trainer._book = book
    a = _chosen_logps(trainer, tok, "You move to the outside.")
    # The masked sum equals an independent sum over the action tokens alone, and the mask is
    # strictly smaller than the stock completion mask (which also counts observation tokens).
    batch = collator([tokenize_pair(dpo_dataset([pair("You move to the outside.")], book)[0], tok)])
    n_action = int(batch["completion_mask"][0].sum())
    stock = tokenize_pair(dpo_dataset([pair("You move to the outside.")], book)[0], tok)
    assert n_action == sum(stock["chosen_action_mask"]) < len(stock["chosen_ids"])
    assert a < 0.0
    with torch.no_grad():
        full = trainer.model(
            input_ids=batch["input_ids"][:1], attention_mask=batch["attention_mask"][:1]
        ).logits
    logp = torch.log_softmax(full[0, :-1].float(), -1).gather(-1, batch["input_ids"][0, 1:, None])[:, 0]
    expected = float((logp * batch["completion_mask"][0, 1:]).sum())
    # float32 sums over differently shaped batches: equal to a few parts in a million (an observation
    # token counted in or left out would move the sum by whole units)
    assert a == pytest.approx(expected, rel=2e-5, abs=1e-3)


def test_train_dpo_end_to_end(tiny_model_dir, tmp_path):
    path, book = tiny_model_dir
    params = DPOTrainConfig(
        learning_rate=1e-3, num_train_epochs=2, batch_size=2, per_device_train_batch_size=2, beta=0.1
    )
    pairs = [pair("You move to the outside."), pair("It is sunny outside.")]
    result = train_dpo(path, pairs, book, tmp_path / "dpo", params)
    assert (tmp_path / "dpo" / "config.json").is_file()
    losses = [row["loss"] for row in result.log_history if "loss" in row]
    assert losses and all(loss == loss for loss in losses)
    assert result.metrics["train_loss"] > 0
