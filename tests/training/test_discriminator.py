"""StepAgent's inverse-RL pieces: a discriminator of expert vs policy turns (TRL's RewardTrainer on a
score head of the tiny model) and its per-step reward in a real GRPO step.

Pairs are hand-made in ETO's ReAct form from real ScienceWorld expert episodes: the prompt is the
task turn and the expert's rounds before a step, the chosen side the expert's turn there, the
rejected side a plausible but wrong agent turn."""

import json
import math
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from eto_assets.config.training import TrainConfig
from eto_assets.data.schemas import Message, PreferencePair
from eto_assets.data.step_pairs import same_action
from eto_assets.training import discriminator as disc_module
from eto_assets.training import rl, rl_rollout
from eto_assets.training.common import RESULT_FILE, RUN_FILE, work_dir
from eto_assets.training.discriminator import (
    StepDiscriminator,
    load_classifier,
    step_ids,
    train_discriminator,
)
from eto_assets.training.rl_rollout import EpisodeRollout
from tests.training import test_rl
from tests.training.test_rl import ExpertScript, HalfExpert, params

# test_rl's fixtures, reused by name: its training tasks and one torch thread on the shared cores
tasks = test_rl.tasks
one_torch_thread = test_rl.one_torch_thread

POLICY_TURNS = (
    "Thought: I am not sure what to do here, maybe I should wait.\nAction: wait1",
    "Thought: Let me check what I am carrying first.\nAction: inventory",
    "Action: look at ceiling",
)


def step_pair(expert, step: int, policy_turn: str) -> PreferencePair:
    cut = 1 + 2 * (step - 1)
    return PreferencePair(
        task_id=expert.task_id,
        task_type=expert.task_type,
        prompt=list(expert.messages[:cut]),
        chosen=[expert.messages[cut]],
        rejected=[Message("assistant", policy_turn)],
        chosen_reward=expert.reward,
        rejected_reward=0.0,
        chosen_source=f"expert@step{step}",
        rejected_source=f"agent@step{step}",
    )


@pytest.fixture(scope="module")
def pairs(expert_sample):
    """Two steps of each expert episode, each against a wrong agent turn: eight pairs."""
    out = []
    for i, expert in enumerate(expert_sample):
        for step in (1, 2):
            policy = POLICY_TURNS[(i + step) % len(POLICY_TURNS)]
            assert not same_action(expert.messages[1 + 2 * (step - 1)].content, policy)
            out.append(step_pair(expert, step, policy))
    return out


def disc_params(**overrides) -> TrainConfig:
    base = dict(
        learning_rate=3e-3,
        num_train_epochs=16,
        batch_size=4,
        per_device_train_batch_size=4,
        warmup_steps=0,
        lr_scheduler_type="constant",
        save_steps=None,
        seed=0,
    )
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def trained(tiny_model_dir, pairs, tmp_path_factory):
    path, book = tiny_model_dir
    out = tmp_path_factory.mktemp("disc") / "discriminator"
    return train_discriminator(path, pairs, book, out, disc_params())


def separation(scores) -> tuple[float, float]:
    """(how often the expert's turn scores above the policy's, mean margin)."""
    wins = sum(c > r for c, r in scores) / len(scores)
    return wins, sum(c - r for c, r in scores) / len(scores)


def test_training_separates_expert_from_policy_turns(tiny_model_dir, pairs, trained):
    """Before training (the same seeded head the run starts from) the discriminator is at chance on
    its training pairs; after, the expert's turn scores above the policy's in every pair."""
    path, book = tiny_model_dir
    model, tok = load_classifier(path, "tiny", seed=disc_params().seed)
    before = StepDiscriminator(model, tok, book).score_pairs(pairs)
    after = StepDiscriminator.load(trained.output_dir, book).score_pairs(pairs)
    (wins_before, margin_before), (wins_after, margin_after) = separation(before), separation(after)
    assert wins_after > wins_before, (before, after)
    assert wins_after == 1.0 and margin_after > margin_before + 0.2, (before, after)
    assert all(0.0 <= s <= 1.0 for pair in after for s in pair)
    assert trained.metrics["train_loss"] == trained.metrics["train_loss"]  # a number
    last = [row for row in trained.log_history if "accuracy" in row][-1]
    assert last["accuracy"] == 1.0


def test_output_folder_reloads_and_a_rerun_does_not_retrain(tiny_model_dir, pairs, trained, monkeypatch):
    """The published folder holds the classifier, the tokenizer, ``train_result.json`` and the run's
    identity; a second call with the same inputs returns the finished run without a trainer."""
    path, book = tiny_model_dir
    out = trained.output_dir
    assert (out / RESULT_FILE).is_file() and (out / RUN_FILE).is_file() and (out / "config.json").is_file()
    assert not work_dir(out).exists() and not out.with_name(f"{out.name}.tmp").exists()
    payload = json.loads((out / RESULT_FILE).read_text())
    assert payload["num_examples"] == len(pairs) and payload["metrics"] == trained.metrics
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    weights = (out / "model.safetensors").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run of the same inputs was trained again")

    monkeypatch.setattr(disc_module, "DiscriminatorTrainer", no_training)
    again = train_discriminator(path, pairs, book, out, disc_params())
    assert again.output_dir == out and again.metrics == trained.metrics
    assert again.log_history == trained.log_history and again.num_examples == len(pairs)
    assert (out / "model.safetensors").stat().st_mtime_ns == weights
    with pytest.raises(AssertionError, match="trained again"):  # other inputs are another run
        train_discriminator(path, pairs[:-1], book, out, disc_params())


class Killed(Exception):
    pass


def test_a_killed_run_resumes_from_its_checkpoint(tiny_model_dir, pairs, tmp_path, monkeypatch):
    """A run killed after its first checkpoint resumes from it on the next call (prepare_run's
    checkpoint), and finishes into the same kind of folder."""
    from transformers import TrainerCallback

    path, book = tiny_model_dir
    out = tmp_path / "disc"
    settings = disc_params(num_train_epochs=2, save_steps=1)
    real = disc_module.train_and_save

    class KillAfterFirstSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise Killed

    def killed(trainer, *args, **kwargs):
        trainer.add_callback(KillAfterFirstSave())
        return real(trainer, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(disc_module, "train_and_save", killed)
        with pytest.raises(Killed):
            train_discriminator(path, pairs, book, out, settings)
    assert (work_dir(out) / "checkpoint-1").is_dir() and not out.exists()
    result = train_discriminator(path, pairs, book, out, settings)
    assert result.metrics["resumed_from_step"] == 1.0
    assert (out / RESULT_FILE).is_file() and not work_dir(out).exists()


def test_episode_rewards_are_mean_turn_scores(tiny_model_dir, expert_sample, pairs, trained):
    """One reward per trajectory in [0, 1], the mean of its turn scores (0 without a turn); a turn
    is scored in exactly the rendering the discriminator was trained on."""
    path, book = tiny_model_dir
    scorer = StepDiscriminator.load(trained.output_dir, book, batch_size=3)
    no_turn = replace(expert_sample[0], messages=expert_sample[0].messages[:1])
    short = replace(expert_sample[1], messages=expert_sample[1].messages[:3])
    trajectories = [*expert_sample, no_turn, short]
    turns = scorer.score_turns(trajectories)
    rewards = scorer.episode_rewards(trajectories)
    assert len(rewards) == len(trajectories) == len(turns)
    assert [len(t) for t in turns] == [t.num_steps for t in trajectories]
    assert turns[-2] == [] and rewards[-2] == 0.0
    for scores, reward in zip(turns, rewards, strict=True):
        assert 0.0 <= reward <= 1.0 and all(0.0 <= s <= 1.0 for s in scores)
        if scores:
            assert reward == pytest.approx(sum(scores) / len(scores))
    assert scorer(trajectories) == pytest.approx(rewards)
    # expert_sample[i]'s turns 1 and 2 are the chosen sides of pairs 2i and 2i+1
    chosen = [c for c, _ in scorer.score_pairs(pairs)]
    for i in range(len(expert_sample)):
        assert turns[i][:2] == pytest.approx(chosen[2 * i : 2 * i + 2], abs=1e-5)
    assert turns[-1] == pytest.approx(turns[1][:1], abs=1e-5), "a turn's score depends on its past only"
    tok = scorer.tokenizer
    pair = pairs[0]
    ids = step_ids(tok, book, pair.task_type, pair.prompt, pair.chosen[0])
    assert tok.decode(ids).rstrip().endswith(pair.chosen[0].content + tok.eos_token)
    assert scorer.max_length is not None and len(ids) < scorer.max_length


def test_empty_or_malformed_pairs_are_refused(tiny_model_dir, pairs, tmp_path):
    path, book = tiny_model_dir
    with pytest.raises(ValueError, match="at least one step pair"):
        train_discriminator(path, [], book, tmp_path / "d", disc_params())
    whole = replace(pairs[0], chosen=[*pairs[0].chosen, Message("user", "Observation: x")])
    with pytest.raises(ValueError, match="one assistant turn"):
        train_discriminator(path, [whole], book, tmp_path / "d", disc_params())
    assert not (tmp_path / "d").exists() and not work_dir(tmp_path / "d").exists()


def test_rollout_step_reward_is_the_scorers(tiny_model_dir, sciworld_small, expert_sample, tasks, trained):
    """With a scorer the rollout returns ``step_reward``: the scorer's reward of each played episode,
    None for one whose environment failed; without one the output has no such key."""
    path, book = tiny_model_dir
    bench, _ = sciworld_small
    scorer = StepDiscriminator.load(trained.output_dir, book)
    ids = [t.task_id for t in tasks]
    tok = AutoTokenizer.from_pretrained(path)
    rollout = EpisodeRollout(tasks, bench.make_env, book, tok, params(max_turns=2), step_scorer=scorer)
    try:
        out = rollout.play(ids, ExpertScript(expert_sample))
        played = rollout.last_trajectories
        assert out["step_reward"] == pytest.approx(scorer.episode_rewards(played))
        assert all(0.0 <= r <= 1.0 for r in out["step_reward"])
        failed = replace(played[0], metadata={**played[0].metadata, "failed": True})
        mixed = rollout.step_rewards([played[0], failed, played[1]])
        assert mixed[1] is None and mixed[0] == pytest.approx(out["step_reward"][0])
        assert rollout.summary()["step_reward_mean"] == pytest.approx(
            sum([*out["step_reward"], mixed[0], mixed[2]]) / (len(out["step_reward"]) + 2)
        )
    finally:
        rollout.close()
    assert rl.step_reward(ids, [], out["step_reward"]) == out["step_reward"]
    plain = EpisodeRollout(tasks, bench.make_env, book, tok, params(max_turns=1))
    try:
        assert "step_reward" not in plain.play(ids, ExpertScript(expert_sample))
        assert "step_reward_mean" not in plain.summary()
    finally:
        plain.close()
    with pytest.raises(ValueError, match="give a step_scorer"):
        rl.train_rl(path, tasks[:2], bench.make_env, book, path.parent / "x", params(), reward_weights=(1, 1))


def test_one_rl_step_with_the_discriminator_as_step_reward(
    tiny_model_dir, sciworld_small, expert_sample, tasks, trained, tmp_path
):
    """One real GRPO step of ``train_rl`` with the discriminator as ``step_scorer`` (half of each
    group played with the expert's answers, as test_rl's step): the step logs both reward functions,
    their weighted sum is TRL's ``reward``, the summary has ``step_reward_mean``, and the checkpoint
    is written like any RL run's."""
    path, book = tiny_model_dir
    bench, _ = sciworld_small
    scorer = StepDiscriminator.load(trained.output_dir, book)
    live = rl_rollout.LivePolicyBackend
    out = tmp_path / "rl"
    script = ExpertScript(expert_sample)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rl_rollout, "LivePolicyBackend", lambda *a, **k: HalfExpert(live(*a, **k), script))
        result = rl.train_rl(
            path,
            tasks[:2],
            bench.make_env,
            book,
            out,
            params(max_turns=3),
            step_scorer=scorer,
            reward_weights=(1.0, 0.5),
        )
    assert (out / "config.json").is_file() and (out / RESULT_FILE).is_file() and not work_dir(out).exists()
    step = next(row for row in result.log_history if "reward" in row)
    env_mean, step_mean = step["rewards/episode_reward/mean"], step["rewards/step_reward/mean"]
    assert 0.0 <= step_mean <= 1.0 and step["rewards/step_reward/std"] >= 0.0
    assert step["reward"] == pytest.approx(env_mean + 0.5 * step_mean, abs=1e-5)
    assert result.metrics["step_reward_mean"] == pytest.approx(step_mean, abs=1e-5)
    assert result.metrics["episodes_played"] == 4.0 and not math.isnan(result.metrics["train_loss"])
    before = AutoModelForCausalLM.from_pretrained(path).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the step moved the weights"
