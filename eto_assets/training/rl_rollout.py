"""Whole episodes in the real environment as TRL ``GRPOTrainer`` rollouts (see :mod:`.rl`).

TRL hands a ``rollout_func`` the prompts of a generation batch (each training task's id,
``num_generations`` times in a row) and the trainer; it returns, per prompt, the prompt's token
ids, the completion's token ids and, under the extra key ``env_mask``, a 1/0 per completion token.
GRPO multiplies ``env_mask`` into its loss mask (``completion_mask * tool_mask`` in TRL 1.16), so
the policy-gradient term, the KL term, the token count the loss is normalised by and the logged
completion lengths cover only the tokens marked 1. Every other extra key is handed to the reward
functions; here ``env_reward`` carries each episode's final reward and, with a ``step_scorer``
(StepAgent's inverse-RL reward, :class:`~eto_assets.training.discriminator.StepDiscriminator`),
``step_reward`` each played episode's score by it.

:class:`EpisodeRollout` plays each prompt's task with the pipeline's own episode engine
(:func:`eto_assets.agent.rollout.run_rollouts`: the 1-shot conversation of
:func:`~eto_assets.agent.prompt.build_conversation`, ETO's stop strings and parser, the
invalid-format reward rule, environment retries), generating with the policy being trained
(:class:`LivePolicyBackend`). An episode's tokens are then its whole conversation as the chat
template renders it (:func:`episode_tokens`): the prompt is the preamble and the task turn with the
generation prompt, exactly the tokens the policy read before its first action; the completion is
every later token through the end of the last agent turn, and ``env_mask`` is the template's
assistant-token mask (its ``{% generation %}`` markers, as SFT's ``assistant_only_loss`` and DPO's
action mask read them): 1 on each agent answer and its end-of-turn token, 0 on the observations and
the role headers between them.

Each turn the policy reads the re-rendered conversation so far (as at exploration and
evaluation), and a prefix of a rendered conversation tokenizes as the rendered prefix, so the
context of every agent token in the training sequence is what the policy read when it wrote it.
The agent tokens are the answer as the environment received it (cut at a stop string, stripped),
re-tokenized: what SFT and DPO train on too. The prompt is never cut while playing (an episode that
outgrows ``max_length`` ends), so no agent token is trained in a context other than its own.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eto_assets.agent.backends import TransformersBackend, encode_prompt
from eto_assets.agent.decoding import SessionDecoder
from eto_assets.agent.prompt import PromptBook, build_conversation
from eto_assets.agent.rollout import run_rollouts, seed_for
from eto_assets.config.profile import RolloutConfig
from eto_assets.config.training import RLTrainConfig
from eto_assets.data.react import STOP_STRINGS
from eto_assets.data.schemas import Trajectory
from eto_assets.envs.base import Environment, TaskInstance
from eto_assets.training.common import common_prefix_length


@dataclass(frozen=True)
class EpisodeTokens:
    """One episode as GRPO trains on it."""

    prompt_ids: list[int]  # preamble, task turn and generation prompt: what the policy read first
    completion_ids: list[int]  # everything after, through the last agent turn's end token
    env_mask: list[int]  # per completion token: 1 the agent wrote it (it counts), 0 it did not


def episode_tokens(
    tokenizer, book: PromptBook, trajectory: Trajectory, max_length: int | None = None
) -> EpisodeTokens:
    """Prompt ids, completion ids and the agent-token mask of a played episode (module docstring).
    An episode without an agent turn (its prompt did not fit, or its environment failed at reset)
    gets a one-token completion (the end token) that counts nothing: TRL needs a token to pad."""
    messages = list(trajectory.messages)
    prompt_ids = encode_prompt(tokenizer, build_conversation(book, trajectory.task_type, messages[:1]))
    if not any(m.role == "assistant" for m in messages[1:]):
        return EpisodeTokens(prompt_ids, [tokenizer.eos_token_id], [0])
    full = tokenizer.apply_chat_template(
        build_conversation(book, trajectory.task_type, messages),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids, marks = list(full["input_ids"]), [int(x) for x in full["assistant_masks"]]
    start = common_prefix_length(prompt_ids, ids)
    completion, mask = ids[start:], marks[start:]
    end = max(i for i, m in enumerate(mask) if m) + 1  # the template's tail after the last turn goes
    completion, mask = completion[:end], mask[:end]
    if max_length is not None and start + len(completion) > max_length:
        keep = max(1, max_length - start)
        completion, mask = completion[:keep], mask[:keep]
    return EpisodeTokens(ids[:start], completion, mask)


class LivePolicyBackend(TransformersBackend):
    """The transformers backend over a model object (the policy being trained) instead of a folder:
    the same batched decoding, stop strings and prompt counting, with KV reuse across the turns of
    one batch of episodes. Make a new one after every weight update; ``close`` keeps the model."""

    def __init__(self, model, tokenizer, *, max_context: int | None = None, max_batch_size: int = 16) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = str(next(model.parameters()).device)
        self.max_batch_size = max_batch_size
        self.max_context = int(getattr(model.config, "max_position_embeddings", 4096))
        if max_context is not None:
            self.max_context = min(self.max_context, max_context)
        self.decoder = SessionDecoder(model, tokenizer, STOP_STRINGS, reuse=True)

    def close(self) -> None:
        del self.decoder


class EpisodeRollout:
    """TRL's ``rollout_func``: plays each prompt's task as one episode with the trainer's policy and
    returns its tokens, agent-token mask (``env_mask``) and final reward (``env_reward``; None for an
    episode whose environment failed, which TRL then leaves out of its group's baseline and gives no
    advantage). Environments are kept between steps and closed (or handed to ``release_env``) by
    :meth:`close`. With a ``step_scorer`` (played trajectories -> one reward each) the output also
    has ``step_reward``: its scores of the played episodes, None for an episode whose environment
    failed."""

    def __init__(
        self,
        tasks: Sequence[TaskInstance],
        make_env: Callable[[], Environment],
        book: PromptBook,
        tokenizer,
        params: RLTrainConfig,
        *,
        episodes_dir: Path | None = None,
        release_env: Callable[[Environment], None] | None = None,
        step_scorer: Callable[[list[Trajectory]], list[float]] | None = None,
    ) -> None:
        self.tasks = {t.task_id: t for t in tasks}
        if len(self.tasks) != len(tasks):
            raise ValueError("RL training tasks must have distinct task ids")
        self.make_env = make_env
        self.release_env = release_env or (lambda env: env.close())
        self.book = book
        self.tokenizer = tokenizer
        self.params = params
        self._own_dir = episodes_dir is None
        self.episodes_dir = Path(tempfile.mkdtemp(prefix="eto-rl-")) if episodes_dir is None else episodes_dir
        self._idle: list[Environment] = []
        self._lock = threading.Lock()
        self.history: list[tuple[float | None, bool]] = []  # (reward, success) of every episode played
        self.last_trajectories: list[Trajectory] = []
        self.step_scorer = step_scorer
        self.step_history: list[float] = []  # step_scorer's reward of every scored episode

    # -- environments kept across steps ------------------------------------------------------------

    def _acquire(self) -> Environment:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.make_env()

    def _keep(self, env: Environment) -> None:
        with self._lock:
            self._idle.append(env)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for env in idle:
            self.release_env(env)
        if self._own_dir:
            shutil.rmtree(self.episodes_dir, ignore_errors=True)

    # -- TRL's entry point -------------------------------------------------------------------------

    def __call__(self, prompts: list[str], trainer) -> dict[str, Any]:
        from trl.models import unwrap_model_for_generation

        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        ) as model:
            training = model.training
            model.eval()
            backend = LivePolicyBackend(model, trainer.processing_class, max_context=self.params.max_length)
            try:
                return self.play(
                    prompts,
                    backend,
                    step=trainer.state.global_step,
                    rank=trainer.accelerator.process_index,
                )
            finally:
                backend.close()
                model.train(training)

    def play(self, prompts: Sequence[str], backend, *, step: int = 0, rank: int = 0) -> dict[str, Any]:
        """Play one episode per prompt (a task id) with ``backend``; TRL's rollout output."""
        params = self.params
        episodes = []
        for i, prompt in enumerate(prompts):
            if prompt not in self.tasks:
                raise ValueError(f"RL rollout: prompt {prompt!r} is not a training task id")
            task = self.tasks[prompt]
            limit = task.max_steps if params.max_turns is None else min(task.max_steps, params.max_turns)
            # a distinct id per episode: episode keys and sampling seeds differ within a group
            episodes.append(replace(task, task_id=f"{task.task_id}@{i}", max_steps=limit))
        config = RolloutConfig(
            concurrency=params.concurrency,
            max_new_tokens=params.max_new_tokens,
            seed=seed_for(params.seed, "rl", step, rank),
            invalid_format_reward=params.invalid_format_reward,
            context_overflow="end_episode",
        )
        self.episodes_dir.mkdir(parents=True, exist_ok=True)
        out = self.episodes_dir / f"step-{step:06d}-rank{rank}.jsonl"
        out.unlink(missing_ok=True)  # episodes of this policy only
        trajectories = run_rollouts(
            episodes,
            self._acquire,
            backend,
            self.book,
            out,
            config,
            temperature=params.temperature,
            source="rl",
            desc=f"rl step {step + 1}",
            release_env=self._keep,
        )
        self.last_trajectories = trajectories
        tokens = [episode_tokens(self.tokenizer, self.book, t, params.max_length) for t in trajectories]
        rewards = [None if t.metadata.get("failed") else float(t.reward) for t in trajectories]
        successes = [bool(t.success) for t in trajectories]
        self.history.extend(zip(rewards, successes, strict=True))
        out = {
            "prompt_ids": [e.prompt_ids for e in tokens],
            "completion_ids": [e.completion_ids for e in tokens],
            "logprobs": None,  # TRL scores the tokens itself (see module docstring: re-tokenized)
            "env_mask": [e.env_mask for e in tokens],
            "env_reward": rewards,
            "episode_success": successes,
            "episode_turns": [t.num_steps for t in trajectories],
        }
        if self.step_scorer is not None:
            out["step_reward"] = self.step_rewards(trajectories)
        return out

    def step_rewards(self, trajectories: list[Trajectory]) -> list[float | None]:
        """``step_scorer``'s reward of each played episode; None where the environment failed."""
        played = [t for t in trajectories if not t.metadata.get("failed")]
        scores = [float(s) for s in self.step_scorer(played)] if played else []
        if len(scores) != len(played):
            raise ValueError(f"step_scorer returned {len(scores)} rewards for {len(played)} episodes")
        self.step_history.extend(scores)
        it = iter(scores)
        return [None if t.metadata.get("failed") else next(it) for t in trajectories]

    def summary(self) -> dict[str, float]:
        """Mean reward and success rate of every episode this rollout played (this process's)."""
        scored = [(r, s) for r, s in self.history if r is not None]
        if not scored:
            return {}
        summary = {
            "episode_reward_mean": statistics.fmean(r for r, _ in scored),
            "episode_success_rate": statistics.fmean(float(s) for _, s in scored),
            "episodes_played": float(len(self.history)),
        }
        if self.step_history:
            summary["step_reward_mean"] = statistics.fmean(self.step_history)
        return summary
