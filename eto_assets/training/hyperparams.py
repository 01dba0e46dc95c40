"""Training hyper-parameters as typed values (profiles in ``configs/`` fill them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrainParams(BaseModel):
    """Shared by SFT and DPO; the paper's values are the ``paper`` profile."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(gt=0)
    epochs: float = Field(gt=0)
    batch_size: int = Field(ge=1, description="effective batch = per_device_batch_size * grad accumulation")
    per_device_batch_size: int = Field(default=1, ge=1)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    lr_scheduler: str = "cosine"
    weight_decay: float = Field(default=0.0, ge=0)
    max_length: int = Field(default=4096, ge=64)
    seed: int = 42
    gradient_checkpointing: bool = False
    bf16: bool | None = None  # None: bf16 on GPU, fp32 on CPU
    deepspeed_config: str | None = None

    @property
    def grad_accumulation(self) -> int:
        return max(1, self.batch_size // self.per_device_batch_size)


class DPOParams(TrainParams):
    beta: float = Field(default=0.1, gt=0)
