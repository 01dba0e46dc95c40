"""Which inference backend exploration and evaluation use (``transformers`` on CPU by default).

Field defaults are the settings' values when the code location loads (``config/settings.py``), so
the launchpad shows them; the one exception is the OpenAI API key, whose value must never show up
in the launchpad, a run's config or a log: its field defaults to unset, and ``OPENAI_API_KEY`` is
read when an ``openai`` backend is opened.
"""

from __future__ import annotations

import os
import time

from dagster import ConfigurableResource
from pydantic import Field, field_validator

from eto_assets.agent.backends import BACKENDS, DTYPES, InferenceBackend, load_backend
from eto_assets.config import settings as env


def open_vllm(checkpoint: str, tensor_parallel_size: int, python: str | None) -> InferenceBackend:
    """vLLM in this process where it is installed here (the GPU extra), else a server in vLLM's own
    environment (``ETO_VLLM_PYTHON``, ``make vllm-cpu``), one per checkpoint, logging under
    ``$ETO_HOME/logs``."""
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("vllm") is not None or python is None:
        return load_backend("vllm", checkpoint, tensor_parallel_size=tensor_parallel_size)
    from eto_assets.agent.vllm_server import VLLMServerBackend

    started = time.strftime("%Y%m%d-%H%M%S")
    log = env.home() / "logs" / f"vllm-server-{Path(checkpoint).name}-{started}-{os.getpid()}.log"
    return VLLMServerBackend(checkpoint, python=Path(python), log=log)


class InferenceResource(ConfigurableResource):
    backend: str = Field(default=env.read("ETO_BACKEND"), description=f"ETO_BACKEND: one of {BACKENDS}")
    max_batch_size: int = Field(default=64, description="transformers: sequences per generate call")
    tensor_parallel_size: int = Field(default=1, description="vllm: GPUs per model")
    openai_base_url: str = Field(
        default=env.openai_base_url(),
        description=f"OPENAI_BASE_URL: {env.SETTINGS['OPENAI_BASE_URL'].help}",
    )
    openai_api_key: str | None = Field(
        default=None,
        repr=False,
        description="openai: API key (unset: OPENAI_API_KEY when the backend opens). Set the variable "
        "rather than this field: a value given here is stored with the run's config",
    )
    openai_model: str | None = Field(
        default=None, description="openai: served model name (else the checkpoint)"
    )

    vllm_python: str | None = Field(
        default=str(env.vllm_python()) if env.vllm_python() else None,
        description=f"ETO_VLLM_PYTHON: {env.SETTINGS['ETO_VLLM_PYTHON'].help}",
    )

    torch_threads: int = Field(
        default=env.torch_threads(),
        description="transformers: torch intra-op threads (ETO_TORCH_THREADS; unset: half the cores)",
    )
    dtype: str = Field(
        default=env.inference_dtype(),
        description=f"transformers: weights' dtype, one of {DTYPES} (auto: bfloat16 on CUDA, float32 on CPU)",
    )

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"inference dtype setting {value!r} is not one of {DTYPES}")
        return value

    @field_validator("backend")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"inference backend setting {value!r} is not one of {BACKENDS}")
        return value

    def open(self, checkpoint: str) -> InferenceBackend:
        if self.backend == "transformers":
            return load_backend(
                "transformers",
                checkpoint,
                max_batch_size=self.max_batch_size,
                dtype=self.dtype,
                threads=self.torch_threads,
            )
        if self.backend == "vllm":
            return open_vllm(checkpoint, self.tensor_parallel_size, self.vllm_python)
        return load_backend(
            "openai",
            self.openai_model or checkpoint,
            base_url=self.openai_base_url,
            api_key=self.openai_api_key or env.openai_api_key(),
        )
