"""Stage 3, exploration: the policy of iteration k-1 plays every train task that has an expert
trajectory (greedy unless the profile says otherwise). Each finished episode is appended at once,
so a rerun resumes."""

from __future__ import annotations

from collections.abc import Callable

from eto_assets.agent.backends import InferenceBackend
from eto_assets.agent.prompt import PromptBook
from eto_assets.agent.rollout import RolloutStats, rollout_fingerprint, run_rollouts
from eto_assets.data.schemas import read_trajectories
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.stages.evaluate import summarize
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.task import TaskRun

OpenBackend = Callable[[str], InferenceBackend]


def explore(
    run: TaskRun,
    iteration: int,
    open_backend: OpenBackend,
    envs: EnvironmentPool,
    *,
    samples: int = 1,
    temperature: float | None = None,
    with_expert_only: bool = True,
) -> StageResult:
    """The policy of iteration ``iteration - 1`` plays the train tasks ``samples`` times each, at
    ``temperature`` (default: the profile's ``rollout.explore_temperature``); ETO plays the tasks
    that have an expert trajectory, self-play (``with_expert_only`` False) every train task."""
    layout = run.layout
    policy = PolicyRecord.read(layout, iteration - 1)
    book = PromptBook.read(layout.prompt_book)
    tasks = run.tasks("train")
    if with_expert_only:
        expert_ids = {t.task_id for t in read_trajectories(layout.expert_jsonl)}
        tasks = [t for t in tasks if t.task_id in expert_ids]
    config = run.profile.rollout
    temperature = config.explore_temperature if temperature is None else temperature
    out = layout.rollouts_jsonl(iteration)
    make_env, release_env = envs.for_rollouts(run.benchmark)
    stats = RolloutStats()
    fingerprint = rollout_fingerprint(
        policy.checkpoint,
        config,
        temperature=temperature,
        max_steps=run.scope.max_steps_cap,
        extra=layout.prompt_book.read_text() + (f"\nsamples={samples}" if samples != 1 else ""),
    )
    backend = open_backend(policy.checkpoint)
    try:
        trajectories = run_rollouts(
            tasks,
            make_env,
            backend,
            book,
            out,
            config,
            temperature=temperature,
            samples=samples,
            desc=f"explore {layout.method} it{iteration}",
            stats=stats,
            release_env=release_env,
            fingerprint=fingerprint,
        )
    finally:
        backend.close()
    summary = summarize(trajectories)
    return StageResult(
        metrics={
            "explore_episodes": summary.episodes,
            "explore_avg_reward": summary.avg_reward,
            "explore_success_rate": summary.success_rate,
            "explore_resumed": stats.resumed,
            "explore_discarded": stats.discarded,
            "explore_failed": stats.failed,
            "explore_env_restarts": stats.env_faults,
            "explore_model_seconds": stats.model_seconds,
            "explore_env_seconds": stats.env_seconds,
            "explore_cut_turns": stats.cut_turns,
            "explore_cut_episodes": stats.cut_episodes,
        },
        metrics_step=iteration,
        params={"policy": policy.checkpoint, "temperature": temperature, "samples_per_task": samples},
        datasets=[DatasetInput(layout.expert_jsonl, f"{run.task}-expert", "instructions")],
        artifacts=[(out, "explore")],
        metadata={"path": out, "resume": stats.resume_note or "nothing to resume"},
    )
