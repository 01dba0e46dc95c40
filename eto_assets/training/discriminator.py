"""StepAgent's inverse-RL form (arXiv 2411.03817): a discriminator of expert and policy actions
whose judgement is the policy's per-step reward in online RL.

The discriminator is the policy's own checkpoint with a one-output sequence-classification head
(``AutoModelForSequenceClassification``, ``num_labels=1``), trained by TRL's ``RewardTrainer``
with the Bradley-Terry loss ``-log sigmoid(s(expert) - s(policy))`` on step pairs
(:func:`eto_assets.data.step_pairs.stepagent_pairs`): from the same prefix of an expert episode, the
expert's turn (chosen) against the policy's differing turn (rejected). Each side is one sequence:
the training conversation of the pair's prompt (:func:`~eto_assets.agent.prompt.training_conversation`:
preamble, task turn, the rounds before the step) followed by that one agent turn, scored at its last
token. :class:`StepDiscriminator` renders a played episode's turns the same way
(:func:`step_ids` is the one rendering of both), so ``sigmoid(score)`` of an agent turn in its own
context is the probability that the expert wrote it: the per-step reward, and its mean over an
episode's turns an episode reward in [0, 1] like the environment's (see
:func:`eto_assets.training.rl.train_rl`'s ``step_scorer``).

The output folder is written like SFT's and DPO's (:mod:`eto_assets.training.common`): resumable
trainer checkpoints in ``OUT.work``, the classifier, tokenizer and ``train_result.json`` swapped in
at ``OUT`` at the very end, together with ``run.json`` (the run's identity: model, pairs,
parameters). A later call with the same inputs returns the finished run's result without training
again; a call with other inputs trains afresh.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from eto_assets.agent.prompt import PromptBook, training_conversation
from eto_assets.config.training import TrainConfig
from eto_assets.data.files import atomic_write_json, folder_identity
from eto_assets.data.schemas import Message, PreferencePair, Trajectory
from eto_assets.training.common import (
    RESULT_FILE,
    RUN_FILE,
    TrainResult,
    prepare_run,
    run_identity,
    train_and_save,
    trainer_kwargs,
)

Step = tuple[str, Sequence[Message], Message]  # (task type, episode before the turn, the agent turn)


def step_ids(
    tokenizer, book: PromptBook, task_type: str, context: Sequence[Message], turn: Message
) -> list[int]:
    """Token ids of one agent turn in its context, as the discriminator reads it in training and in
    scoring: the training conversation of ``context`` (task turn and the rounds before the turn)
    followed by ``turn``, rendered by the chat template."""
    conversation = training_conversation(book, task_type, [*context, turn])
    return list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])


def _check_step_pair(index: int, pair: PreferencePair) -> None:
    for side in ("chosen", "rejected"):
        turns = getattr(pair, side)
        if len(turns) != 1 or turns[0].role != "assistant":
            raise ValueError(
                f"discriminator pair {index} (task {pair.task_id}): its {side} side must be one assistant "
                f"turn (a step pair), got {[m.role for m in turns]}"
            )
    if not pair.prompt or pair.prompt[-1].role != "user":
        raise ValueError(
            f"discriminator pair {index} (task {pair.task_id}): its prompt must end on a user turn "
            "(the task or the last observation before the step)"
        )


def discriminator_dataset(
    pairs: Sequence[PreferencePair], book: PromptBook, tokenizer, max_length: int | None = None
) -> Dataset:
    """TRL's tokenized preference rows (``chosen_ids``/``rejected_ids``), each side rendered by
    :func:`step_ids`; a pair either side of which is longer than ``max_length`` is left out (as TRL
    would), and none left is an error."""
    rows = []
    for pair in pairs:
        chosen = step_ids(tokenizer, book, pair.task_type, pair.prompt, pair.chosen[0])
        rejected = step_ids(tokenizer, book, pair.task_type, pair.prompt, pair.rejected[0])
        if max_length is None or max(len(chosen), len(rejected)) <= max_length:
            rows.append({"chosen_ids": chosen, "rejected_ids": rejected})
    if not rows:
        raise ValueError(
            f"discriminator: all {len(pairs)} step pairs are longer than max_length={max_length} tokens"
        )
    return Dataset.from_list(rows)


def load_classifier(path: str | Path, setting: str, seed: int | None = None):
    """A checkpoint (a causal LM or a trained discriminator) as a one-output sequence classifier and
    its tokenizer (a template that marks assistant turns, a pad token the model knows). A new head is
    initialised after ``seed`` (the training seed: the head a run starts from is reproducible)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    from eto_assets.agent.backends import check_model_dir
    from eto_assets.agent.chat_template import ensure_training_template

    model_dir = check_model_dir(path, setting)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ensure_training_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if seed is not None:
        set_seed(seed)
    with suppress_seqcls_warning():  # the causal LM's head is dropped and a new score head added: expected
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id  # where each sequence ends
    return model, tokenizer


class DiscriminatorTrainer(RewardTrainer):
    """``RewardTrainer`` whose final save (not its checkpoints) also records the run's identity, so
    the published folder says which run made it (:func:`finished_run`)."""

    def __init__(self, *args, identity: dict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.identity = identity

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if output_dir is not None and not _internal_call and self.args.should_save:
            atomic_write_json(Path(output_dir) / RUN_FILE, self.identity)


def finished_run(output_dir: Path, identity: dict) -> TrainResult | None:
    """The result of the run in ``output_dir`` when it finished and is the run ``identity`` names."""
    try:
        same = json.loads((output_dir / RUN_FILE).read_text()) == json.loads(json.dumps(identity))
        payload = json.loads((output_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not same:
        return None
    return TrainResult(output_dir, payload["metrics"], payload["log_history"], payload["num_examples"])


def train_discriminator(
    model_path: str | Path,
    pairs: Sequence[PreferencePair],
    book: PromptBook,
    output_dir: Path,
    params: TrainConfig,
) -> TrainResult:
    """Train a discriminator from ``model_path`` (the policy checkpoint; its LM head is replaced by a
    score head) to score the expert's turn of each step pair above the policy's (Bradley-Terry);
    save it to ``output_dir``. A finished run of the same inputs is returned as it is."""
    if not pairs:
        raise ValueError(
            "the discriminator needs at least one step pair (expert turn vs policy turn); "
            "the pair list is empty"
        )
    for i, pair in enumerate(pairs):
        _check_step_pair(i, pair)
    output_dir = Path(output_dir)
    rows = [
        {
            "chosen": training_conversation(book, p.task_type, [*p.prompt, *p.chosen]),
            "rejected": training_conversation(book, p.task_type, [*p.prompt, *p.rejected]),
        }
        for p in pairs
    ]
    identity = run_identity("discriminator", model_path, rows, params)
    done = finished_run(output_dir, identity)
    if done is not None:
        return done
    resume_from = prepare_run(output_dir, identity)
    model, tokenizer = load_classifier(model_path, "policy checkpoint", seed=params.seed)
    dataset = discriminator_dataset(pairs, book, tokenizer, params.max_length)
    config = RewardConfig(**trainer_kwargs(params, output_dir, len(dataset)))
    trainer = DiscriminatorTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        identity=identity,
    )
    return train_and_save(trainer, tokenizer, output_dir, len(dataset), resume_from)


class StepDiscriminator:
    """A trained discriminator as StepAgent's per-step reward: an agent turn's score is
    ``sigmoid(s)`` of the head's output for (task turn and the rounds before it, the turn), the
    discriminator's probability that the expert wrote it. Scores are batched, without gradients.
    Callable as :func:`~eto_assets.training.rl.train_rl`'s ``step_scorer`` (:meth:`episode_rewards`)."""

    def __init__(
        self,
        model,
        tokenizer,
        book: PromptBook,
        *,
        batch_size: int = 8,
        path: str | Path | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.book = book
        self.batch_size = max(1, batch_size)
        self.path = None if path is None else Path(path)
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        self._identity: str | None = None

    @classmethod
    def load(
        cls, path: str | Path, book: PromptBook, *, device: str | None = None, batch_size: int = 8
    ) -> StepDiscriminator:
        """The discriminator in ``path`` (a :func:`train_discriminator` output), on ``device``
        (default: the GPU when there is one)."""
        model, tokenizer = load_classifier(path, "discriminator checkpoint")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), tokenizer, book, batch_size=batch_size, path=path)

    @property
    def identity(self) -> str:
        """What names this scorer in an RL run's identity: its folder (by content), else its object."""
        if self._identity is None:
            self._identity = folder_identity(self.path) if self.path is not None else f"object:{id(self)}"
        return self._identity

    def score(self, steps: Sequence[Step]) -> list[float]:
        """``sigmoid`` of the head's score of each (task type, context, agent turn). A sequence longer
        than the model's positions keeps its last tokens (the turn and the newest rounds)."""
        encoded = [
            step_ids(self.tokenizer, self.book, task_type, ctx, turn) for task_type, ctx, turn in steps
        ]
        if self.max_length is not None:
            encoded = [ids[-self.max_length :] for ids in encoded]
        device = next(self.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id
        scores: list[float] = [0.0] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # like lengths batch together
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = max(len(encoded[i]) for i in batch)
                ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):  # right padding, as TRL's collator pads in training
                    ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                    mask[row, : len(encoded[i])] = 1
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                for i, value in zip(batch, torch.sigmoid(logits[:, 0].float()).tolist(), strict=True):
                    scores[i] = float(value)
        return scores

    def score_pairs(self, pairs: Sequence[PreferencePair]) -> list[tuple[float, float]]:
        """(chosen, rejected) scores of step pairs, each side in the pair's prompt."""
        steps: list[Step] = []
        for i, pair in enumerate(pairs):
            _check_step_pair(i, pair)
            steps += [
                (pair.task_type, pair.prompt, pair.chosen[0]),
                (pair.task_type, pair.prompt, pair.rejected[0]),
            ]
        flat = self.score(steps)
        return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(pairs))]

    def score_turns(self, trajectories: Sequence[Trajectory]) -> list[list[float]]:
        """Per trajectory, the score of each agent turn in the episode before it (task turn and earlier
        rounds): StepAgent's per-step reward of every action the policy took."""
        steps: list[Step] = []
        counts = []
        for t in trajectories:
            messages = list(t.messages)
            turns = [
                (t.task_type, messages[:k], m) for k, m in enumerate(messages) if k and m.role == "assistant"
            ]
            steps += turns
            counts.append(len(turns))
        flat = self.score(steps)
        out, start = [], 0
        for n in counts:
            out.append(flat[start : start + n])
            start += n
        return out

    def episode_rewards(self, trajectories: Sequence[Trajectory]) -> list[float]:
        """One reward per trajectory: the mean score of its agent turns (0.0 without one). A mean, not
        a sum, keeps it in [0, 1] like the environment's reward, so the two weigh alike in GRPO's
        sum and a long episode is not paid for its length."""
        return [math.fsum(s) / len(s) if s else 0.0 for s in self.score_turns(trajectories)]

    def __call__(self, trajectories: list[Trajectory]) -> list[float]:
        return self.episode_rewards(trajectories)
