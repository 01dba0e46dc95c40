"""What every asset needs: the task partition, the profile, the benchmark, clear failures."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetExecutionContext, Failure, MetadataValue, StaticPartitionsDefinition

from eto_assets.agent.backends import ModelPathError
from eto_assets.config.profile import TASKS, Profile, ProfileError, TaskScope
from eto_assets.data.schemas import DataFormatError
from eto_assets.envs.base import Benchmark, BenchmarkNotAvailable
from eto_assets.envs.registry import UnknownTaskError, get_benchmark
from eto_assets.layout import ArtifactLayout
from resources.settings import EtoSettings

TASK_PARTITIONS = StaticPartitionsDefinition(list(TASKS))
USER_ERRORS = (BenchmarkNotAvailable, ProfileError, ModelPathError, DataFormatError, UnknownTaskError)


@dataclass
class StageContext:
    task: str
    home: Path
    profile: Profile
    scope: TaskScope
    layout: ArtifactLayout
    benchmark: Benchmark


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user-fixable problem into a Dagster Failure with one clear message (no traceback)."""
    try:
        yield
    except USER_ERRORS as exc:
        raise Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def stage_context(context: AssetExecutionContext, settings: EtoSettings) -> StageContext:
    task = context.partition_key
    with user_errors():
        profile = settings.load_profile()
        scope = profile.scope(task)
        home = settings.home_path()
        benchmark = get_benchmark(task, scope, data_dir=settings.data_path(), home=home)
    return StageContext(task, home, profile, scope, settings.layout(task), benchmark)


def run_link_metadata(link: str, run) -> dict[str, MetadataValue]:
    return {
        "mlflow_run": MetadataValue.url(link),
        "mlflow_run_id": MetadataValue.text(run.info.run_id),
    }


def settings_params(settings: EtoSettings, profile: Profile) -> dict[str, str]:
    return {
        "base_model": settings.base_model,
        "profile": settings.profile,
        "eto_home": str(settings.home_path()),
        **{f"profile.{k}": v for k, v in profile.flat_params().items()},
    }
