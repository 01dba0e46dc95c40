"""What every asset shares: the task partitions, user-fixable errors as clear failures, the
settings logged with every MLflow run, and stage metadata in Dagster's types."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import Failure, MetadataValue, StaticPartitionsDefinition

from eto_assets.agent.backends import ModelPathError
from eto_assets.config.profile import TASKS, Profile, ProfileError
from eto_assets.config.settings import SettingError
from eto_assets.data.schemas import DataFormatError
from eto_assets.envs.base import BenchmarkNotAvailable
from eto_assets.envs.registry import UnknownTaskError
from eto_assets.stages import NoExpertData
from eto_assets.stages.result import Markdown
from resources import EtoSettings, InferenceResource

TASK_PARTITIONS = StaticPartitionsDefinition(list(TASKS))
USER_ERRORS = (
    BenchmarkNotAvailable,
    ProfileError,
    SettingError,
    ModelPathError,
    DataFormatError,
    UnknownTaskError,
    NoExpertData,
    FileNotFoundError,
)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user-fixable problem into a Dagster Failure with one clear message (no traceback)."""
    try:
        yield
    except USER_ERRORS as exc:
        raise Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def settings_params(
    settings: EtoSettings, inference: InferenceResource, profile: Profile, task: str
) -> dict[str, str]:
    """The run's settings as MLflow params: this task's profile section only, not the others'."""
    others = tuple(f"tasks.{t}." for t in TASKS if t != task)
    return {
        "base_model": settings.base_model,
        "profile": settings.profile,
        "eto_home": str(settings.home_path()),
        "backend": inference.backend,
        **{f"profile.{k}": v for k, v in profile.flat_params().items() if not k.startswith(others)},
    }


def dagster_metadata(values: Mapping[str, Any]) -> dict[str, Any]:
    """Stage metadata as Dagster shows it best: paths as paths, tables as Markdown, nested as JSON,
    floats rounded."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Markdown):
            out[key] = MetadataValue.md(str(value))
        elif isinstance(value, Path):
            out[key] = MetadataValue.path(str(value))
        elif isinstance(value, dict | list | tuple):
            out[key] = MetadataValue.json(value)
        elif isinstance(value, float):
            out[key] = round(value, 4)  # 0.0625, not 0.06249999999999999
        else:
            out[key] = value
    return out
