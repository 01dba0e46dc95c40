"""Every environment variable the project reads, with its one default, in one table.

Only the edge reads them (Dagster resources, ``definitions.py``, the CLI, the Makefile); the core
gets typed values passed down. The README's settings table lists the same names and defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    help: str


SETTINGS: dict[str, Setting] = {
    s.env: s
    for s in (
        Setting("ETO_HOME", ".eto", "every generated artifact, the default MLflow store and Dagster home"),
        Setting("ETO_DATA_DIR", None, "benchmark data that is not generated (ALFWorld games, WebShop files)"),
        Setting("ETO_PROFILE", "tiny", "micro | tiny | paper | a path to a profile YAML"),
        Setting("ETO_BASE_MODEL", "tiny", "'tiny' (built by the pipeline) or a local Hugging Face folder"),
        Setting("ETO_BACKEND", "transformers", "inference backend: transformers | vllm | openai"),
        Setting("ETO_ACCELERATE_CONFIG", None, "accelerate config: SFT/DPO run under `accelerate launch`"),
        Setting("ETO_ITERATIONS", "2", "ETO iterations unrolled in the asset graph"),
        Setting("ETO_SCIWORLD_JVMS", None, "ScienceWorld JVMs per process (unset: one per two cores)"),
        Setting("ETO_ENV_PROCESSES", None, "worker processes for ALFWorld/WebShop rollouts (unset: cores)"),
        Setting(
            "ETO_TORCH_THREADS",
            None,
            "torch intra-op threads (unset: inference cores/2, the rest left to environments; training all)",
        ),
        Setting("ETO_INFERENCE_DTYPE", "auto", "transformers backend dtype: auto|float32|bfloat16|float16"),
        Setting("MLFLOW_TRACKING_URI", None, "MLflow tracking store (unset: sqlite under ETO_HOME)"),
        Setting("ETO_MLFLOW_UI_URL", "http://127.0.0.1:5000", "where users open the MLflow UI (run links)"),
        Setting(
            "ETO_MLFLOW_COPY_CHECKPOINTS",
            "false",
            "true: copy checkpoints into MLflow; false: model versions refer to the checkpoint folder",
        ),
        Setting("ALFWORLD_DATA", None, "ALFWorld's own data folder, tried after ETO_DATA_DIR"),
    )
}


class SettingError(ValueError):
    """An environment variable holds a value the project cannot use."""


def read(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable's value, or its default when unset or empty."""
    env = os.environ if environ is None else environ
    return env.get(name) or SETTINGS[name].default


def read_int(name: str, low: int, high: int, environ: Mapping[str, str] | None = None) -> int | None:
    raw = read(name, environ)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingError(f"{name}={value} is outside {low}..{high}")
    return value


def read_path(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    raw = read(name, environ)
    return Path(raw).expanduser().resolve() if raw else None


def home(environ: Mapping[str, str] | None = None) -> Path:
    path = read_path("ETO_HOME", environ)
    assert path is not None  # it has a default
    return path


def iterations(environ: Mapping[str, str] | None = None) -> int:
    value = read_int("ETO_ITERATIONS", 0, 10, environ)
    assert value is not None
    return value


def sciworld_jvms(environ: Mapping[str, str] | None = None) -> int:
    value = read_int("ETO_SCIWORLD_JVMS", 1, 64, environ)
    return value if value is not None else max(1, (os.cpu_count() or 2) // 2)


def env_processes(environ: Mapping[str, str] | None = None) -> int:
    value = read_int("ETO_ENV_PROCESSES", 0, 256, environ)
    return value if value is not None else os.cpu_count() or 1


def default_torch_threads(cores: int | None = None) -> int:
    """Inference threads: half the cores, at least one, leaving the rest to the environments.
    Measured on 2 cores with a ScienceWorld JVM stepping (``benchmarks/cpu_threads.py``): 1 thread
    generates about 1.5x the tokens/s of 2 and the JVM steps faster too; alone, 2 would be faster."""
    cores = cores if cores is not None else os.cpu_count() or 1
    return max(1, cores // 2)


def torch_threads(environ: Mapping[str, str] | None = None) -> int:
    """Inference threads: ``ETO_TORCH_THREADS``, else :func:`default_torch_threads`."""
    value = read_int("ETO_TORCH_THREADS", 1, 1024, environ)
    return value if value is not None else default_torch_threads()


DTYPES = ("auto", "float32", "bfloat16", "float16")


def inference_dtype(environ: Mapping[str, str] | None = None) -> str:
    value = read("ETO_INFERENCE_DTYPE", environ) or "auto"
    if value not in DTYPES:
        raise SettingError(f"ETO_INFERENCE_DTYPE={value!r} is not one of {DTYPES}")
    return value


def read_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A true/false setting (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    raw = (read(name, environ) or "").strip().lower()
    if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise SettingError(f"{name}={raw!r} is not true or false")
    return raw in ("1", "true", "yes", "on")


def offline_environment() -> None:
    """No hub downloads, no telemetry: set once at every entry point, before heavy imports."""
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(key, value)
