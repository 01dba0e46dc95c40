"""Profiles (``configs/<name>.yaml``): how big a run is and how it trains.

``micro`` is the smoke test (minutes on a laptop), ``tiny`` the CPU demo, ``paper`` the paper's
hyper-parameters for a real model on GPUs. A profile is validated once when loaded; a bad value
raises :class:`ProfileError` naming the file and the field. This module is a leaf: it imports no
other part of the project and nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from eto_assets.config.training import RENAMED_FIELDS, DPOTrainConfig, TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TASKS = ("sciworld", "alfworld", "webshop")


class ProfileError(ValueError):
    """A profile file is missing or holds an invalid value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskScope(_Strict):
    """Which part of a benchmark a run uses (None = all of it)."""

    task_types: list[str] | None = None
    train_per_type: int | None = Field(default=None, ge=1)
    eval_per_type: int | None = Field(default=None, ge=1)
    max_steps_cap: int | None = Field(default=None, ge=1)
    iterations: int | None = Field(default=None, ge=0, description="overrides the profile's iterations")
    dpo_beta: float | None = Field(default=None, gt=0, description="overrides dpo.beta for this task")
    catalog: str | None = Field(default=None, description="webshop: generated | upstream | upstream_1000")


class RolloutConfig(_Strict):
    """How exploration and evaluation play episodes (see :mod:`eto_assets.agent.rollout`)."""

    concurrency: int = Field(default=16, ge=1, description="episodes in flight at once")
    max_new_tokens: int = Field(default=128, ge=1)
    explore_temperature: float = Field(default=0.0, ge=0, description="0 = greedy, as in ETO")
    batch_fraction: float = Field(
        default=0.5, gt=0, le=1, description="generate once this share of running episodes waits"
    )
    seed: int = 0
    max_episode_retries: int = Field(
        default=2,
        ge=0,
        description="an episode whose environment fails (dead engine or worker, a call past "
        "step_timeout_s) is replayed from scratch this many times, then recorded as failed",
    )
    step_timeout_s: float | None = Field(
        default=120.0, gt=0, description="seconds one environment call may take (None: no limit)"
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
        description="a folder in ETO's prompt layout (instructions/<task>_inst.txt, "
        "icl_examples/<task>_icl.json): its instruction and first example replace the project's",
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

    vocab_size: int = Field(default=4096, ge=300)
    hidden_size: int = Field(default=128, ge=8)
    intermediate_size: int = Field(default=384, ge=8)
    num_hidden_layers: int = Field(default=2, ge=1)
    num_attention_heads: int = Field(default=4, ge=1)
    max_position_embeddings: int = Field(default=4096, ge=128)
    seed: int = 0


MODEL_KINDS = ("tiny", "pretrained")


class Profile(_Strict):
    name: str
    description: str = ""
    model: str = Field(
        default="tiny",
        description="what the profile's hyper-parameters are for: 'tiny' (the model the pipeline "
        "builds; large learning rates, many epochs) or 'pretrained' (a Hugging Face model folder)",
    )
    iterations: int = Field(default=2, ge=0)
    evaluate_base_model: bool = Field(
        default=False,
        description="also evaluate the untrained base model on the same held-out tasks (asset "
        "base_model/eval_report): the baseline SFT and ETO are measured against",
    )
    tasks: dict[str, TaskScope] = Field(default_factory=dict)
    tiny_model: TinyModelConfig = TinyModelConfig()
    sft: TrainConfig
    dpo: DPOTrainConfig
    rollout: RolloutConfig = RolloutConfig()
    prompt: PromptConfig = PromptConfig()
    expert: ExpertConfig = ExpertConfig()
    dpo_schedule: dict[int, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-iteration DPO overrides, iteration (1-based) -> fields of dpo "
        "(e.g. {2: {beta: 0.5, learning_rate: 5.0e-7}}); an iteration not listed repeats the "
        "last one listed before it",
    )

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
    loc = ".".join(map(str, error["loc"]))
    field = str(error["loc"][-1]) if error["loc"] else ""
    if error["type"] == "extra_forbidden" and field in RENAMED_FIELDS:
        return f"{loc}: renamed to {RENAMED_FIELDS[field]!r} (TRL's name)"
    return f"{loc}: {error['msg']}"


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
    unknown = sorted(set(profile.tasks) - set(TASKS))
    if unknown:
        raise ProfileError(f"profile file {path}: unknown tasks {unknown}; known: {list(TASKS)}")
    return profile


def check_profile_for_model(profile: Profile, base_model: str) -> None:
    """Refuse a profile tuned for another kind of model (tiny-model settings would wreck a real
    model and take hours; real-model settings would leave the tiny model untrained)."""
    kind = "tiny" if base_model == "tiny" else "pretrained"
    if profile.model not in MODEL_KINDS:
        raise ProfileError(f"profile {profile.name!r}: model {profile.model!r} is not one of {MODEL_KINDS}")
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
