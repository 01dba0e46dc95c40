"""The step-level methods as stages: ETO's step-wise and mixture variants, StepAgent and IPR.

Each is iterated like ETO (``<method>/iteration_k``, starting from the SFT policy) and ends in
ETO's DPO and evaluation stages, run unchanged on the method's folder. What differs is where the
pairs come from (rules in :mod:`eto_assets.data.step_pairs`):

* ``explore_branches`` (``eto_step``, ``eto_mixture``, ``ipr``): the policy of iteration k-1
  replays an expert's first t-1 turns in the real environment and plays on from step t, for the
  steps the profile's ``step`` section picks, all through the rollout engine in one batch;
* ``propose_steps`` (``stepagent``): the policy's turn at every step of the expert's own prefix, one
  batched generation per step position, no environment;
* ``value_steps`` (``ipr``): Monte-Carlo values of the expert's and the policy's action at each
  branch, from continuations sampled by the frozen SFT policy.

``stepagent_irl`` runs one round instead: the SFT policy's proposals, a discriminator trained on
the step pairs they give (``train_step_discriminator``), then the RL baseline with the
discriminator's per-turn reward beside the environment's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from eto_assets.agent.backends import GenerationConfig, InferenceBackend
from eto_assets.agent.prompt import PromptBook, build_conversation
from eto_assets.agent.rollout import (
    EpisodeStart,
    RolloutStats,
    load_finished,
    rollout_fingerprint,
    run_rollouts,
    seed_for,
)
from eto_assets.data.files import atomic_write_json, folder_identity
from eto_assets.data.pairs import truncates_rejected
from eto_assets.data.schemas import Message, PreferencePair, Trajectory, read_trajectories, write_jsonl
from eto_assets.data.step_pairs import (
    AGENT_SIDE,
    EXPERT_SIDE,
    StepPairStats,
    agent_turns,
    branch_step,
    branch_steps,
    branch_trajectory_pairs,
    eto_step_pairs,
    forced_prefix,
    ipr_candidate,
    ipr_pairs,
    same_action,
    step_values,
    stepagent_pairs,
    union_pairs,
    value_branch,
)
from eto_assets.envs.base import TaskInstance
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.sciworld import golden_form, played_task_turn
from eto_assets.stages.evaluate import summarize
from eto_assets.stages.pairs import write_pairs
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.task import TaskRun
from eto_assets.training.launch import plan_training

OpenBackend = Callable[[str], InferenceBackend]
# the methods whose pairs come from branches played in the environment, and their DPO's extra loss
BRANCHING = ("eto_step", "eto_mixture", "ipr")


def _experts_with_tasks(run: TaskRun) -> list[tuple[Trajectory, TaskInstance]]:
    """The expert trajectories of the run's train tasks, each with its task instance."""
    tasks = {t.task_id: t for t in run.tasks("train")}
    experts = read_trajectories(run.layout.expert_jsonl)
    return [(e, tasks[e.task_id]) for e in experts if e.task_id in tasks and agent_turns(e)]


def _play(
    run: TaskRun,
    policy: str,
    starts: Sequence[EpisodeStart],
    out: Path,
    open_backend: OpenBackend,
    envs: EnvironmentPool,
    temperature: float,
    desc: str,
    siblings: Sequence[Path] = (),
) -> tuple[list[Trajectory], RolloutStats]:
    """Play ``starts`` with ``policy`` into ``out`` (resumable: the fingerprint names the policy,
    the settings, the prompts and the expert data the prefixes come from), taking the episodes
    already played into ``siblings`` with the same fingerprint."""
    layout = run.layout
    config = run.profile.rollout
    fingerprint = rollout_fingerprint(
        policy,
        config,
        temperature=temperature,
        max_steps=run.scope.max_steps_cap,
        extra=layout.prompt_book.read_text() + folder_identity(layout.expert_jsonl),
    )
    reused = _reuse_played(out, siblings, fingerprint)
    make_env, release_env = envs.for_rollouts(run.benchmark)
    stats = RolloutStats()
    backend = open_backend(policy)
    try:
        played = run_rollouts(
            [],
            make_env,
            backend,
            PromptBook.read(layout.prompt_book),
            out,
            config,
            temperature=temperature,
            desc=desc,
            stats=stats,
            release_env=release_env,
            fingerprint=fingerprint,
            starts=starts,
        )
    finally:
        backend.close()
    stats.resume_note = (
        f"{stats.resume_note}; {reused} episodes taken from another method" if reused else stats.resume_note
    )
    return played, stats


def _reuse_played(out: Path, others: Sequence[Path], fingerprint: str) -> int:
    """Start ``out`` with the episodes another method already played with the same fingerprint
    (the same policy, settings and prefixes: ``eto_step``, ``eto_mixture`` and ``ipr`` all branch
    from SFT in iteration 1), so the rollout engine resumes them instead of playing them again."""
    finished = load_finished(out, fingerprint)
    taken = 0
    for other in others:
        if other == out or not other.is_file():
            continue
        for key, record in load_finished(other, fingerprint).items():
            if key not in finished:
                finished[key] = record
                taken += 1
    if taken:
        write_jsonl(out, finished.values())
    return taken


def _rollout_metrics(prefix: str, played: Sequence[Trajectory], stats: RolloutStats) -> dict[str, float]:
    summary = summarize(played)
    return {
        f"{prefix}_episodes": summary.episodes,
        f"{prefix}_avg_reward": summary.avg_reward,
        f"{prefix}_played": stats.episodes,
        f"{prefix}_resumed": stats.resumed,
        f"{prefix}_failed": stats.failed,
        f"{prefix}_env_restarts": stats.env_faults,
        f"{prefix}_model_seconds": stats.model_seconds,
        f"{prefix}_wall_seconds": stats.wall_seconds,
    }


def explore_branches(
    run: TaskRun, iteration: int, open_backend: OpenBackend, envs: EnvironmentPool
) -> StageResult:
    """The policy of iteration ``iteration - 1`` plays on from the chosen steps of every expert
    trajectory of a train task (step 1: its whole episode), the prefix replayed in the environment."""
    layout = run.layout
    policy = PolicyRecord.read(layout, iteration - 1)
    section = run.profile.step
    starts = [
        EpisodeStart(task, forced=forced_prefix(expert, step), branch=f"step{step}")
        for expert, task in _experts_with_tasks(run)
        for step in branch_steps(expert, section.steps_per_trajectory, run.profile.rollout.seed)
        if step <= task.max_steps  # the policy gets at least one turn within the task's step cap
    ]
    out = layout.rollouts_jsonl(iteration)
    played, stats = _play(
        run,
        policy.checkpoint,
        starts,
        out,
        open_backend,
        envs,
        section.temperature,
        f"{layout.method} branches it{iteration}",
        siblings=[layout.for_method(m).rollouts_jsonl(iteration) for m in BRANCHING],
    )
    return StageResult(
        metrics=_rollout_metrics("branch", played, stats),
        metrics_step=iteration,
        params={"policy": policy.checkpoint, "temperature": section.temperature},
        datasets=[DatasetInput(layout.expert_jsonl, f"{run.task}-expert", "prefixes")],
        artifacts=[(out, "explore")],
        metadata={"path": out, "episodes": len(played), "resume": stats.resume_note or "nothing to resume"},
    )


def propose_steps(run: TaskRun, iteration: int, open_backend: OpenBackend) -> StageResult:
    """StepAgent's inspection: the policy of iteration ``iteration - 1`` proposes its turn at every
    step of each expert trajectory, reading the expert's own prefix (no environment). Prompts are
    sent one step position at a time over all trajectories, each trajectory as one session, so the
    backend extends its cached prefix instead of reading it again."""
    layout = run.layout
    policy = PolicyRecord.read(layout, iteration - 1)
    book = PromptBook.read(layout.prompt_book)
    experts = [golden_form(e) for e, _ in _experts_with_tasks(run)]
    rollout = run.profile.rollout
    config = GenerationConfig(rollout.max_new_tokens, run.profile.stepagent.temperature, rollout.seed)
    proposals: list[Trajectory] = []
    no_fit = 0
    longest = max((len(agent_turns(e)) for e in experts), default=0)
    backend = open_backend(policy.checkpoint)
    try:
        with tqdm(
            total=sum(len(agent_turns(e)) for e in experts), desc=f"{layout.method} proposals it{iteration}"
        ) as bar:
            for step in range(1, longest + 1):
                batch = [e for e in experts if len(agent_turns(e)) >= step]
                prefixes = [_as_played(run.task, e.messages[: 1 + 2 * (step - 1)]) for e in batch]
                answers = backend.generate(
                    [build_conversation(book, e.task_type, p) for e, p in zip(batch, prefixes, strict=True)],
                    config,
                    seeds=[seed_for(rollout.seed, e.task_id, step) for e in batch],
                    sessions=[e.task_id for e in batch],
                )
                for expert, prefix, answer in zip(batch, prefixes, answers, strict=True):
                    if answer is None:
                        no_fit += 1
                        continue
                    proposals.append(_proposal(expert, prefix, answer.strip(), step))
                bar.update(len(batch))
    finally:
        backend.close()
    out = layout.rollouts_jsonl(iteration)
    write_jsonl(out, proposals)
    expert_turns = {e.task_id: agent_turns(e) for e in experts}
    differing = sum(
        not same_action(p.messages[-1].content, expert_turns[p.task_id][branch_step(p) - 1])
        for p in proposals
    )
    return StageResult(
        metrics={
            "proposals": len(proposals),
            "proposals_differing": differing,
            "proposals_not_fitting": no_fit,
        },
        metrics_step=iteration,
        params={"policy": policy.checkpoint, "temperature": config.temperature},
        datasets=[DatasetInput(layout.expert_jsonl, f"{run.task}-expert", "prefixes")],
        artifacts=[(out, "explore")],
        metadata={"path": out, "proposals": len(proposals), "differing": differing},
    )


def _as_played(task: str, prefix: Sequence[Message]) -> list[Message]:
    """An expert prefix as the policy reads it while playing: ScienceWorld's task turn carries the
    "Task Description:" its environment shows (the records, like ETO's, are stored without it)."""
    if task != "sciworld":
        return list(prefix)
    return [Message("user", played_task_turn(prefix[0].content)), *prefix[1:]]


def _proposal(expert: Trajectory, prefix: list[Message], answer: str, step: int) -> Trajectory:
    """A proposal in a rollout record's form: the expert's prefix, then the policy's turn."""
    return Trajectory(
        task_id=expert.task_id,
        task_type=expert.task_type,
        split=expert.split,
        messages=[*prefix, Message("assistant", answer)],
        reward=0.0,
        success=False,
        source="agent",
        metadata={"forced_steps": step - 1, "branch": f"step{step}", "ended_by": "proposal", "steps": step},
    )


def value_steps(
    run: TaskRun, iteration: int, open_backend: OpenBackend, envs: EnvironmentPool
) -> StageResult:
    """IPR's step values: at each branch of iteration ``iteration`` that can give a pair (the policy
    took another action than the expert and its episode ended worse), ``ipr.mc_samples``
    continuations after the expert's action and after the policy's, sampled by the frozen scorer
    (the SFT policy, this method's iteration 0); a value is their mean final reward."""
    layout = run.layout
    scorer = PolicyRecord.read(layout, 0)
    section = run.profile.ipr
    experts, tasks = {}, {}
    for expert, task in _experts_with_tasks(run):
        experts[expert.task_id], tasks[expert.task_id] = golden_form(expert), task
    starts: list[EpisodeStart] = []
    for branch in read_trajectories(layout.rollouts_jsonl(iteration)):
        found = ipr_candidate(branch, experts, StepPairStats())  # the pair builder's own rule
        if found is None:
            continue
        _, _, expert_turn, policy_turn = found
        step = branch_step(branch)
        turns = agent_turns(experts[branch.task_id])
        for side, forced in (
            (EXPERT_SIDE, (*turns[: step - 1], expert_turn)),
            (AGENT_SIDE, (*turns[: step - 1], policy_turn)),
        ):
            starts.extend(
                EpisodeStart(tasks[branch.task_id], s, forced, value_branch(step, side))
                for s in range(section.mc_samples)
            )
    out = layout.step_values_jsonl(iteration)
    played, stats = _play(
        run,
        scorer.checkpoint,
        starts,
        out,
        open_backend,
        envs,
        section.mc_temperature,
        f"ipr values it{iteration}",
    )
    values = step_values(played)
    return StageResult(
        metrics={**_rollout_metrics("mc", played, stats), "mc_valued_actions": len(values)},
        metrics_step=iteration,
        params={
            "scorer": scorer.checkpoint,
            "mc_samples": section.mc_samples,
            "mc_temperature": section.mc_temperature,
        },
        datasets=[
            DatasetInput(
                layout.rollouts_jsonl(iteration), f"{run.task}-{layout.method}-it{iteration}", "branches"
            )
        ],
        artifacts=[(out, "explore")],
        metadata={"path": out, "episodes": len(played), "valued_actions": len(values)},
    )


def make_step_pairs(run: TaskRun, iteration: int) -> StageResult:
    """The pairs of ``run``'s step-level method for iteration ``iteration`` (rules in
    :mod:`eto_assets.data.step_pairs`), written like ETO's so its DPO stage reads them unchanged."""
    layout = run.layout
    method = layout.method
    experts = [golden_form(t) for t in read_trajectories(layout.expert_jsonl)]
    records = [golden_form(t) for t in read_trajectories(layout.rollouts_jsonl(iteration))]
    records.sort(key=lambda t: (t.task_id, branch_step(t)))  # the same data order however they finished
    truncate = truncates_rejected(run.task)
    metrics: dict[str, float] = {}
    pairs: list[PreferencePair]
    if method == "stepagent":
        pairs, stats = stepagent_pairs(experts, records)
    elif method == "eto_step":
        pairs, stats = eto_step_pairs(experts, records)
    elif method == "eto_mixture":
        step_level, stats = eto_step_pairs(experts, records)
        trajectory_level = branch_trajectory_pairs(experts, records, truncate)
        pairs, duplicates = union_pairs(trajectory_level, step_level)
        metrics = {"pairs_trajectory_level": len(trajectory_level), "pairs_duplicates": duplicates}
    elif method == "ipr":
        values = step_values(read_trajectories(layout.step_values_jsonl(iteration)))
        step_level, trajectory_level, stats = ipr_pairs(
            experts, records, values, run.profile.ipr.tau[run.task], truncate
        )
        pairs, duplicates = union_pairs(trajectory_level, step_level)
        metrics = {"pairs_trajectory_level": len(trajectory_level), "pairs_duplicates": duplicates}
    else:
        raise ValueError(f"no step-level pairs for method {method!r}")
    out, eto_json = write_pairs(layout, iteration, pairs)
    return StageResult(
        metrics={
            "pairs_count": len(pairs),
            "pairs_step_level": stats.pairs,
            **_stats_metrics(stats),
            **metrics,
        },
        metrics_step=iteration,
        datasets=[
            DatasetInput(layout.expert_jsonl, f"{run.task}-expert", "expert"),
            DatasetInput(layout.rollouts_jsonl(iteration), f"{run.task}-{method}-it{iteration}", "branches"),
        ],
        artifacts=[(out, "pairs"), (eto_json, "pairs")],
        metadata={"path": out, "pairs": len(pairs)},
    )


def _stats_metrics(stats: StepPairStats) -> dict[str, float]:
    return {k: v for k, v in stats.metrics().items() if k != "step_pairs_pairs"}


def train_step_discriminator(run: TaskRun) -> StageResult:
    """StepAgent's inverse-RL form, its reward model: step pairs from the start policy's proposals
    (the expert's turn against a differing proposal) train a discriminator from the start policy's
    weights (TRL's reward trainer, the ``sft`` section's settings with ``stepagent_irl``'s learning
    rate and epochs). Without a pair there is nothing to discriminate: the RL stage then trains on
    the environment's reward alone, and says so."""
    layout = run.layout
    experts = [golden_form(t) for t in read_trajectories(layout.expert_jsonl)]
    pairs, stats = stepagent_pairs(experts, read_trajectories(layout.rollouts_jsonl(1)))
    out = layout.pairs_jsonl(1)
    write_jsonl(out, pairs)
    metrics: dict[str, float] = {"pairs_count": len(pairs), **_stats_metrics(stats)}
    datasets = [DatasetInput(out, f"{run.task}-{layout.method}-pairs", "train")]
    if not pairs:
        atomic_write_json(layout.discriminator_json(1), {"discriminator": None, "reason": "no step pair"})
        return StageResult(
            metrics=metrics,
            metrics_step=1,
            tags={"eto.discriminator_skipped": "no step pair"},
            datasets=datasets,
            metadata={"pairs": 0},
            warnings=[
                f"{run.task} {layout.method}: every proposal matched the expert; RL gets no step reward"
            ],
        )
    start = PolicyRecord.read(layout, 0)
    section = run.profile.stepagent_irl
    params = run.profile.sft.model_copy(
        update={
            "learning_rate": section.discriminator_learning_rate,
            "num_train_epochs": section.discriminator_epochs,
        }
    )
    spec = plan_training(
        "discriminator",
        start.checkpoint,
        str(out),
        str(layout.prompt_book),
        layout.iteration_dir(1) / "discriminators",
        params,
    )
    from eto_assets.training.discriminator import StepDiscriminator, train_discriminator

    book = PromptBook.read(layout.prompt_book)
    result = train_discriminator(start.checkpoint, pairs, book, Path(spec.output_dir), params)
    scored = StepDiscriminator.load(spec.output_dir, book).score_pairs(pairs)
    accuracy = sum(expert > policy for expert, policy in scored) / len(scored)
    atomic_write_json(layout.discriminator_json(1), {"discriminator": spec.output_dir})
    return StageResult(
        metrics={
            **metrics,
            **{f"discriminator_{k}": v for k, v in result.metrics.items()},
            "discriminator_pair_accuracy": accuracy,
        },
        metrics_step=1,
        params={
            "base": start.checkpoint,
            "learning_rate": params.learning_rate,
            "epochs": params.num_train_epochs,
        },
        datasets=datasets,
        history=result.log_history,
        history_prefix="discriminator",
        metadata={"pairs": len(pairs), "pair_accuracy": accuracy, "path": Path(spec.output_dir)},
    )


def discriminator_of(run: TaskRun) -> str | None:
    """The discriminator folder the method's RL reads (None: none was trained)."""
    return json.loads(run.layout.discriminator_json(1).read_text())["discriminator"]
