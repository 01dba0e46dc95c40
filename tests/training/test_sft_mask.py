"""ETO's SFT counts the loss on the agent's (gpt) turns only: checked on the TRL trainer that
``train_sft`` builds (its config, its prepared dataset's labels and the loss it computes), with a
real tiny model and tokenizer on real expert trajectories."""

from pathlib import Path

import pytest
import torch

from eto_assets.agent.prompt import training_conversation
from eto_assets.config.training import TrainConfig
from eto_assets.training import sft
from eto_assets.training.common import TrainResult

IGNORE = -100


@pytest.fixture(scope="module")
def trainer(tiny_model_dir, expert_sample, tmp_path_factory):
    """The SFTTrainer exactly as ``train_sft`` builds it, caught before it trains."""
    path, book = tiny_model_dir
    caught = {}

    def catch(trainer, tokenizer, output_dir: Path, num_examples: int, resume_from=None) -> TrainResult:
        caught["trainer"] = trainer
        return TrainResult(Path(output_dir), {}, [], num_examples)

    params = TrainConfig(learning_rate=1e-3, num_train_epochs=1, batch_size=2, per_device_train_batch_size=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft, "train_and_save", catch)
        sft.train_sft(path, expert_sample, book, tmp_path_factory.mktemp("sft") / "out", params)
    return caught["trainer"]


def _conversations(tiny_model_dir, expert_sample) -> list[list[dict[str, str]]]:
    _, book = tiny_model_dir
    return [training_conversation(book, t.task_type, t.messages) for t in expert_sample]


def test_sft_config_asks_for_assistant_only_loss(trainer):
    assert trainer.args.assistant_only_loss is True, "SFT must train on the agent's turns only"
    assert trainer.args.packing is False


def test_sft_labels_count_exactly_the_agent_turns(trainer, tiny_model_dir, expert_sample):
    """Every token the trainer's dataset labels (not -100) is an agent-turn token, and every
    agent turn is labelled whole: the labelled tokens decode to the gpt turns, each closed by the
    end-of-turn token, and none of the instruction or the observations."""
    tok = trainer.processing_class
    rows = trainer.train_dataset
    conversations = _conversations(tiny_model_dir, expert_sample)
    assert len(rows) == len(conversations)
    by_text = {tok.decode(row["input_ids"]): row for row in rows}
    for conv in conversations:
        text = tok.apply_chat_template(conv, tokenize=False)
        row = by_text[tok.decode(tok(text, add_special_tokens=False)["input_ids"])]
        ids, labels = row["input_ids"], row["labels"]
        kept = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE])
        expected = "".join(m["content"] + tok.eos_token for m in conv if m["role"] == "assistant")
        assert kept == expected, f"SFT labels cover more than the agent turns: {kept[:200]!r}"
        masked = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab == IGNORE])
        for message in conv:
            if message["role"] == "user":
                assert message["content"] in masked, f"a user turn is trained on: {message['content'][:80]!r}"
        assert all(lab in (IGNORE, i) for i, lab in zip(ids, labels, strict=True))


def test_sft_loss_is_the_mean_over_agent_tokens_only(trainer, tiny_model_dir, expert_sample):
    """The loss the trainer optimises on a collated batch of its dataset is the cross-entropy
    averaged over the agent's tokens alone, the agent's tokens taken from the chat template's
    assistant mask and the loss computed here independently from the logits."""
    tok = trainer.processing_class
    agent_tokens = {}
    for conv in _conversations(tiny_model_dir, expert_sample):
        enc = tok.apply_chat_template(
            conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        agent_tokens[tuple(enc["input_ids"])] = enc["assistant_masks"]
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    agent = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    for r, row in enumerate(rows):
        mask = agent_tokens[tuple(row["input_ids"])]
        agent[r, : len(mask)] = torch.tensor(mask, dtype=torch.bool)
    model = trainer.model.eval()
    with torch.no_grad():
        loss = float(trainer.compute_loss(model, dict(batch)))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ids = batch["input_ids"]
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    counted = agent[:, 1:]
    assert counted.sum() < batch["attention_mask"][:, 1:].sum()  # observations are in the batch
    expected = float(-(logp * counted).sum() / counted.sum())
    assert loss == pytest.approx(expected, rel=1e-4), (
        f"the SFT loss {loss:.5f} is not the mean over the agent tokens ({expected:.5f}): "
        "it counts tokens outside the agent turns"
    )
