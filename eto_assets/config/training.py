"""SFT and DPO hyper-parameters. Field names are TRL's (``SFTConfig``/``DPOConfig``), so they pass
through to the trainer unrenamed; ``batch_size`` is the one field of ours: the global batch, from
which ``gradient_accumulation_steps`` is derived."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Profile fields renamed to TRL's names; an old profile gets a hint instead of "extra field".
RENAMED_FIELDS = {
    "epochs": "num_train_epochs",
    "per_device_batch_size": "per_device_train_batch_size",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",
    "deepspeed_config": "deepspeed",
}


# transformers' learning-rate schedules (``SchedulerType``) that need no argument beyond the
# warm-up: the profile has no ``lr_scheduler_kwargs``, so ``cosine_with_min_lr``,
# ``cosine_warmup_with_min_lr``, ``warmup_stable_decay`` (which need one), ``reduce_lr_on_plateau``
# and ``greedy`` (which need an evaluation loop) would only fail once training starts.
LrSchedulerType = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]


class TrainConfig(BaseModel):
    """Shared by SFT and DPO; the paper's values are in the ``paper`` profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(
        gt=0,
        description="peak learning rate; ETO: 2e-5 for SFT (run_eto.sh; the paper's text says "
        "1e-5), 1e-6 for DPO in iteration 1 and 5e-7 later (see `dpo_schedule`)",
    )
    num_train_epochs: float = Field(
        gt=0, description="passes over the data; ETO: 3 for SFT and 3 in every DPO iteration"
    )
    batch_size: int = Field(
        ge=1,
        description="global batch (our one non-TRL field): per-device batch x processes x "
        "gradient accumulation, the accumulation being derived from it; ETO: 64 for SFT, 32 for DPO",
    )
    per_device_train_batch_size: int = Field(
        default=1,
        ge=1,
        description="sequences per device per forward pass; must divide `batch_size`: lower it to save "
        "memory, the global batch stays the same",
    )
    warmup_steps: float = Field(
        default=0.03,
        ge=0,
        description="TRL's: a float in [0, 1) is a ratio of all steps, else a count; ETO: 0.03 for SFT, 0.1 "
        "for DPO (a ratio that rounds to zero steps stays zero)",
    )
    lr_scheduler_type: LrSchedulerType = Field(
        default="cosine",
        description="learning-rate schedule (transformers' name); ETO: cosine for SFT, constant_with_warmup "
        "for DPO",
    )
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay; ETO: 0")
    max_length: int = Field(
        default=4096,
        ge=64,
        description="tokens per training conversation; a longer one is truncated (TRL's); ETO: 4096",
    )
    seed: int = Field(
        default=42, description="training seed (data order, dropout); 42 is transformers' default"
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="recompute activations in the backward pass instead of keeping them: far less "
        "memory, slower steps; the `paper` and `small` profiles turn it on",
    )
    bf16: bool | None = Field(default=None, description="None: bf16 on a GPU that supports it, else fp32")
    deepspeed: str | None = Field(
        default=None,
        description="DeepSpeed config file for multi-GPU training (e.g. `configs/deepspeed/zero3.json`), "
        "passed to TRL; None: no DeepSpeed",
    )
    save_steps: int | None = Field(
        default=50,
        ge=1,
        description="save a resumable trainer checkpoint every this many optimizer steps (into "
        "`<checkpoint>.work/`, removed after the final save); a killed run resumes from the last one. "
        "None: save only at the end",
    )

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainConfig:
        if self.batch_size % self.per_device_train_batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of per_device_train_batch_size "
                f"{self.per_device_train_batch_size}"
            )
        return self

    def gradient_accumulation_steps(self, num_processes: int = 1) -> int:
        """``batch_size // (per-device batch x processes)``; the global batch stays ``batch_size``
        however many processes train (as ETO's script divides by its GPU count)."""
        per_step = self.per_device_train_batch_size * max(1, num_processes)
        if self.batch_size % per_step:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of per_device_train_batch_size "
                f"{self.per_device_train_batch_size} x {max(1, num_processes)} processes"
            )
        return self.batch_size // per_step

    def warmup_steps_for(self, optimizer_steps: int) -> float:
        """``warmup_steps`` for a run of ``optimizer_steps``: a ratio that rounds to zero steps is 0
        (transformers would round it up to one step), else the field as it is."""
        if 0 < self.warmup_steps < 1 and round(self.warmup_steps * optimizer_steps) == 0:
            return 0
        return self.warmup_steps

    def trainer_fields(self) -> dict[str, Any]:
        """The fields TRL's config takes as they are (everything but ``batch_size`` and
        ``save_steps``, which :func:`eto_assets.training.common.trainer_kwargs` turns into TRL's
        save settings)."""
        return self.model_dump(exclude={"batch_size", "save_steps"})


class DPOTrainConfig(TrainConfig):
    """The shared fields (same defaults) plus DPO's ``beta``."""

    beta: float = Field(
        default=0.1,
        gt=0,
        description="DPO's beta: how strongly the policy is held to the reference (higher = closer); "
        "ETO: 0.1 in iteration 1, 0.5 later (see `dpo_schedule`) and 0.5 for ALFWorld in the paper",
    )
    sft_weight: float = Field(
        default=0.0,
        ge=0,
        description="weight of an SFT loss on the chosen side's action tokens beside DPO's (TRL's `sft` loss "
        "type; 0: DPO alone, as ETO); the `ipr` method sets it from `ipr.sft_weight`",
    )

    def trainer_fields(self) -> dict[str, Any]:
        """The shared fields, with ``sft_weight`` as TRL's loss list: DPO's sigmoid loss, plus its
        ``sft`` loss on the chosen side when the weight is above 0."""
        fields = super().trainer_fields()
        weight = fields.pop("sft_weight")
        if weight > 0:
            fields["loss_type"] = ["sigmoid", "sft"]
            fields["loss_weights"] = [1.0, weight]
        return fields


class RLTrainConfig(TrainConfig):
    """Online RL from the SFT policy (the paper's "PPO" baseline) on TRL's ``GRPOTrainer``: the
    shared fields plus the episode and GRPO fields. ``batch_size`` counts episodes per optimizer
    step (``num_generations`` per task), ``max_length`` bounds an episode's tokens (prompt and every
    turn), and ``num_train_epochs`` counts passes over the training tasks."""

    learning_rate: float = Field(default=1e-6, gt=0, description="peak learning rate of the policy")
    num_train_epochs: float = Field(
        default=1, gt=0, description="passes over the training tasks (each played num_generations times)"
    )
    batch_size: int = Field(
        default=16,
        ge=2,
        description="episodes per optimizer step over all processes: batch_size / num_generations tasks, "
        "each played num_generations times; a multiple of num_generations",
    )
    warmup_steps: float = Field(default=0.0, ge=0, description="TRL's: a ratio in [0, 1) or a count")
    lr_scheduler_type: LrSchedulerType = Field(default="constant", description="learning-rate schedule")
    num_generations: int = Field(
        default=4,
        ge=2,
        description="episodes per task in a step (GRPO's group): each episode's advantage is its reward "
        "against the group's mean",
    )
    beta: float = Field(
        default=0.04,
        ge=0,
        description="weight of the KL penalty to the reference policy (the SFT policy training starts "
        "from), per agent token; 0: no reference model",
    )
    temperature: float = Field(
        default=1.0,
        gt=0,
        description="sampling temperature of the episodes; the trainer scores tokens at the same temperature",
    )
    max_new_tokens: int = Field(default=128, ge=1, description="most tokens the agent writes per turn")
    max_turns: int | None = Field(
        default=None,
        ge=1,
        description="most agent turns per episode; None: the task's own step limit (the lower of the two "
        "otherwise)",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description="optimizer steps of the run, overriding num_train_epochs (TRL's); None: the epochs "
        "decide",
    )
    concurrency: int = Field(
        default=8, ge=1, description="episodes in flight at once while a step's episodes are played"
    )
    invalid_format_reward: Literal["zero", "keep"] = Field(
        default="zero",
        description="episode reward after a turn with no parsable action, as in exploration: zero (ETO's "
        "rule) or keep",
    )

    @model_validator(mode="after")
    def _groups_divide(self) -> RLTrainConfig:
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"batch_size {self.batch_size} (episodes per step) is not a multiple of num_generations "
                f"{self.num_generations}"
            )
        return self

    def trainer_fields(self) -> dict[str, Any]:
        """``GRPOConfig``'s fields: the shared ones but ``max_length``, plus ``num_generations``,
        ``beta``, ``temperature``, ``max_steps`` (-1: none) and ``max_completion_length`` (the episode
        budget ``max_length``); the episode fields are the rollout's."""
        own = {
            "max_length",
            "max_new_tokens",
            "max_turns",
            "max_steps",
            "concurrency",
            "invalid_format_reward",
        }
        fields = self.model_dump(exclude={"batch_size", "save_steps", *own})
        fields["max_steps"] = -1 if self.max_steps is None else self.max_steps
        fields["max_completion_length"] = self.max_length
        return fields
