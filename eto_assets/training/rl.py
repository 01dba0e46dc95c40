"""Online RL from the SFT policy: the paper's "PPO" baseline, on TRL's ``GRPOTrainer``.

TRL 1.16 has no PPO trainer for causal LMs; its ``GRPOTrainer`` is the clipped-ratio policy
gradient with a KL penalty to a frozen reference, whose advantage is an episode's reward against its
group (``num_generations`` episodes of the same task) instead of a learned value. Every training
prompt is a train task (its id); TRL's ``rollout_func`` hook plays each one as a whole multi-turn
episode in the real environment with the policy being trained
(:class:`~eto_assets.training.rl_rollout.EpisodeRollout`), and the episode's final reward in [0, 1]
is the one reward function. The loss covers only the agent's tokens: the rollout returns an
``env_mask`` (1 on each agent turn and its end token, 0 on observations and role headers, from the
chat template's ``{% generation %}`` markers, as SFT and DPO mask) that TRL 1.16 multiplies into its
loss mask, so the policy term, the KL term (reference: the SFT policy the run starts from,
``beta``) and the loss normaliser count agent tokens alone.

The output folder is written like SFT's and DPO's (:mod:`eto_assets.training.common`): resumable
trainer checkpoints in ``OUT.work``, the final model, tokenizer and ``train_result.json`` swapped
in at ``OUT`` at the very end. The summary metrics add the mean reward and success rate of every
episode played in training (``episode_reward_mean``, ``episode_success_rate``, ``episodes_played``);
each logged step has TRL's ``reward``, ``reward_std`` and ``episodes/success_rate``.

StepAgent's inverse-RL form adds a second reward: with a ``step_scorer`` (e.g. a trained
:class:`~eto_assets.training.discriminator.StepDiscriminator`: the mean over an episode's turns of
the discriminator's probability that the expert wrote each one) the rollout also returns each
episode's ``step_reward``, the reward function :func:`step_reward` hands it to GRPO, and an
episode's reward is ``reward_weights[0] * environment + reward_weights[1] * step`` (default 1, 1).
The log rows then have ``rewards/episode_reward/mean`` and ``rewards/step_reward/mean`` beside the
sum's ``reward``; the summary adds ``step_reward_mean``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from eto_assets.agent.prompt import PromptBook
from eto_assets.config.training import RLTrainConfig
from eto_assets.data.schemas import Trajectory
from eto_assets.envs.base import Environment, TaskInstance
from eto_assets.training.common import (
    TrainResult,
    load_for_training,
    num_processes,
    prepare_run,
    run_identity,
    train_and_save,
    trainer_kwargs,
    work_dir,
)
from eto_assets.training.rl_rollout import EpisodeRollout


def rl_dataset(tasks: Sequence[TaskInstance]) -> Dataset:
    """One row per training task: its id is the prompt TRL hands the rollout."""
    return Dataset.from_list([{"prompt": t.task_id} for t in tasks])


def episode_reward(prompts, completions, env_reward, episode_success=None, log_metric=None, **kwargs):
    """The reward function: each episode's final environment reward, as the rollout returned it
    (None: the environment failed, the episode is not scored)."""
    if log_metric is not None and episode_success:
        log_metric("episodes/success_rate", statistics.fmean(float(s) for s in episode_success))
    return [None if r is None else float(r) for r in env_reward]


def step_reward(prompts, completions, step_reward, **kwargs):
    """The second reward function with a ``step_scorer``: each episode's score by it, as the rollout
    returned it (None: the environment failed, the episode is not scored)."""
    return [None if r is None else float(r) for r in step_reward]


def scorer_identity(step_scorer: Callable) -> str:
    """What names a step scorer in the run's identity: its ``identity`` (a discriminator's folder, by
    content) or its bound object's, else its qualified name."""
    for obj in (step_scorer, getattr(step_scorer, "__self__", None)):
        identity = getattr(obj, "identity", None)
        if isinstance(identity, str):
            return identity
    name = getattr(step_scorer, "__qualname__", None) or repr(step_scorer)
    return f"{getattr(step_scorer, '__module__', '')}.{name}"


class EpisodeGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose run summary (the last log row, read into ``train_result.json``) also
    holds the rollout's episode statistics."""

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "train_runtime" in logs and isinstance(self.rollout_func, EpisodeRollout):
            logs = {**logs, **self.rollout_func.summary()}
        super().log(logs, start_time)


def task_record(task: TaskInstance) -> dict:
    return {
        "task_id": task.task_id,
        "task_type": task.task_type,
        "split": task.split,
        "max_steps": task.max_steps,
        "payload": task.payload,
    }


def train_rl(
    policy_model: str | Path,
    tasks: Sequence[TaskInstance],
    make_env: Callable[[], Environment],
    book: PromptBook,
    output_dir: Path,
    params: RLTrainConfig,
    *,
    release_env: Callable[[Environment], None] | None = None,
    step_scorer: Callable[[list[Trajectory]], list[float]] | None = None,
    reward_weights: tuple[float, float] | None = None,
) -> TrainResult:
    """Train ``policy_model`` (the SFT checkpoint, also the KL reference) by RL on ``tasks`` played in
    environments from ``make_env``; save the checkpoint to ``output_dir``. Environments are reused
    between steps and finally closed, or handed to ``release_env`` (e.g. an environment pool's).
    With ``step_scorer`` (played trajectories -> one reward each in [0, 1], StepAgent's
    discriminator) each episode's reward is ``reward_weights`` (default (1, 1)) over (environment
    reward, step_scorer's reward)."""
    if not tasks:
        raise ValueError("RL needs at least one training task")
    per_step = params.batch_size // params.num_generations
    if len(tasks) < per_step:
        raise ValueError(
            f"RL plays batch_size / num_generations = {per_step} distinct tasks per step, but only "
            f"{len(tasks)} training tasks were given; lower batch_size or raise num_generations"
        )
    if step_scorer is None and reward_weights is not None:
        raise ValueError(
            "reward_weights weigh the environment's reward against the step_scorer's: give a step_scorer"
        )
    weights = None
    if step_scorer is not None:
        weights = [float(w) for w in (reward_weights or (1.0, 1.0))]
        if len(weights) != 2:
            raise ValueError(f"reward_weights: (environment, step_scorer), got {len(weights)} weights")
    output_dir = Path(output_dir)
    identity = {"tasks": [task_record(t) for t in tasks], "book": book.to_dict()}
    if step_scorer is not None:
        identity["step_reward"] = {"scorer": scorer_identity(step_scorer), "weights": weights}
    resume_from = prepare_run(output_dir, run_identity("rl", policy_model, identity, params))
    model, tokenizer = load_for_training(policy_model, "policy checkpoint")
    kwargs = trainer_kwargs(params, output_dir, len(tasks) * params.num_generations, num_processes())
    if weights is not None:
        kwargs["reward_weights"] = weights
    config = GRPOConfig(**kwargs)
    rollout = EpisodeRollout(
        tasks,
        make_env,
        book,
        tokenizer,
        params,
        episodes_dir=work_dir(output_dir) / "episodes",
        release_env=release_env,
        step_scorer=step_scorer,
    )
    try:
        trainer = EpisodeGRPOTrainer(
            model=model,
            reward_funcs=[episode_reward] if step_scorer is None else [episode_reward, step_reward],
            args=config,
            train_dataset=rl_dataset(tasks),
            processing_class=tokenizer,
            rollout_func=rollout,
        )
        return train_and_save(trainer, tokenizer, output_dir, len(tasks), resume_from)
    finally:
        rollout.close()
