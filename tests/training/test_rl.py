"""Online RL (GRPO with whole episodes as rollouts): real ScienceWorld episodes, a real tiny model.

The loss counts only the agent's tokens (the rollout's ``env_mask``, checked against the
conversation and through TRL's own loss), the reward is the environment's, and one real step moves
the weights and writes a checkpoint like SFT's and DPO's."""

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eto_assets.agent.backends import GenerationConfig, TransformersBackend, encode_prompt
from eto_assets.agent.prompt import build_conversation
from eto_assets.config.training import RLTrainConfig
from eto_assets.data.schemas import Message
from eto_assets.training import rl, rl_rollout
from eto_assets.training.common import RESULT_FILE, TrainResult, work_dir
from eto_assets.training.rl_rollout import EpisodeRollout, episode_tokens


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's matrices are small: on a shared 2-core machine extra torch threads only wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def episode_index(session: str) -> tuple[str, int]:
    """(training task id, position in the generation batch) of an episode's session key."""
    task_id, _, rest = session.rpartition("@")
    return task_id, int(rest.split("#")[0])


class ExpertScript:
    """A backend that answers each episode's turns with the expert's answers for its task."""

    max_context = None

    def __init__(self, experts) -> None:
        self.answers = {t.task_id: [m.content for m in t.messages if m.role == "assistant"] for t in experts}
        self.turns: dict[str, int] = defaultdict(int)

    def prompt_tokens(self, conversation):
        return None

    def generate(self, conversations, config, *, seeds=None, sessions=None):
        out = []
        for session in sessions:
            answers = self.answers[episode_index(session)[0]]
            turn = self.turns[session]
            self.turns[session] += 1
            out.append(answers[turn] if turn < len(answers) else "Action: look around")
        return out

    def end_session(self, session: str) -> None:
        pass

    def close(self) -> None:
        pass


class HalfExpert:
    """The policy plays the odd episodes of a batch, the expert's answers the even ones."""

    def __init__(self, policy, script: ExpertScript) -> None:
        self.policy, self.script = policy, script
        self.max_context = policy.max_context

    def prompt_tokens(self, conversation):
        return self.policy.prompt_tokens(conversation)

    def generate(self, conversations, config, *, seeds=None, sessions=None):
        seeds = list(seeds) if seeds is not None else list(range(len(conversations)))
        expert = [i for i, s in enumerate(sessions) if episode_index(s)[1] % 2 == 0]
        policy = [i for i in range(len(conversations)) if i not in expert]
        out: list = [None] * len(conversations)
        picks = [(expert, self.script), (policy, self.policy)]
        for idx, backend in picks:
            if idx:
                answers = backend.generate(
                    [conversations[i] for i in idx],
                    config,
                    seeds=[seeds[i] for i in idx],
                    sessions=[sessions[i] for i in idx],
                )
                for i, answer in zip(idx, answers, strict=True):
                    out[i] = answer
        return out

    def end_session(self, session: str) -> None:
        self.policy.end_session(session)

    def close(self) -> None:
        self.policy.close()


@pytest.fixture(scope="module")
def tasks(sciworld_small, expert_sample):
    """The expert sample's train tasks, each with room for its whole expert episode."""
    bench, _ = sciworld_small
    by_id = {t.task_id: t for t in bench.tasks("train")}
    return [replace(by_id[t.task_id], max_steps=t.num_steps) for t in expert_sample]


def params(**overrides) -> RLTrainConfig:
    base = dict(
        learning_rate=1e-3,
        batch_size=4,
        per_device_train_batch_size=4,
        num_generations=2,
        max_steps=1,
        max_new_tokens=12,
        max_turns=3,
        concurrency=4,
        save_steps=None,
    )
    return RLTrainConfig(**{**base, **overrides})


def _kept_and_dropped(tok, ep):
    kept = [i for i, m in zip(ep.completion_ids, ep.env_mask, strict=True) if m]
    dropped = [i for i, m in zip(ep.completion_ids, ep.env_mask, strict=True) if not m]
    return kept, tok.decode(kept), tok.decode(dropped)


def test_env_mask_marks_exactly_the_agent_turns(tiny_model_dir, sciworld_small, expert_sample, tasks):
    """Whole expert episodes played through the rollout in the real engine: the tokens that count
    are exactly the agent's turns (each with its end token), never an observation or a header, and
    each turn's context in the training sequence is exactly the prompt the policy was sent."""
    path, book = tiny_model_dir
    bench, _ = sciworld_small
    tok = AutoTokenizer.from_pretrained(path)
    rollout = EpisodeRollout(tasks, bench.make_env, book, tok, params(max_turns=None))
    try:
        out = rollout.play([t.task_id for t in tasks], ExpertScript(expert_sample))
    finally:
        rollout.close()
    assert len(out["completion_ids"]) == len(tasks)
    for i, traj in enumerate(rollout.last_trajectories):
        ep = rl_rollout.EpisodeTokens(out["prompt_ids"][i], out["completion_ids"][i], out["env_mask"][i])
        messages = traj.messages
        answers = [m.content for m in messages if m.role == "assistant"]
        _, kept, dropped = _kept_and_dropped(tok, ep)
        assert kept == "".join(a + tok.eos_token for a in answers), kept[:300]
        for obs in (m.content for m in messages[1:] if m.role == "user"):
            assert obs in dropped
        assert out["prompt_ids"][i] == encode_prompt(
            tok, build_conversation(book, traj.task_type, messages[:1])
        )
        sequence = ep.prompt_ids + ep.completion_ids
        mask = [0] * len(ep.prompt_ids) + ep.env_mask
        starts = [k for k in range(len(mask)) if mask[k] and not mask[k - 1]]
        assert len(starts) == len(answers)
        for turn, start in enumerate(starts):
            seen = encode_prompt(tok, build_conversation(book, traj.task_type, messages[: 2 * turn + 1]))
            assert sequence[: len(seen)] == seen and start == len(seen), f"turn {turn}'s context"
        assert ep.completion_ids[-1] == tok.eos_token_id and ep.env_mask[-1] == 1


def test_an_observation_changes_no_counted_token(tiny_model_dir, expert_sample):
    """Another observation text changes the tokens that do not count, never which agent tokens count."""
    path, book = tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    traj = expert_sample[0]
    other = replace(
        traj,
        messages=[
            *traj.messages[:2],
            Message("user", "Observation: a much longer and entirely different reply of the engine " * 3),
            *traj.messages[3:],
        ],
    )
    a, b = episode_tokens(tok, book, traj), episode_tokens(tok, book, other)
    kept_a, text_a, dropped_a = _kept_and_dropped(tok, a)
    kept_b, text_b, dropped_b = _kept_and_dropped(tok, b)
    assert kept_a == kept_b and text_a == text_b
    assert sum(a.env_mask) == sum(b.env_mask) and len(b.completion_ids) > len(a.completion_ids)
    assert "entirely different" in dropped_b and "entirely different" not in dropped_a


@pytest.fixture(scope="module")
def caught_trainer(tiny_model_dir, sciworld_small, tasks, tmp_path_factory):
    """The GRPO trainer exactly as ``train_rl`` builds it, caught before it trains."""
    path, book = tiny_model_dir
    bench, _ = sciworld_small
    caught = {}

    def catch(trainer, tokenizer, output_dir: Path, num_examples: int, resume_from=None) -> TrainResult:
        caught["trainer"] = trainer
        return TrainResult(Path(output_dir), {}, [], num_examples)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rl, "train_and_save", catch)
        rl.train_rl(path, tasks[:2], bench.make_env, book, tmp_path_factory.mktemp("rl") / "out", params())
    return caught["trainer"]


def test_trl_loss_counts_only_agent_tokens(caught_trainer, tasks):
    """Real episodes of the tiny policy through TRL's own generation and loss: TRL's loss mask is
    the rollout's agent mask, and with nonzero advantages the loss's gradient reaches the
    log-prob of every agent token and of nothing else (observations, headers, padding)."""
    trainer = caught_trainer
    prompts = [{"prompt": t.task_id} for t in tasks[:2] for _ in range(2)]
    batch = trainer._generate_and_score_completions(prompts)
    rollout = trainer.rollout_func
    assert len(rollout.last_trajectories) == len(prompts)
    expected = torch.zeros_like(batch["completion_ids"])
    for row, traj in enumerate(rollout.last_trajectories):
        mask = episode_tokens(
            trainer.processing_class, rollout.book, traj, rollout.params.max_length
        ).env_mask
        assert 0 < sum(mask) < len(mask), "an episode with agent turns and observations between them"
        expected[row, : len(mask)] = torch.tensor(mask)
    batch["advantages"] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    caught = {}
    scorer = trainer._get_per_token_logps_and_entropies

    def spy_logps(*args, **kwargs):
        logps, entropies, aux = scorer(*args, **kwargs)
        logps.retain_grad()
        caught["logps"] = logps
        return logps, entropies, aux

    trainer._get_per_token_logps_and_entropies = spy_logps
    try:
        trainer.model.zero_grad()
        trainer._compute_loss(trainer.model, batch).backward()
    finally:
        del trainer._get_per_token_logps_and_entropies
    grad = caught["logps"].grad
    leaked = int(((grad != 0) & ~expected.bool()).sum())  # observation, header or padding tokens
    missed = int(((grad == 0) & expected.bool()).sum())  # agent tokens
    assert (leaked, missed) == (0, 0), (
        f"the loss reaches {leaked} non-agent tokens, misses {missed} agent ones"
    )
    assert torch.equal(batch["completion_mask"] * batch["tool_mask"], expected), "TRL's loss mask"


def test_rewards_are_the_environments(tiny_model_dir, sciworld_small, expert_sample, tasks):
    """Expert answers forced through the episode player win (reward 1, the expert's own); cut after
    two turns, each episode gets the engine's partial score after two steps; an answer without an
    action scores 0 (ETO's invalid-format rule). The reward function passes them on unchanged."""
    path, book = tiny_model_dir
    bench, _ = sciworld_small
    tok = AutoTokenizer.from_pretrained(path)
    ids = [t.task_id for t in tasks]
    for max_turns, expected in (
        (None, [t.reward for t in expert_sample]),
        (2, [t.metadata["step_rewards"][1] for t in expert_sample]),
    ):
        rollout = EpisodeRollout(tasks, bench.make_env, book, tok, params(max_turns=max_turns))
        try:
            out = rollout.play(ids, ExpertScript(expert_sample))
        finally:
            rollout.close()
        assert out["env_reward"] == pytest.approx(expected)
        assert out["env_reward"] == [t.reward for t in rollout.last_trajectories]
        assert rl.episode_reward(ids, [], out["env_reward"]) == out["env_reward"]
        if max_turns is None:
            assert expected == [1.0] * len(tasks) and all(out["episode_success"])
    silly = ExpertScript(
        [replace(t, messages=[Message("assistant", "I am not sure.")]) for t in expert_sample]
    )
    rollout = EpisodeRollout(tasks, bench.make_env, book, tok, params(max_turns=1))
    try:
        out = rollout.play(ids, silly)
    finally:
        rollout.close()
    assert out["env_reward"] == [0.0] * len(tasks)


def test_one_rl_step_moves_the_weights_and_writes_the_checkpoint(
    tiny_model_dir, sciworld_small, expert_sample, tasks, tmp_path
):
    """One optimizer step of ``train_rl`` on real episodes. The untrained tiny policy scores 0 in
    every episode, so every GRPO advantage would be 0 and nothing would move: half of each group is
    played with the expert's answers (real engine, real rewards), half by the policy."""
    path, book = tiny_model_dir
    bench, _ = sciworld_small
    script = ExpertScript(expert_sample)
    live = rl_rollout.LivePolicyBackend
    out = tmp_path / "rl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rl_rollout, "LivePolicyBackend", lambda *a, **k: HalfExpert(live(*a, **k), script))
        result = rl.train_rl(path, tasks[:2], bench.make_env, book, out, params(max_turns=3))
    assert result.output_dir == out and (out / "config.json").is_file() and (out / RESULT_FILE).is_file()
    assert not work_dir(out).exists() and not out.with_name("rl.tmp").exists()
    step = next(row for row in result.log_history if "reward" in row)
    assert step["reward"] > 0 and step["reward_std"] > 0, "the step had a learning signal"
    assert step["completions/mean_length"] > 0 and "kl" in step
    assert result.metrics["train_loss"] == result.metrics["train_loss"]  # a number
    assert result.metrics["episodes_played"] == 4.0
    assert result.metrics["episode_reward_mean"] == pytest.approx(step["reward"])
    before = AutoModelForCausalLM.from_pretrained(path).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the step moved the weights"
    backend = TransformersBackend(out, reuse_kv=False)
    answer = backend.generate(
        [build_conversation(book, tasks[0].task_type, expert_sample[0].messages[:1])],
        GenerationConfig(max_new_tokens=4),
    )
    assert isinstance(answer[0], str)
