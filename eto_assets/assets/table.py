"""The one stage table: every asset of a task's graph declared once, with what the Dagster assets,
their checks and versions, the MLflow records, the CLI's skipping and the sensor are derived from.

Dagster forbids cycles, so the ETO loop is unrolled into asset keys: iteration k explores with the
policy of iteration k-1, pairs against the expert, trains DPO from that policy (also the frozen
reference) and evaluates the result. This module is the only one that spells asset names.

Adding a stage costs one :class:`StageSpec` entry here plus its stage function; a method with
several stages adds one entry per stage (and a settings group if it has settings of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eto_assets import stages
from eto_assets.config.profile import Profile
from eto_assets.data.files import folder_identity
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import split_settings
from eto_assets.stages import checks
from eto_assets.stages.checks import CheckOutcome, CheckSpec
from eto_assets.stages.layout import BASE_ITERATION, ETO, ArtifactLayout
from eto_assets.stages.methods import ITERATED_METHODS, STARTS, STEP_METHODS, STEPAGENT_IRL
from eto_assets.stages.result import StageResult
from eto_assets.stages.task import TaskRun


@dataclass(frozen=True)
class StageTools:
    """What a stage may need besides its task run: the run's resources, and what the asset layer
    knows from Dagster's records (the wall time of each iteration's stages)."""

    base_model: str
    accelerate_config: str | None
    open_backend: Callable[[str], Any]
    envs: EnvironmentPool
    wall_seconds: Callable[[], Mapping[tuple[str, int], float]] = lambda: {}


@dataclass(frozen=True)
class VersionInputs:
    """The run settings besides the profile that shape outputs (the settings groups read them)."""

    base_model: str
    backend: str
    data_dir: str | None


StageFn = Callable[[TaskRun, StageTools], StageResult]
CheckFn = Callable[[TaskRun, StageTools], list[CheckOutcome]]
SettingsFn = Callable[[Profile, str, VersionInputs], object]


@dataclass(frozen=True)
class SettingsGroup:
    """A part of the settings that some stages' outputs depend on: observed as a source asset
    (``settings/<name>``) whose data version is the digest of ``value``, so Dagster marks the stages
    that read it unsynced when it changes. ``watched`` groups are the run's outside inputs (base
    model, expert data): the sensor reruns a task when one of them changes."""

    name: str
    value: SettingsFn
    description: str
    watched: bool = False

    @property
    def key(self) -> str:
        return f"settings/{self.name}"


@dataclass(frozen=True)
class StageSpec:
    """One asset: ``key`` (``prefix/name``), the ``stage`` it runs (MLflow run name and
    ``eto.stage`` tag, lock name) for ``iteration``; ``deps`` (stage keys) and ``settings`` (group
    names) are what its version depends on besides ``code_version`` (bump it when the stage's output
    changes for the same inputs); ``outputs`` are the files its data version digests (a
    ``policy.json`` among them also counts the checkpoint it names)."""

    key: str
    stage: str
    iteration: int
    group: str
    description: str
    run: StageFn
    outputs: Callable[[ArtifactLayout], list[Path]]
    deps: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset({"python", "mlflow"})
    checks: tuple[CheckSpec, ...] = ()
    check: CheckFn | None = None
    code_version: str = "1"
    produces_policy: bool = False  # its policy.json names the iteration's policy (a model version)
    parent_metrics: tuple[str, ...] = ()  # metric prefixes charted on the pipeline's parent run
    tag_parent: bool = False  # its tags also go on the pipeline's parent run
    preflight: bool = False  # check the settings before it runs (the first stage)
    skip: Callable[[Profile, str], str | None] | None = None  # why the profile leaves it out, if it does
    method: str = ETO  # whose folder and policies: ETO's (with the shared stages) or a baseline's

    @property
    def method_tag(self) -> str:
        """The ``eto.method`` of its MLflow runs: the method's name, ``sft`` and ``base`` for those
        rows of the tables, ``shared`` for the expert data and the report."""
        if self.method != ETO:
            return self.method
        if self.iteration > 0:
            return ETO
        return {0: "sft", BASE_ITERATION: "base"}[self.iteration] if self.key not in SHARED else "shared"

    def skipped(self, profile: Profile, task: str) -> str | None:
        """Why this asset is a no-op for ``task`` under ``profile`` (None: it runs): iterations past
        the profile's, or the stage's own rule."""
        runs = profile.iterations_for(task)
        if self.method in ITERATED and self.iteration > runs:
            return f"profile {profile.name!r} runs {runs} iteration(s) for {task}"
        return self.skip(profile, task) if self.skip is not None else None


def inactive_keys(table: list[StageSpec], profile: Profile, task: str) -> set[str]:
    """The assets ``profile`` leaves out for ``task`` (they materialize as no-ops and write nothing)."""
    return {spec.key for spec in table if spec.skipped(profile, task)}


# ------------------------------------------------------------------------------------ settings groups


def _section(profile: Profile, name: str) -> object:
    value = getattr(profile, name)
    return value.model_dump() if hasattr(value, "model_dump") else value


def _expert_settings(profile: Profile, task: str, inputs: VersionInputs) -> object:
    source = profile.expert.source
    return {
        "task": task,
        "scope": profile.scope(task).model_dump(),
        "expert": _section(profile, "expert"),
        "source": folder_identity(source) if source != "generated" else source,
        "prompt": _section(profile, "prompt"),
        "data_dir": str(Path(inputs.data_dir).expanduser().resolve()) if inputs.data_dir else None,
        **split_settings(task, profile.selection),  # WebShop's dev slice follows the selection rule
    }


def _base_model_settings(profile: Profile, task: str, inputs: VersionInputs) -> object:
    tiny = inputs.base_model == "tiny"
    return {
        "base_model": folder_identity(inputs.base_model),
        "tiny_model": _section(profile, "tiny_model") if tiny else None,
    }


def _rollout_settings(profile: Profile, task: str, inputs: VersionInputs) -> object:
    return {
        "rollout": _section(profile, "rollout"),
        "prompt": _section(profile, "prompt"),
        "backend": inputs.backend,
    }


def _iteration_settings(k: int) -> SettingsFn:
    return lambda profile, task, inputs: {
        "runs": k <= profile.iterations_for(task) and ETO in profile.methods
    }


# each method's own settings (the profile sections it reads), and whether it is selected
METHOD_SECTIONS: dict[str, tuple[str, ...]] = {
    "best_of_n": ("best_of_n",),
    "rft": ("rft",),
    "rl": ("rl",),
    "selfplay_eto": ("selfplay",),
    "selfplay_rft": ("selfplay",),
    "selfplay_rft_eto": ("selfplay",),
    "eto_step": ("step",),
    "eto_mixture": ("step",),
    "stepagent": ("stepagent",),
    "stepagent_irl": ("stepagent", "stepagent_irl", "rl"),
    "ipr": ("step", "ipr"),
}


def _method_settings(method: str) -> SettingsFn:
    def value(profile: Profile, task: str, inputs: VersionInputs) -> object:
        return {
            "selected": method in profile.methods,
            "settings": {name: _section(profile, name) for name in METHOD_SECTIONS[method]},
            "iterations": profile.iterations_for(task),
        }

    return value


def _method_skip(method: str) -> Callable[[Profile, str], str | None]:
    def skip(profile: Profile, task: str) -> str | None:
        if method in profile.methods:
            return None
        selected = ", ".join(profile.methods)
        return f"profile {profile.name!r} does not select method {method!r} (methods: {selected})"

    return skip


def _dpo_settings(k: int) -> SettingsFn:
    return lambda profile, task, inputs: profile.dpo_for(task, k).model_dump()


def settings_groups(n: int) -> list[SettingsGroup]:
    groups = [
        SettingsGroup(
            "expert",
            _expert_settings,
            "Where the expert data comes from, the task scope and the prompt "
            "layout (profile sections expert, prompt, tasks; the data folder).",
            watched=True,
        ),
        SettingsGroup(
            "base_model",
            _base_model_settings,
            "The base model folder (by its files) or the tiny model's "
            "shape (ETO_BASE_MODEL, profile section tiny_model).",
            watched=True,
        ),
        SettingsGroup(
            "sft", lambda p, t, i: _section(p, "sft"), "SFT hyper-parameters (profile section sft)."
        ),
        SettingsGroup(
            "rollout",
            _rollout_settings,
            "How exploration and evaluation play episodes (profile sections "
            "rollout and prompt; the inference backend).",
        ),
        SettingsGroup(
            "evaluate_base_model",
            lambda p, t, i: p.evaluate_base_model,
            "Whether the untrained base model is evaluated (profile setting evaluate_base_model).",
        ),
        SettingsGroup(
            "selection",
            lambda p, t, i: p.selection,
            "How the report chooses the champion (profile setting selection).",
        ),
    ]
    for method in METHOD_SECTIONS:
        groups.append(
            SettingsGroup(
                f"method_{method}",
                _method_settings(method),
                f"Whether the profile selects the {method} method (methods, or the CLI's --methods) and "
                f"its settings (profile sections {', '.join(METHOD_SECTIONS[method])}).",
            )
        )
    for k in range(1, n + 1):
        groups.append(
            SettingsGroup(
                f"iteration_{k}",
                _iteration_settings(k),
                f"Whether the profile runs ETO iteration {k} for the task "
                "(iterations, tasks.<task>.iterations).",
            )
        )
        groups.append(
            SettingsGroup(
                f"dpo_{k}",
                _dpo_settings(k),
                f"DPO hyper-parameters of iteration {k} "
                "(profile sections dpo and dpo_schedule, a task's dpo_beta).",
            )
        )
    return groups


# ------------------------------------------------------------------------------------ the stages

EXPERT = "expert_trajectories"
BASE_MODEL = "base_model/checkpoint"
BASE_EVAL = "base_model/eval_report"
SFT = "sft_checkpoint"
REPORT = "iteration_report"
SHARED = frozenset({EXPERT, REPORT})
ITERATED = ITERATED_METHODS


def policy_key(k: int) -> str:
    """The asset whose ``policy.json`` names the policy of iteration ``k`` (SFT for 0)."""
    return SFT if k == 0 else f"iteration_{k}/dpo_checkpoint"


def eval_key(k: int) -> str:
    return BASE_EVAL if k == BASE_ITERATION else f"iteration_{k}/eval_report"


def _policy_outputs(k: int) -> Callable[[ArtifactLayout], list[Path]]:
    return lambda layout: [layout.policy_json(k)]


def _eval_outputs(k: int) -> Callable[[ArtifactLayout], list[Path]]:
    return lambda layout: [layout.eval_report(k), *(layout.eval_jsonl(k, s) for s in stages.EVAL_SPLITS)]


def _skip_base_eval(profile: Profile, task: str) -> str | None:
    if profile.evaluate_base_model:
        return None
    return f"profile {profile.name!r} does not evaluate the base model (evaluate_base_model: false)"


# what an evaluation charts on the pipeline's parent run: the held-out numbers, not its bookkeeping
HELD_OUT_METRICS = ("eval_seen", "eval_unseen")
EVAL_CHECKS = (checks.COVERS_SPLITS, checks.VALID_ACTIONS, checks.NO_REGRESSION)
CHECKPOINT_CHECKS = (checks.CHECKPOINT_GENERATES,)


def eval_spec(k: int) -> StageSpec:
    return StageSpec(
        key=eval_key(k),
        stage="eval",
        iteration=k,
        group=f"iteration_{k}",
        description=f"Greedy evaluation of the iteration-{k} policy on the held-out seen/unseen splits.",
        run=lambda run, tools: stages.evaluate(run, k, tools.open_backend, tools.envs),
        outputs=_eval_outputs(k),
        deps=(policy_key(k), EXPERT),
        settings=("rollout",) if k == 0 else ("rollout", f"iteration_{k}"),
        checks=EVAL_CHECKS,
        check=lambda run, tools: checks.check_evaluation(run, k),
        parent_metrics=HELD_OUT_METRICS,
        skip=_method_skip(ETO) if k > 0 else None,
    )


def iteration_specs(k: int) -> list[StageSpec]:
    if k < 1:
        raise ValueError("ETO iterations are numbered from 1 (iteration 0 is SFT)")
    runs = f"iteration_{k}"
    explore = f"iteration_{k}/exploration_rollouts"
    pairs = f"iteration_{k}/preference_pairs"
    return [
        StageSpec(
            key=explore,
            stage="explore",
            iteration=k,
            group=f"iteration_{k}",
            description=f"The iteration-{k - 1} policy plays every training instruction (1-shot prompt); "
            "each finished episode is appended at once, so a rerun resumes.",
            run=lambda run, tools: stages.explore(run, k, tools.open_backend, tools.envs),
            outputs=lambda layout: [layout.rollouts_jsonl(k)],
            deps=(policy_key(k - 1), EXPERT),
            settings=("rollout", runs),
            checks=(checks.REWARDS_IN_RANGE, checks.NO_EMPTY, checks.VALID_ACTIONS),
            check=lambda run, tools: checks.check_exploration(run, k),
            skip=_method_skip(ETO),
        ),
        StageSpec(
            key=pairs,
            stage="pairs",
            iteration=k,
            group=f"iteration_{k}",
            description="Expert vs explored trajectory of the same instruction; higher reward chosen, ties "
            "dropped, a losing trajectory cut to the expert's length + 5 rounds (never for ALFWorld). Also "
            "exported in ETO's DPO JSON layout.",
            run=lambda run, tools: stages.make_pairs(run, k),
            outputs=lambda layout: [layout.pairs_jsonl(k)],
            deps=(explore, EXPERT),
            settings=(runs,),
            checks=(checks.PAIRS_ORDERED, checks.PAIRS_PRESENT),
            check=lambda run, tools: checks.check_pairs(run, k),
            skip=_method_skip(ETO),
        ),
        StageSpec(
            key=policy_key(k),
            stage="dpo",
            iteration=k,
            group=f"iteration_{k}",
            description=f"DPO on the iteration-{k} pairs from the iteration-{k - 1} policy, which is also "
            "the "
            "frozen reference; only action tokens count in the log-probabilities.",
            run=lambda run, tools: stages.train_dpo_policy(run, k, tools.accelerate_config),
            outputs=_policy_outputs(k),
            deps=(pairs, policy_key(k - 1)),
            settings=(runs, f"dpo_{k}"),
            kinds=frozenset({"pytorch", "mlflow"}),
            checks=CHECKPOINT_CHECKS,
            check=lambda run, tools: checks.check_checkpoint(run, k, tools.open_backend),
            produces_policy=True,
            skip=_method_skip(ETO),
        ),
        eval_spec(k),
    ]


# ------------------------------------------------------------------------------------ other methods


def method_policy_key(method: str, k: int) -> str:
    """The asset whose ``policy.json`` names ``method``'s policy of iteration ``k``; iteration 0 is
    the policy the method starts from (an asset of the shared graph or of another method)."""
    if k == 0:
        source, iteration = STARTS[method]
        if source == ETO:
            return BASE_MODEL if iteration == BASE_ITERATION else policy_key(iteration)
        return method_policy_key(source, iteration)
    if method in ITERATED:
        return f"{method}/iteration_{k}/dpo_checkpoint"
    return f"{method}/checkpoint"


def _on(method: str, fn: Callable[[TaskRun, StageTools], StageResult]) -> StageFn:
    """Run ``fn`` on ``method``'s folders."""
    return lambda run, tools: fn(run.for_method(method), tools)


def _started(
    fn: Callable[[TaskRun, StageTools], StageResult],
) -> Callable[[TaskRun, StageTools], StageResult]:
    """Record the method's start policy (iteration 0), then run ``fn``: the first stage of a method."""

    def run(run: TaskRun, tools: StageTools) -> StageResult:
        stages.start_policy(run)
        return fn(run, tools)

    return run


def _method_eval(method: str, k: int, *, best_of_n: bool = False) -> StageSpec:
    def evaluate(run: TaskRun, tools: StageTools) -> StageResult:
        options = {}
        if best_of_n:
            options = {"best_of": run.profile.best_of_n.n, "temperature": run.profile.best_of_n.temperature}
        result = stages.evaluate(run, k, tools.open_backend, tools.envs, **options)
        if k == 0:  # its policy is another stage's (Best-of-N samples SFT): leave that version's tags alone
            result.policy_tags = {}
        return result

    return StageSpec(
        key=f"{method}/iteration_{k}/eval_report" if method in ITERATED else f"{method}/eval_report",
        stage=f"{method}_eval",
        iteration=k,
        group=method,
        description=f"Evaluation of the {method} policy"
        + (f" of iteration {k}" if method in ITERATED else "")
        + " on the held-out seen/unseen splits"
        + (
            " (Best-of-N: N sampled episodes per task, the best reward counts)." if best_of_n else ", greedy."
        ),
        run=_on(method, _started(evaluate) if k == 0 else evaluate),
        outputs=lambda layout: [layout.for_method(method).eval_report(k)],
        deps=(method_policy_key(method, k), EXPERT),
        settings=("rollout", f"method_{method}"),
        checks=EVAL_CHECKS,
        check=lambda run, tools: checks.check_evaluation(run.for_method(method), k),
        parent_metrics=HELD_OUT_METRICS,
        skip=_method_skip(method),
        method=method,
    )


def _trained_policy_spec(
    method: str,
    k: int,
    *,
    stage: str,
    description: str,
    run: Callable[[TaskRun, StageTools], StageResult],
    deps: tuple[str, ...],
    settings: tuple[str, ...],
) -> StageSpec:
    """The asset of a policy ``method`` trains in iteration ``k`` (``run`` on its folders): its
    ``policy.json``, the checkpoint check, a registered model version."""
    return StageSpec(
        key=method_policy_key(method, k),
        stage=stage,
        iteration=k,
        group=method,
        description=description,
        run=_on(method, run),
        outputs=lambda layout: [layout.for_method(method).policy_json(k)],
        deps=deps,
        settings=settings,
        kinds=frozenset({"pytorch", "mlflow"}),
        checks=CHECKPOINT_CHECKS,
        check=lambda run, tools: checks.check_checkpoint(run.for_method(method), k, tools.open_backend),
        produces_policy=True,
        skip=_method_skip(method),
        method=method,
    )


def _explore_spec(
    method: str, k: int, key: str, samples: Callable[[Profile], tuple[int, float]], self_play: bool
) -> StageSpec:
    def explore(run: TaskRun, tools: StageTools) -> StageResult:
        n, temperature = samples(run.profile)
        return stages.explore(
            run,
            k,
            tools.open_backend,
            tools.envs,
            samples=n,
            temperature=temperature,
            with_expert_only=not self_play,
        )

    return StageSpec(
        key=key,
        stage=f"{method}_explore",
        iteration=k,
        group=method,
        description=f"The {method} policy of iteration {k - 1} samples episodes of every train task "
        + ("(no expert data needed) " if self_play else "that has an expert trajectory ")
        + "with per-episode seeds; each finished episode is appended at once, so a rerun resumes.",
        run=_on(method, _started(explore) if k == 1 else explore),
        outputs=lambda layout: [layout.for_method(method).rollouts_jsonl(k)],
        deps=(method_policy_key(method, k - 1), EXPERT),
        settings=("rollout", f"method_{method}"),
        checks=(checks.REWARDS_IN_RANGE, checks.NO_EMPTY, checks.VALID_ACTIONS),
        check=lambda run, tools: checks.check_exploration(run.for_method(method), k),
        skip=_method_skip(method),
        method=method,
    )


def _rft_specs(method: str) -> list[StageSpec]:
    self_play = method == "selfplay_rft"
    samples = f"{method}/samples"

    def sampling(profile: Profile) -> tuple[int, float]:
        section = profile.selfplay if self_play else profile.rft
        return section.samples_per_task, section.temperature

    return [
        _explore_spec(method, 1, samples, sampling, self_play),
        _trained_policy_spec(
            method,
            1,
            stage=f"{method}_sft",
            description=(
                "Self-play RFT: SFT of the base model on its own successful samples (no expert data)."
                if self_play
                else "RFT: SFT of the base model on the expert data plus the successful samples of the SFT "
                "policy (per task type counts in the metadata and tags)."
            ),
            run=lambda run, tools: stages.train_rft_policy(
                run, tools.base_model, tools.accelerate_config, with_experts=not self_play
            ),
            deps=(samples, EXPERT, BASE_MODEL),
            settings=("sft", f"method_{method}"),
        ),
        _method_eval(method, 1),
    ]


def _selfplay_eto_specs(method: str, k: int) -> list[StageSpec]:
    explore = f"{method}/iteration_{k}/exploration_rollouts"
    pairs = f"{method}/iteration_{k}/preference_pairs"
    return [
        _explore_spec(
            method, k, explore, lambda p: (p.selfplay.samples_per_task, p.selfplay.temperature), True
        ),
        StageSpec(
            key=pairs,
            stage=f"{method}_pairs",
            iteration=k,
            group=method,
            description="Self-play pairs: per train task, the best sampled episode against the worst, ties "
            "dropped (no expert).",
            run=_on(method, lambda run, tools: stages.make_selfplay_pairs(run, k)),
            outputs=lambda layout: [layout.for_method(method).pairs_jsonl(k)],
            deps=(explore,),
            settings=(f"method_{method}",),
            checks=(checks.PAIRS_ORDERED, checks.PAIRS_PRESENT),
            check=lambda run, tools: checks.check_pairs(run.for_method(method), k),
            skip=_method_skip(method),
            method=method,
        ),
        _dpo_spec(method, k, pairs, "the self-play pairs"),
        _method_eval(method, k),
    ]


def _dpo_spec(method: str, k: int, pairs: str, what: str, sft_weight: bool = False) -> StageSpec:
    """ETO's DPO stage on ``method``'s pairs of iteration ``k`` (``sft_weight``: with IPR's SFT loss)."""

    def train(run: TaskRun, tools: StageTools) -> StageResult:
        weight = run.profile.ipr.sft_weight if sft_weight else None
        return stages.train_dpo_policy(run, k, tools.accelerate_config, sft_weight=weight)

    return _trained_policy_spec(
        method,
        k,
        stage=f"{method}_dpo",
        description=f"DPO on {what} of iteration {k} from the iteration-{k - 1} policy, also the frozen "
        "reference; only action tokens count"
        + (", plus an SFT loss on the chosen side." if sft_weight else "."),
        run=train,
        deps=(pairs, method_policy_key(method, k - 1)),
        settings=(f"dpo_{k}", f"method_{method}"),
    )


STEP_PAIR_RULES = {
    "eto_step": "ETO's step-wise pairs: at each branch step the expert's action (valued by the expert's "
    "final reward) against the policy's (valued by the final reward of its play from there); higher "
    "chosen, ties and identical actions dropped",
    "eto_mixture": "ETO's mixture: its trajectory-level pairs (the policy's whole episode against the "
    "expert's) and its step-wise pairs in one set, each distinct pair once",
    "stepagent": "StepAgent's reflection pairs: the expert's action preferred to the policy's differing "
    "proposal at the same step",
    "ipr": "IPR's pairs: a step pair where the expert action's Monte-Carlo value beats the policy's by more "
    "than ipr.tau and the policy's play ended worse; a trajectory pair (expert's remaining turns against "
    "the policy's) wherever the policy's play ended worse",
}


def _step_method_specs(method: str, k: int) -> list[StageSpec]:
    """A step-level method's iteration ``k``: branches (or StepAgent's proposals), IPR's step values,
    pairs, DPO and evaluation."""
    root = f"{method}/iteration_{k}"
    proposals = method == "stepagent"
    first = f"{root}/step_proposals" if proposals else f"{root}/exploration_rollouts"
    previous = method_policy_key(method, k - 1)

    def play(run: TaskRun, tools: StageTools) -> StageResult:
        if proposals:
            return stages.propose_steps(run, k, tools.open_backend)
        return stages.explore_branches(run, k, tools.open_backend, tools.envs)

    table = [
        StageSpec(
            key=first,
            stage=f"{method}_proposals" if proposals else f"{method}_branches",
            iteration=k,
            group=method,
            description=(
                f"StepAgent's inspection: the iteration-{k - 1} policy proposes its turn at every step of "
                "each "
                "expert trajectory, reading the expert's prefix (no environment)."
                if proposals
                else f"The iteration-{k - 1} policy replays the first t-1 turns of each expert trajectory in "
                "the environment and plays on from step t (profile section step); each finished episode "
                "is appended at once, so a rerun resumes."
            ),
            run=_on(method, _started(play) if k == 1 else play),
            outputs=lambda layout: [layout.for_method(method).rollouts_jsonl(k)],
            deps=(previous, EXPERT),
            settings=("rollout", f"method_{method}"),
            checks=(checks.NO_EMPTY, checks.PROPOSALS_PARSE)
            if proposals
            else (checks.REWARDS_IN_RANGE, checks.NO_EMPTY, checks.VALID_ACTIONS),
            check=(
                (lambda run, tools: checks.check_proposals(run.for_method(method), k))
                if proposals
                else (lambda run, tools: checks.check_exploration(run.for_method(method), k))
            ),
            skip=_method_skip(method),
            method=method,
        )
    ]
    pair_deps: tuple[str, ...] = (first, EXPERT)
    if method == "ipr":
        values = f"{root}/step_values"
        table.append(
            StageSpec(
                key=values,
                stage="ipr_values",
                iteration=k,
                group=method,
                description="IPR's Monte-Carlo step values: where the policy's action at a branch differs "
                "from the expert's and its play ended worse, the frozen SFT policy samples ipr.mc_samples "
                "continuations after each of the two actions; a value is their mean final reward.",
                run=_on(
                    method, lambda run, tools: stages.value_steps(run, k, tools.open_backend, tools.envs)
                ),
                outputs=lambda layout: [layout.for_method(method).step_values_jsonl(k)],
                deps=(first, SFT, EXPERT),
                settings=("rollout", f"method_{method}"),
                checks=(checks.REWARDS_IN_RANGE,),
                check=lambda run, tools: checks.check_step_values(run.for_method(method), k),
                skip=_method_skip(method),
                method=method,
            )
        )
        pair_deps = (first, values, EXPERT)
    pairs = f"{root}/preference_pairs"
    table.append(
        StageSpec(
            key=pairs,
            stage=f"{method}_pairs",
            iteration=k,
            group=method,
            description=STEP_PAIR_RULES[method] + ". Also exported in ETO's DPO JSON layout.",
            run=_on(method, lambda run, tools: stages.make_step_pairs(run, k)),
            outputs=lambda layout: [layout.for_method(method).pairs_jsonl(k)],
            deps=pair_deps,
            settings=(f"method_{method}",),
            checks=(checks.PAIRS_ORDERED, checks.PAIRS_PRESENT),
            check=lambda run, tools: checks.check_pairs(run.for_method(method), k),
            skip=_method_skip(method),
            method=method,
        )
    )
    table.append(_dpo_spec(method, k, pairs, f"the {method} pairs", sft_weight=method == "ipr"))
    table.append(_method_eval(method, k))
    return table


def _rl_specs() -> list[StageSpec]:
    return [
        _trained_policy_spec(
            "rl",
            1,
            stage="rl_train",
            description="The paper's online RL baseline: GRPO (TRL's trainer, whole episodes in the real "
            "environment as its rollouts) from the SFT policy, KL to it as the reference; observations "
            "are masked out of the loss.",
            run=_started(lambda run, tools: stages.train_rl_policy(run, tools.envs)),
            deps=(SFT, EXPERT),
            settings=("rollout", "method_rl"),
        ),
        _method_eval("rl", 1),
    ]


def _stepagent_irl_specs() -> list[StageSpec]:
    """StepAgent's inverse-RL form, one round: the SFT policy's proposals, a discriminator of expert
    and policy turns, RL from SFT with the discriminator's reward, evaluation."""
    method = STEPAGENT_IRL
    proposals = f"{method}/step_proposals"
    discriminator = f"{method}/discriminator_checkpoint"
    return [
        StageSpec(
            key=proposals,
            stage=f"{method}_proposals",
            iteration=1,
            group=method,
            description="StepAgent's inspection with the SFT policy: its turn at every step of each expert "
            "trajectory, reading the expert's prefix (no environment).",
            run=_on(method, _started(lambda run, tools: stages.propose_steps(run, 1, tools.open_backend))),
            outputs=lambda layout: [layout.for_method(method).rollouts_jsonl(1)],
            deps=(SFT, EXPERT),
            settings=("rollout", f"method_{method}"),
            checks=(checks.NO_EMPTY, checks.PROPOSALS_PARSE),
            check=lambda run, tools: checks.check_proposals(run.for_method(method), 1),
            skip=_method_skip(method),
            method=method,
        ),
        StageSpec(
            key=discriminator,
            stage=f"{method}_discriminator",
            iteration=1,
            group=method,
            description="A discriminator (the SFT policy's weights with a score head, TRL's reward trainer) "
            "trained to score the expert's turn above the policy's differing proposal at the same step.",
            run=_on(method, lambda run, tools: stages.train_step_discriminator(run)),
            outputs=lambda layout: [layout.for_method(method).discriminator_json(1)],
            deps=(proposals, EXPERT),
            settings=("sft", f"method_{method}"),
            kinds=frozenset({"pytorch", "mlflow"}),
            checks=(checks.PAIRS_PRESENT,),
            check=lambda run, tools: checks.check_pairs(run.for_method(method), 1)[1:],
            skip=_method_skip(method),
            method=method,
        ),
        _trained_policy_spec(
            method,
            1,
            stage=f"{method}_rl",
            description="The RL baseline (GRPO from SFT, KL to it, observations masked) whose episodes also "
            "earn the discriminator's mean per-turn probability that the expert wrote each turn.",
            run=lambda run, tools: stages.train_rl_policy(
                run, tools.envs, discriminator=stages.discriminator_of(run)
            ),
            deps=(discriminator, SFT, EXPERT),
            settings=("rollout", f"method_{method}"),
        ),
        _method_eval(method, 1),
    ]


def method_specs(n: int) -> list[StageSpec]:
    """The baselines', self-play and step-level methods' assets, each a no-op unless the profile
    selects it."""
    table = [_method_eval("best_of_n", 0, best_of_n=True)]
    table.extend(_rft_specs("rft"))
    table.extend(_rl_specs())
    table.extend(_rft_specs("selfplay_rft"))
    for method in ("selfplay_eto", "selfplay_rft_eto"):
        for k in range(1, n + 1):
            table.extend(_selfplay_eto_specs(method, k))
    for method in STEP_METHODS:
        for k in range(1, n + 1):
            table.extend(_step_method_specs(method, k))
    table.extend(_stepagent_irl_specs())
    return table


def stage_table(n: int) -> list[StageSpec]:
    """Every asset of a graph with ``n`` unrolled ETO iterations, upstream first."""
    table = [
        StageSpec(
            key=EXPERT,
            stage="expert",
            iteration=0,
            group="expert",
            description="Expert trajectories (replayed through the real environment, failed replays "
            "dropped, or imported from an ETO-layout SFT file), ETO's splits, and the prompt book. "
            "Partitions: sciworld "
            "(needs Java 17; ETO's split lists from the data folder), alfworld (needs the ALFWorld games in "
            "the data folder, ETO_DATA_DIR), webshop (generated catalog; the upstream one from the data "
            "folder).",
            run=lambda run, tools: stages.generate_expert_data(run, tools.envs),
            outputs=lambda layout: [layout.expert_jsonl, layout.prompt_book, layout.splits_json],
            settings=("expert",),
            checks=(checks.EXPERT_REWARDS, checks.NO_EMPTY),
            check=lambda run, tools: checks.check_expert(run),
            preflight=True,
        ),
        StageSpec(
            key=BASE_MODEL,
            stage="base_model",
            iteration=BASE_ITERATION,
            group="base_model",
            description="The model SFT starts from: with base_model 'tiny' a small Llama whose tokenizer is "
            "trained on the expert data, else the user's Hugging Face folder, checked.",
            run=lambda run, tools: stages.build_base_model(run, tools.base_model),
            outputs=_policy_outputs(BASE_ITERATION),
            deps=(EXPERT,),
            settings=("base_model",),
            kinds=frozenset({"pytorch", "mlflow"}),
        ),
        StageSpec(
            key=SFT,
            stage="sft",
            iteration=0,
            group="iteration_0",
            description="SFT (behavioural cloning) of the base model on the expert trajectories, loss on "
            "agent "
            "turns only.",
            run=lambda run, tools: stages.train_sft_policy(run, tools.base_model, tools.accelerate_config),
            outputs=_policy_outputs(0),
            deps=(EXPERT, BASE_MODEL),
            settings=("sft",),
            kinds=frozenset({"pytorch", "mlflow"}),
            checks=CHECKPOINT_CHECKS,
            check=lambda run, tools: checks.check_checkpoint(run, 0, tools.open_backend),
            produces_policy=True,
        ),
        StageSpec(
            key=BASE_EVAL,
            stage="eval",
            iteration=BASE_ITERATION,
            group="base_model",
            description="Greedy evaluation of the untrained base model on the same held-out tasks and "
            "prompts "
            "(profile setting evaluate_base_model; a no-op otherwise): the baseline for SFT and ETO.",
            run=lambda run, tools: stages.evaluate_base_model(
                run, tools.base_model, tools.open_backend, tools.envs
            ),
            outputs=_eval_outputs(BASE_ITERATION),
            deps=(BASE_MODEL, EXPERT),
            settings=("rollout", "evaluate_base_model"),
            checks=EVAL_CHECKS,
            check=lambda run, tools: checks.check_evaluation(run, BASE_ITERATION),
            parent_metrics=HELD_OUT_METRICS,
            skip=_skip_base_eval,
        ),
        eval_spec(0),
    ]
    for k in range(1, n + 1):
        table.extend(iteration_specs(k))
    methods = method_specs(n)
    table.extend(methods)
    table.append(
        StageSpec(
            key=REPORT,
            stage="report",
            iteration=0,
            group="report",
            description="Every policy side by side (the base model where evaluated, held-out reward and "
            "success "
            "per split, steps, pairs, training loss, wall time) as Markdown and CSV, the champion "
            "marked (by the profile's selection rule) and given the registered model's 'champion' alias, "
            "with plots: "
            "reward by iteration, the efficiency curve and explored rewards with pair counts.",
            run=lambda run, tools: stages.report_iterations(
                run.layout, n, tools.wall_seconds(), run.profile.selection, run.profile.methods
            ),
            outputs=lambda layout: [layout.summary_md, layout.report_csv],
            deps=(
                BASE_EVAL,
                *(eval_key(k) for k in range(n + 1)),
                *(m.key for m in methods if m.stage.endswith("_eval")),
            ),
            settings=("selection", *(f"method_{m}" for m in METHOD_SECTIONS)),
            tag_parent=True,
        )
    )
    return table


def by_key(table: list[StageSpec]) -> dict[str, StageSpec]:
    return {spec.key: spec for spec in table}
