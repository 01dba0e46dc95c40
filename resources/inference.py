"""Which inference backend exploration and evaluation use (``transformers`` on CPU by default)."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field, field_validator

from eto_assets.agent.backends import BACKENDS, InferenceBackend, load_backend
from eto_assets.config import settings as env


class InferenceResource(ConfigurableResource):
    backend: str = Field(default_factory=lambda: env.read("ETO_BACKEND"), description=f"one of {BACKENDS}")
    max_batch_size: int = Field(default=64, description="transformers: sequences per generate call")
    tensor_parallel_size: int = Field(default=1, description="vllm: GPUs per model")
    openai_base_url: str | None = Field(default=None, description="openai: endpoint (else OPENAI_BASE_URL)")
    openai_model: str | None = Field(
        default=None, description="openai: served model name (else the checkpoint)"
    )

    @field_validator("backend")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"inference backend setting {value!r} is not one of {BACKENDS}")
        return value

    def open(self, checkpoint: str) -> InferenceBackend:
        if self.backend == "transformers":
            return load_backend("transformers", checkpoint, max_batch_size=self.max_batch_size)
        if self.backend == "vllm":
            return load_backend("vllm", checkpoint, tensor_parallel_size=self.tensor_parallel_size)
        return load_backend("openai", self.openai_model or checkpoint, base_url=self.openai_base_url)
