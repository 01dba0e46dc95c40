"""The paper's baselines and self-play methods as stages beside ETO's, on the same functions.

Each method keeps its iterations in its own folder (``ArtifactLayout.for_method``) and starts from
a policy of the shared graph, recorded as its iteration 0 (``start_policy``): Best-of-N, RFT and RL
from SFT, ``selfplay_eto`` and ``selfplay_rft`` from the untrained base model, ``selfplay_rft_eto``
from ``selfplay_rft``'s policy, the step-level methods (:mod:`eto_assets.stages.step_methods`) from
SFT. Sampling reuses the rollout engine (``explore`` with per-episode
seeds), ETO's DPO and evaluation stages run unchanged on a method's folder, and RFT's SFT is the
project's SFT on another dataset.
"""

from __future__ import annotations

from pathlib import Path

from eto_assets.agent.prompt import PromptBook
from eto_assets.data.baselines import per_type_counts, rft_additions, selfplay_pairs
from eto_assets.data.pairs import truncates_rejected
from eto_assets.data.schemas import read_trajectories, write_jsonl
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.sciworld import golden_form
from eto_assets.stages.layout import BASE_ITERATION, ETO, MULTITASK
from eto_assets.stages.pairs import write_pairs
from eto_assets.stages.policy import PolicyRecord
from eto_assets.stages.result import DatasetInput, StageResult
from eto_assets.stages.sft import built_base_model
from eto_assets.stages.task import TaskRun
from eto_assets.training.launch import plan_training, train

# The methods with ETO's unrolled iterations (explore, pair, DPO, evaluate); the others run one round.
STEP_METHODS = ("eto_step", "eto_mixture", "stepagent", "ipr")  # pairs from steps (see step_methods)
STEPAGENT_IRL = "stepagent_irl"  # proposals, a discriminator, then RL with its reward (one round)
ITERATED_METHODS = (ETO, "selfplay_eto", "selfplay_rft_eto", *STEP_METHODS, MULTITASK)

# Where each method starts: (the method whose policy it starts from, that policy's iteration).
STARTS: dict[str, tuple[str, int]] = {
    "best_of_n": (ETO, 0),
    "rft": (ETO, 0),
    "rl": (ETO, 0),
    "selfplay_eto": (ETO, BASE_ITERATION),
    "selfplay_rft": (ETO, BASE_ITERATION),
    "selfplay_rft_eto": ("selfplay_rft", 1),
    **{method: (ETO, 0) for method in (*STEP_METHODS, STEPAGENT_IRL)},
}


def start_policy(run: TaskRun) -> PolicyRecord:
    """Record, as iteration 0 of ``run``'s method, the policy the method starts from."""
    method, iteration = STARTS[run.layout.method]
    source = PolicyRecord.read(run.layout.for_method(method), iteration)
    start = PolicyRecord(source.checkpoint)
    start.write(run.layout, 0)
    return start


def train_rft_policy(
    run: TaskRun, base_model: str, accelerate_config: str | None = None, *, with_experts: bool = True
) -> StageResult:
    """SFT from the base model on the expert data plus the kept samples of iteration 1 (RFT), or on
    the kept samples alone (self-play RFT, ``with_experts`` False). With nothing to train on, the
    start policy carries over, as DPO does without pairs."""
    layout = run.layout
    experts = read_trajectories(layout.expert_jsonl)
    samples = read_trajectories(layout.rollouts_jsonl(1))
    keep = run.profile.rft.keep if with_experts else "success"
    kept, stats = rft_additions(samples, experts if with_experts else (), keep)
    data = [*experts, *kept] if with_experts else kept
    metrics = {
        "rft_sampled": stats.sampled,
        "rft_kept": stats.kept,
        "rft_duplicates": stats.duplicates,
        "rft_train_records": len(data),
    }
    tags = {f"eto.rft_kept.{task_type}": str(n) for task_type, n in stats.kept_per_type.items()}
    datasets = [DatasetInput(layout.rollouts_jsonl(1), f"{run.task}-{layout.method}-samples", "sampled")]
    if not data:
        carried = PolicyRecord(PolicyRecord.read(layout, 0).checkpoint, carried_over_from=0)
        carried.write(layout, 1)
        return StageResult(
            metrics=metrics,
            metrics_step=1,
            tags={**tags, "eto.rft_skipped": "no successful sample"},
            datasets=datasets,
            policy=carried,
            metadata={"kept": 0, "carried_over": carried.checkpoint},
            warnings=[f"{run.task} {layout.method}: no sampled episode succeeded; keeping the start policy"],
        )
    train_data = layout.training_data_jsonl(1)
    write_jsonl(train_data, data)
    base = built_base_model(run, base_model)
    spec = plan_training(
        "sft", str(base), str(train_data), str(layout.prompt_book), layout.checkpoints_dir(1), run.profile.sft
    )
    result = train(spec, accelerate_config)
    policy = PolicyRecord(spec.output_dir)
    policy.write(layout, 1)
    return StageResult(
        metrics={**metrics, **{f"sft_{k}": v for k, v in result.metrics.items()}},
        metrics_step=1,
        params={"base_model_path": str(base), "keep": keep, "with_experts": with_experts},
        tags=tags,
        datasets=[*datasets, DatasetInput(train_data, f"{run.task}-{layout.method}-train", "train")],
        history=result.log_history,
        history_prefix="sft",
        policy=policy,
        register_policy=True,
        metadata={
            "kept_per_type": dict(per_type_counts(kept)),
            "train_records": len(data),
            "train_loss": result.metrics.get("train_loss", float("nan")),
            "path": Path(spec.output_dir),
        },
    )


def make_selfplay_pairs(run: TaskRun, iteration: int) -> StageResult:
    """Per train task, its best sampled episode of ``iteration`` against its worst (ties dropped)."""
    layout = run.layout
    samples = [golden_form(t) for t in read_trajectories(layout.rollouts_jsonl(iteration))]
    pairs, stats = selfplay_pairs(samples, truncates_rejected(run.task))
    out, eto_json = write_pairs(layout, iteration, pairs)
    return StageResult(
        metrics={"pairs_count": stats.pairs, "pairs_dropped_ties": stats.dropped_ties},
        metrics_step=iteration,
        datasets=[
            DatasetInput(
                layout.rollouts_jsonl(iteration), f"{run.task}-{layout.method}-it{iteration}", "sampled"
            )
        ],
        artifacts=[(out, "pairs"), (eto_json, "pairs")],
        metadata={"path": out},
    )


def train_rl_policy(run: TaskRun, envs: EnvironmentPool, *, discriminator: str | None = None) -> StageResult:
    """The paper's online RL baseline: GRPO (TRL) from the start policy (SFT), which is also the KL
    reference, on whole episodes of the train tasks played in the real environment; observations are
    masked out of the loss. It trains in this process (``accelerate`` is not wired for it). With a
    ``discriminator`` folder (StepAgent's inverse-RL form) each episode also earns its mean
    per-turn discriminator reward, weighted by ``stepagent_irl.step_reward_weight``."""
    layout = run.layout
    start = PolicyRecord.read(layout, 0)
    book = PromptBook.read(layout.prompt_book)
    tasks = run.tasks("train")
    params = run.profile.rl
    # the output folder is named by what it trains (the policy, the task list, the prompts, the
    # discriminator) and how
    spec = plan_training(
        "rl",
        start.checkpoint,
        str(layout.splits_json),
        str(layout.prompt_book),
        layout.checkpoints_dir(1),
        params,
        also=(discriminator,) if discriminator else (),
    )
    make_env, release_env = envs.for_rollouts(run.benchmark)
    from eto_assets.training.rl import train_rl  # TRL's GRPO: imported only where it runs

    scoring = {}
    if discriminator:
        from eto_assets.training.discriminator import StepDiscriminator

        weight = run.profile.stepagent_irl.step_reward_weight
        scoring = {
            "step_scorer": StepDiscriminator.load(discriminator, book),
            "reward_weights": (1.0, weight),
        }
    result = train_rl(
        start.checkpoint,
        tasks,
        make_env,
        book,
        Path(spec.output_dir),
        params,
        release_env=release_env,
        **scoring,
    )
    policy = PolicyRecord(spec.output_dir)
    policy.write(layout, 1)
    return StageResult(
        metrics={f"rl_{k}": v for k, v in result.metrics.items()},
        metrics_step=1,
        params={
            "reference": start.checkpoint,
            "rl.beta": params.beta,
            "rl.num_generations": params.num_generations,
            **({"discriminator": discriminator} if discriminator else {}),
        },
        datasets=[DatasetInput(layout.splits_json, f"{run.task}-splits", "train tasks")],
        history=result.log_history,
        history_prefix="rl",
        policy=policy,
        register_policy=True,
        metadata={
            "train_loss": result.metrics.get("train_loss", float("nan")),
            "tasks": len(tasks),
            "path": Path(spec.output_dir),
        },
    )
