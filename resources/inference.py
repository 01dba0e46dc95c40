"""Which inference backend exploration and evaluation use (``transformers`` on CPU by default)."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from eto_assets.agent.backends import BACKENDS, InferenceBackend, load_backend


def _default_backend() -> str:
    return os.environ.get("ETO_BACKEND", "transformers")


class InferenceResource(ConfigurableResource):
    backend: str = Field(default_factory=_default_backend, description=f"one of {BACKENDS}")
    max_batch_size: int = Field(default=64, description="transformers: sequences per generate call")
    tensor_parallel_size: int = Field(default=1, description="vllm: GPUs per model")
    openai_base_url: str | None = Field(default=None, description="openai: endpoint (else OPENAI_BASE_URL)")
    openai_model: str | None = Field(
        default=None, description="openai: served model name (else the checkpoint)"
    )

    def open(self, checkpoint: Path) -> InferenceBackend:
        if self.backend == "transformers":
            return load_backend("transformers", checkpoint, max_batch_size=self.max_batch_size)
        if self.backend == "vllm":
            return load_backend("vllm", checkpoint, tensor_parallel_size=self.tensor_parallel_size)
        if self.backend == "openai":
            return load_backend("openai", self.openai_model or str(checkpoint), base_url=self.openai_base_url)
        raise ValueError(f"inference backend setting {self.backend!r} is not one of {BACKENDS}")
