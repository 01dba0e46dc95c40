"""SFT and DPO hyper-parameters. Field names are TRL's (``SFTConfig``/``DPOConfig``), so they pass
through to the trainer unrenamed; ``batch_size`` is the one field of ours: the global batch, from
which ``gradient_accumulation_steps`` is derived."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Profile fields renamed to TRL's names; an old profile gets a hint instead of "extra field".
RENAMED_FIELDS = {
    "epochs": "num_train_epochs",
    "per_device_batch_size": "per_device_train_batch_size",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",
    "deepspeed_config": "deepspeed",
}


class TrainConfig(BaseModel):
    """Shared by SFT and DPO; the paper's values are in the ``paper`` profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(gt=0)
    num_train_epochs: float = Field(gt=0)
    batch_size: int = Field(ge=1, description="global batch: per-device batch x devices x accumulation")
    per_device_train_batch_size: int = Field(default=1, ge=1)
    warmup_steps: float = Field(
        default=0.03, ge=0, description="TRL's: a float in [0, 1) is a ratio of all steps, else a count"
    )
    lr_scheduler_type: str = "cosine"
    weight_decay: float = Field(default=0.0, ge=0)
    max_length: int = Field(default=4096, ge=64)
    seed: int = 42
    gradient_checkpointing: bool = False
    bf16: bool | None = Field(default=None, description="None: bf16 on a GPU that supports it, else fp32")
    deepspeed: str | None = Field(default=None, description="DeepSpeed config file")
    save_steps: int | None = Field(
        default=50,
        ge=1,
        description="save a resumable trainer checkpoint every this many optimizer steps (into "
        "<checkpoint>.work/, removed after the final save); a killed run resumes from the last one. "
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
    beta: float = Field(default=0.1, gt=0)
