"""Every environment variable the project reads, with its one default, in one table.

Only the edge reads them (Dagster resources, ``definitions.py``, the CLI, the Makefile); the core
gets typed values passed down. The README's settings table lists the same names and defaults, and
``tests/test_readme_settings.py`` checks both directions and that no other module reads the
environment.

The one exception: ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` are set per process by
``accelerate launch`` / torchrun, not by the user, and are read where training runs
(``eto_assets/training/common.py``, under the launcher ``eto_assets/training/launch.py``). They are
not settings: nobody chooses them, so they have no default to document here.

Nothing here changes ``os.environ`` when imported; :func:`offline_environment` does, and only an
entry point calls it (a ``main``, a script's ``__main__`` block).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    help: str
    secret: bool = False  # the value is never printed, logged or shown as a default (an API key)


SETTINGS: dict[str, Setting] = {
    s.env: s
    for s in (
        Setting("ETO_HOME", ".eto", "every generated artifact, the default MLflow store and Dagster home"),
        Setting(
            "DAGSTER_HOME",
            None,
            "Dagster instance folder (unset: $ETO_HOME/dagster); the CLI copies dagster.yaml there",
        ),
        Setting("ETO_DATA_DIR", None, "benchmark data that is not generated (ALFWorld games, WebShop files)"),
        Setting("ETO_PROFILE", "tiny", "micro | tiny | small | paper | a path to a profile YAML"),
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
        Setting(
            "ETO_MODEL_CACHE",
            None,
            "models folder shared across checkouts (the tests' real model; unset: ~/.cache/eto/models)",
        ),
        Setting("OPENAI_BASE_URL", "https://api.openai.com/v1", "openai backend: the endpoint's base URL"),
        Setting(
            "OPENAI_API_KEY",
            "EMPTY",
            "openai backend: API key (EMPTY suits a local `vllm serve`); never printed or logged",
            secret=True,
        ),
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

# What the launcher's processes are told by accelerate/torchrun; read in eto_assets/training/common.py.
LAUNCHER_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")

# No hub downloads, no telemetry, no tokenizer fork warnings: see offline_environment.
OFFLINE_ENVIRONMENT: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "TOKENIZERS_PARALLELISM": "false",
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


def read_folder(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """A folder setting: absolute, and not an existing file (which would fail later, far from its cause).
    The folder itself need not exist yet: whoever writes there creates it."""
    path = read_path(name, environ)
    if path is not None and path.exists() and not path.is_dir():
        raise SettingError(f"{name}={str(path)!r} is a file, not a folder")
    return path


def home(environ: Mapping[str, str] | None = None) -> Path:
    path = read_path("ETO_HOME", environ)
    assert path is not None  # it has a default
    return path


def dagster_home(home: Path, environ: Mapping[str, str] | None = None) -> Path:
    """The Dagster instance folder: ``DAGSTER_HOME``, else ``<home>/dagster`` (``home`` is the resolved
    ETO_HOME, passed in because the CLI may have taken it from an option rather than the environment)."""
    path = read_folder("DAGSTER_HOME", environ)
    return path if path is not None else (Path(home).expanduser() / "dagster").resolve()


def model_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """A models folder shared across checkouts (the tests' converted real model): ``ETO_MODEL_CACHE``,
    else ``~/.cache/eto/models``, so a second checkout does not download and convert again."""
    path = read_folder("ETO_MODEL_CACHE", environ)
    return path if path is not None else Path.home() / ".cache" / "eto" / "models"


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


def openai_base_url(environ: Mapping[str, str] | None = None) -> str:
    """The OpenAI-compatible endpoint. Always a concrete URL, so the ``openai`` client never falls
    back to reading ``OPENAI_BASE_URL`` itself (where an empty value would not mean "unset")."""
    value = read("OPENAI_BASE_URL", environ)
    assert value is not None  # it has a default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(f"OPENAI_BASE_URL={value!r} is not an http(s) URL")
    return value


def openai_api_key(environ: Mapping[str, str] | None = None) -> str:
    """The endpoint's API key. A key with whitespace in it (a pasted trailing newline) would fail
    deep in the HTTP client; the error names the variable but never shows the value."""
    value = read("OPENAI_API_KEY", environ)
    assert value is not None  # it has a default
    if any(c.isspace() or not c.isprintable() for c in value):
        raise SettingError("OPENAI_API_KEY holds whitespace or control characters (value not shown)")
    return value


def read_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A true/false setting (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    raw = (read(name, environ) or "").strip().lower()
    if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise SettingError(f"{name}={raw!r} is not true or false")
    return raw in ("1", "true", "yes", "on")


def offline_environment() -> None:
    """No hub downloads, no telemetry: set once at every entry point, before heavy imports (the Hugging
    Face libraries read these when imported). Never called when a library module is imported: importing
    must not change the environment of whoever imports it. Values already set are kept."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def use_dagster_home(path: Path) -> None:
    """Point this process's Dagster instance at ``path``: the project's ``dagster.yaml`` names its
    storage folders through ``DAGSTER_HOME``, so an entry point (the CLI) sets it, at run time only."""
    os.environ["DAGSTER_HOME"] = str(path)
