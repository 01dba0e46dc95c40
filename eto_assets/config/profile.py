"""Profiles (``configs/<name>.yaml``): how big a run is and how it trains.

``micro`` is the smoke test (minutes on a laptop), ``tiny`` the CPU demo, ``small`` SmolLM2 on a
CPU, ``paper`` the paper's hyper-parameters for a real model on GPUs. A profile is validated once
when loaded; a bad value raises :class:`ProfileError` naming the file and the field. Every field
says what it does in its ``description`` (read by ``Profile.model_json_schema()`` and rendered into
``docs/profile.md`` by :mod:`eto_assets.config.profile_doc`), and a closed set of choices is a
``Literal``, so pydantic refuses anything else when the file is loaded, not hours later. Within the
project it imports only ``config.training`` (the SFT/DPO sections), and nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from eto_assets.config.training import RENAMED_FIELDS, DPOTrainConfig, RLTrainConfig, TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TaskName = Literal["sciworld", "alfworld", "webshop"]
TASKS: tuple[str, ...] = get_args(TaskName)
ModelKind = Literal["tiny", "pretrained"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)


class ProfileError(ValueError):
    """A profile file is missing or holds an invalid value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskScope(_Strict):
    """Which part of a benchmark a run uses (None = all of it)."""

    task_types: list[str] | None = Field(
        default=None,
        description="task types to train and evaluate on, as the benchmark names them (e.g. ScienceWorld's "
        "`find-animal`, ALFWorld's `put`); None: every type, as in ETO",
    )
    train_per_type: int | None = Field(
        default=None,
        ge=1,
        description="train tasks kept per task type, the first N in ETO's split order (so a larger N "
        "keeps the smaller one's tasks); None: all, as in ETO",
    )
    eval_per_type: int | None = Field(
        default=None,
        ge=1,
        description="held-out tasks kept per task type in each of the seen and unseen splits, the first N "
        "in ETO's order; None: all, as in ETO",
    )
    max_steps_cap: int | None = Field(
        default=None,
        ge=1,
        description="caps the benchmark's step limit (ScienceWorld's per-type table, ALFWorld 40, WebShop "
        "10) to shorten small runs; None: ETO's limits",
    )
    iterations: int | None = Field(
        default=None, ge=0, description="ETO iterations for this task, overriding the profile's `iterations`"
    )
    dpo_beta: float | None = Field(
        default=None,
        gt=0,
        description="DPO beta for this task, winning over `dpo.beta` and `dpo_schedule` (the paper's "
        "ALFWorld value is 0.5)",
    )
    catalog: Literal["generated", "upstream", "upstream_1000"] | None = Field(
        default=None,
        description="WebShop only: `generated` (a small offline catalog), `upstream` (WebShop's full "
        "catalog, the only one with ETO's split) or `upstream_1000` (its 1,000-product subset); "
        "None: generated",
    )


class RolloutConfig(_Strict):
    """How exploration and evaluation play episodes (see :mod:`eto_assets.agent.rollout`)."""

    concurrency: int = Field(
        default=16,
        ge=1,
        description="episodes in flight at once: more keeps a batching backend busy, at the cost of memory "
        "(environments and prompts)",
    )
    max_new_tokens: int = Field(
        default=128,
        ge=1,
        description="most tokens the agent generates per turn (a thought and an action); the `paper` "
        "profile allows 512, small profiles less to keep CPU runs fast",
    )
    explore_temperature: float = Field(
        default=0.0, ge=0, description="sampling temperature while exploring; 0 = greedy, as in ETO"
    )
    batch_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="generate once this share of running episodes waits, so the model works on some "
        "episodes while the others' environments step (1: wait for all of them)",
    )
    seed: int = Field(
        default=0,
        description="base of the per-episode, per-step sampling seeds, so a sampled episode is the same "
        "however it was batched (greedy decoding does not use it)",
    )
    max_episode_retries: int = Field(
        default=2,
        ge=0,
        description="an episode whose environment fails (dead engine or worker, a call past "
        "step_timeout_s) is replayed from scratch this many times, then recorded as failed",
    )
    step_timeout_s: float | None = Field(
        default=120.0, gt=0, description="seconds one environment call may take (None: no limit)"
    )
    invalid_format_reward: Literal["zero", "keep"] = Field(
        default="zero",
        description="episode reward after a turn with no parsable action: zero (ETO's rule: that turn "
        "sets it to 0, so an episode ending there scores 0 and a later valid step scores afresh) or "
        "keep (the project's earlier rule: the running maximum stays); it decides ties and pair "
        "direction for weak policies",
    )
    context_overflow: Literal["cut_oldest_rounds", "end_episode"] = Field(
        default="cut_oldest_rounds",
        description="when a prompt plus max_new_tokens no longer fits the model's context: "
        "cut_oldest_rounds (ETO's side, whose FastChat worker cuts the oldest prompt tokens and plays "
        "on; here the instruction, example and task stay and the fewest oldest action/observation "
        "rounds are left out of the prompt only, the saved episode stays whole; an episode whose task "
        "and latest round alone do not fit still ends) or end_episode (the project's earlier rule: "
        "the episode ends, ended_by context_limit)",
    )


class PromptConfig(_Strict):
    """How prompts are laid out and where their text comes from (see :mod:`eto_assets.agent.prompt`)."""

    layout: Literal["eto", "flat"] = Field(
        default="eto",
        description="eto: training records have no example, inference sends it as chat turns; "
        "flat: the example is rendered into the first user turn everywhere",
    )
    eto_prompt_dir: str | None = Field(
        default=None,
        description="a folder in ETO's prompt layout (`instructions/<task>_inst.txt`, "
        "`icl_examples/<task>_icl.json`): its instruction and first example replace the project's",
    )


class ExpertConfig(_Strict):
    """Where the SFT trajectories come from."""

    source: str = Field(
        default="generated",
        description="generated: the benchmark's expert replayed through the engine; or the path of a "
        "JSON file in ETO's SFT layout (FastChat conversations), e.g. ETO's released data",
    )
    on_bad_record: Literal["fail", "skip"] = Field(
        default="fail",
        description="fail: one error listing every malformed record; skip: keep the valid ones, report "
        "the count",
    )


class TinyModelConfig(_Strict):
    """Shape of the Llama-architecture model the pipeline builds when ``base_model`` is ``tiny``."""

    vocab_size: int = Field(
        default=4096,
        ge=300,
        description="size of the byte-level BPE vocabulary trained on the run's own text (at least 300: "
        "256 byte symbols and the special tokens)",
    )
    hidden_size: int = Field(default=128, ge=8, description="width of the model (embedding size)")
    intermediate_size: int = Field(
        default=384, ge=8, description="width of each layer's MLP, usually 3x `hidden_size`"
    )
    num_hidden_layers: int = Field(default=2, ge=1, description="transformer layers")
    num_attention_heads: int = Field(
        default=4, ge=1, description="attention heads per layer (no grouped KV); must divide `hidden_size`"
    )
    max_position_embeddings: int = Field(
        default=4096,
        ge=128,
        description="longest sequence the model takes; keep it at least the `max_length` of `sft` and `dpo`",
    )
    seed: int = Field(default=0, description="seed of the model's random initialisation")


MethodName = Literal[
    "eto",
    "best_of_n",
    "rft",
    "rl",
    "selfplay_eto",
    "selfplay_rft",
    "selfplay_rft_eto",
    "eto_step",
    "eto_mixture",
    "stepagent",
    "stepagent_irl",
    "ipr",
]
METHODS: tuple[str, ...] = get_args(MethodName)


class BestOfNConfig(_Strict):
    """Best-of-N: the SFT policy samples N episodes per held-out task; the best reward counts."""

    n: int = Field(default=10, ge=1, description="episodes sampled per held-out task (the paper: 10)")
    temperature: float = Field(
        default=0.7, gt=0, description="sampling temperature (the paper does not give it; 0.7 is a choice)"
    )


class RFTConfig(_Strict):
    """Rejection-sampling fine-tuning: sampled episodes that succeed join the SFT data."""

    samples_per_task: int = Field(default=4, ge=1, description="episodes the policy samples per train task")
    temperature: float = Field(default=0.7, gt=0, description="sampling temperature of those episodes")
    keep: Literal["success", "at_least_expert"] = Field(
        default="success",
        description="which sampled episodes are kept: `success` (reward 1) or `at_least_expert` (at "
        "least the task's expert reward; WebShop's experts can score below 1)",
    )


class SelfPlayConfig(_Strict):
    """Self-play without expert data (the paper's Table 5): the base model samples, no SFT."""

    samples_per_task: int = Field(default=4, ge=2, description="episodes sampled per train task")
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature (the paper: 1.0)")


class StepConfig(_Strict):
    """Branches of the step-level methods (`eto_step`, `eto_mixture`, `ipr`): the policy replays an
    expert trajectory's first t-1 turns in the environment and plays on from step t."""

    steps_per_trajectory: int | None = Field(
        default=None,
        ge=1,
        description="steps of each expert trajectory to branch from: none given = every step; k = step 1 "
        "(the policy's whole episode) plus k-1 others drawn with the rollout seed (the paper does not say)",
    )
    temperature: float = Field(
        default=0.0,
        ge=0,
        description="sampling temperature of the policy's play from a branch (0: greedy, as ETO explores)",
    )


class StepAgentConfig(_Strict):
    """StepAgent's inspection (arXiv 2411.03817, implicit reward): at each step of an expert
    trajectory the policy proposes its own turn from the expert's prefix, without the environment;
    its cycles are the profile's iterations."""

    temperature: float = Field(
        default=0.0,
        ge=0,
        description="sampling temperature of the proposals (0: greedy; inferred, not stated)",
    )


class StepAgentIRLConfig(_Strict):
    """StepAgent's inverse-RL form: a discriminator of expert and policy turns (trained on the SFT
    policy's proposals, the `stepagent` section's sampling) gives each episode of the RL baseline
    (the `rl` section's GRPO settings) a second reward: the mean over its turns of the probability
    that the expert wrote each one."""

    discriminator_learning_rate: float = Field(
        default=1e-5,
        gt=0,
        description="learning rate of the discriminator (its other training fields: `sft`'s)",
    )
    discriminator_epochs: float = Field(default=1, gt=0, description="passes over the step pairs")
    step_reward_weight: float = Field(
        default=1.0,
        ge=0,
        description="weight of the discriminator's reward beside the environment's (weight 1); the paper's "
        "weighting is not known to us",
    )


class IPRConfig(_Strict):
    """IPR (arXiv 2406.11176): Monte-Carlo step values from a frozen scorer (the SFT policy)."""

    mc_samples: int = Field(default=5, ge=1, description="continuations per valued action (the paper: 5)")
    mc_temperature: float = Field(
        default=1.0, gt=0, description="sampling temperature of the continuations (the paper: 1.0)"
    )
    tau: dict[TaskName, float] = Field(
        default_factory=lambda: {"webshop": 0.01, "alfworld": 0.5, "sciworld": 0.01},
        description="a step pair is kept when the expert action's value beats the policy's by more than "
        "this (the paper: 0.01 WebShop, 0.5 ALFWorld; ScienceWorld is not in the paper, 0.01 like "
        "WebShop's dense reward)",
    )
    sft_weight: float = Field(
        default=1.0,
        ge=0,
        description="weight of the SFT loss on the chosen side beside the trajectory and step DPO losses "
        "(the paper: equal weights)",
    )


class Profile(_Strict):
    """A whole profile file: the run's size, the model kind it is tuned for, and how SFT, DPO and
    the rollouts behave."""

    name: str = Field(description="the profile's name; `load_profile` fills it from the file name")
    description: str = Field(
        default="", description="one line saying what the profile is for (logged with the run's params)"
    )
    model: ModelKind = Field(
        default="tiny",
        description="what the profile's hyper-parameters are for: `tiny` (the model the pipeline builds; "
        "large learning rates, many epochs) or `pretrained` (a Hugging Face model folder); a run "
        "refuses a base model of the other kind",
    )
    iterations: int = Field(
        default=2,
        ge=0,
        description="ETO iterations (explore, pair, DPO) after SFT; ETO runs 3. The asset graph unrolls "
        "`ETO_ITERATIONS` of them, which must be at least this",
    )
    evaluate_base_model: bool = Field(
        default=False,
        description="also evaluate the untrained base model on the same held-out tasks (asset "
        "base_model/eval_report): the baseline SFT and ETO are measured against",
    )
    selection: Literal["seen", "seen_not_in_train", "final"] = Field(
        default="seen",
        description="which policy the report names champion: `seen` (the highest seen-split reward, "
        "earlier on ties); `seen_not_in_train` (the same on the seen tasks that are not also train "
        "tasks: ScienceWorld's ETO dev list shares 54 of its 194 tasks with train, ALFWorld and WebShop "
        "none); `final` (ETO's protocol, no selection: every iteration's test numbers reported, the "
        "last iteration is champion, and WebShop holds no dev slice out of its train goals)",
    )
    methods: list[MethodName] = Field(
        default=["eto"],
        min_length=1,
        description="which methods run beside SFT, side by side in one report: `eto`, `best_of_n`, `rft`, "
        "`rl` (GRPO through TRL, the paper's online RL row), `selfplay_eto`, `selfplay_rft`, "
        "`selfplay_rft_eto` (no expert data: from the base model), and the step-level `eto_step`, "
        "`eto_mixture`, `stepagent`, `stepagent_irl`, `ipr`; the CLI's `--methods` overrides it. "
        "Assets of a method not listed are no-ops",
    )
    best_of_n: BestOfNConfig = Field(default=BestOfNConfig(), description="the `best_of_n` method")
    rft: RFTConfig = Field(
        default=RFTConfig(), description="the `rft` method (its `keep` rule also serves `selfplay_rft`)"
    )
    rl: RLTrainConfig = Field(
        default=RLTrainConfig(),
        description="the `rl` method: GRPO (TRL) from the SFT policy on whole episodes, KL to SFT",
    )
    selfplay: SelfPlayConfig = Field(
        default=SelfPlayConfig(),
        description="sampling of the self-play methods (`selfplay_eto`, `selfplay_rft`, `selfplay_rft_eto`)",
    )
    step: StepConfig = Field(
        default=StepConfig(),
        description="branching of the step-level methods (`eto_step`, `eto_mixture`, `ipr`)",
    )
    stepagent: StepAgentConfig = Field(default=StepAgentConfig(), description="the `stepagent` method")
    stepagent_irl: StepAgentIRLConfig = Field(
        default=StepAgentIRLConfig(), description="the `stepagent_irl` method (its RL settings: `rl`)"
    )
    ipr: IPRConfig = Field(default=IPRConfig(), description="the `ipr` method")
    tasks: dict[TaskName, TaskScope] = Field(
        default_factory=dict,
        description="per-benchmark scope (task types, tasks per type, overrides); a benchmark not "
        "listed uses all of itself",
    )
    tiny_model: TinyModelConfig = Field(
        default=TinyModelConfig(), description="shape of the tiny model (used only when base_model is `tiny`)"
    )
    sft: TrainConfig = Field(description="SFT hyper-parameters")
    dpo: DPOTrainConfig = Field(
        description="DPO hyper-parameters of every iteration; `dpo_schedule` and a task's "
        "`dpo_beta` override them"
    )
    rollout: RolloutConfig = Field(
        default=RolloutConfig(), description="how exploration and evaluation play episodes"
    )
    prompt: PromptConfig = Field(default=PromptConfig(), description="prompt layout and text")
    expert: ExpertConfig = Field(default=ExpertConfig(), description="where the SFT trajectories come from")
    dpo_schedule: dict[int, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-iteration DPO overrides, iteration (1-based) -> fields of dpo "
        "(e.g. {2: {beta: 0.5, learning_rate: 5.0e-7}}); an iteration not listed repeats the "
        "last one listed before it",
    )

    @model_validator(mode="after")
    def _methods_have_their_start(self) -> Profile:
        if "selfplay_rft_eto" in self.methods and "selfplay_rft" not in self.methods:
            raise ValueError(
                "methods: selfplay_rft_eto starts from selfplay_rft's policy; list selfplay_rft too"
            )
        return self

    @model_validator(mode="after")
    def _schedule_is_valid(self) -> Profile:
        for iteration, override in self.dpo_schedule.items():
            if iteration < 1:
                raise ValueError(f"dpo_schedule: iteration {iteration} must be >= 1")
            try:
                DPOTrainConfig.model_validate({**self.dpo.model_dump(), **override})
            except ValidationError as exc:
                problems = "; ".join(_problem(e) for e in exc.errors())
                raise ValueError(f"dpo_schedule.{iteration}: {problems}") from None
        return self

    def scope(self, task: str) -> TaskScope:
        return self.tasks.get(task, TaskScope())

    def with_methods(self, methods: str | list[str]) -> Profile:
        """The profile running ``methods`` (a list, a comma list, or ``all``) instead of its own
        ``methods``: what the CLI's ``--methods`` and the run setting ``methods`` do. Checked like the
        file's own list."""
        names = list(METHODS) if methods == "all" else methods
        if isinstance(names, str):
            names = [m.strip() for m in names.split(",") if m.strip()]
        try:
            return Profile.model_validate({**self.model_dump(), "methods": names})
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            raise ProfileError(f"methods {methods!r} (--methods or the run's settings): {problems}") from None

    def iterations_for(self, task: str) -> int:
        override = self.scope(task).iterations
        return self.iterations if override is None else override

    def dpo_for(self, task: str, iteration: int | None = None) -> DPOTrainConfig:
        """DPO parameters of ``task`` at ``iteration``: ``dpo``, then the ``dpo_schedule`` entry of
        that iteration (or of the last listed iteration before it), then the task's ``dpo_beta``."""
        fields = self.dpo.model_dump()
        if iteration is not None:
            listed = [k for k in sorted(self.dpo_schedule) if k <= iteration]
            if listed:
                fields.update(self.dpo_schedule[listed[-1]])
        beta = self.scope(task).dpo_beta
        if beta is not None:
            fields["beta"] = beta
        return DPOTrainConfig.model_validate(fields)

    def flat_params(self) -> dict[str, str]:
        """Every setting as ``a.b.c -> value`` for MLflow params."""
        out: dict[str, str] = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = str(value)

        walk("", self.model_dump())
        return out


def _problem(error: dict) -> str:
    """One pydantic error as ``field.path: message``; a refused choice also says what was given."""
    loc = [str(part) for part in error["loc"]]
    msg = error["msg"]
    if loc and loc[-1] == "[key]":  # a dict key (a task name) that is not one of the choices
        loc, msg = loc[:-1], f"unknown key: {msg}"
    field = loc[-1] if loc else ""
    path = ".".join(loc)
    if error["type"] == "extra_forbidden" and field in RENAMED_FIELDS:
        return f"{path}: renamed to {RENAMED_FIELDS[field]!r} (TRL's name)"
    if error["type"] == "literal_error":
        msg = f"{msg}, got {error['input']!r}"
    return f"{path}: {msg}" if path else msg


def load_profile(name_or_path: str) -> Profile:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ProfileError(f"profile {name_or_path!r}: no file {path} (known profiles: {known})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile file {path}: not valid YAML ({exc})") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ProfileError(f"profile file {path}: expected a mapping of settings, got a {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ProfileError(f"profile file {path}: {problems}") from exc
    return profile


def check_profile_for_model(profile: Profile, base_model: str) -> None:
    """Refuse a profile tuned for another kind of model (tiny-model settings would wreck a real
    model and take hours; real-model settings would leave the tiny model untrained)."""
    kind = "tiny" if base_model == "tiny" else "pretrained"
    if profile.model == kind:
        return
    if kind == "pretrained":
        raise ProfileError(
            f"profile {profile.name!r} is for the tiny model the pipeline builds (base_model 'tiny'), but "
            f"base_model is {base_model!r}: use a profile for pretrained models (e.g. 'small', 'paper')"
        )
    raise ProfileError(
        f"profile {profile.name!r} is for a pretrained model, but base_model is 'tiny': set base_model to "
        "a local Hugging Face folder (make real-model builds one) or use 'micro' or 'tiny'"
    )
