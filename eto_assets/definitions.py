"""The one Definitions object (``workspace.yaml`` and ``[tool.dagster]`` point here).

The number of unrolled ETO iterations comes from ``ETO_ITERATIONS`` (default 2); a profile may run
fewer for a task (the extra iterations then materialize as explicit no-ops), never more.
"""

from __future__ import annotations

from eto_assets.config import settings

settings.offline_environment()

from dagster import Definitions  # noqa: E402

from eto_assets.assets import build_assets  # noqa: E402
from jobs import build_jobs_and_schedules  # noqa: E402
from resources import EnvironmentsResource, EtoSettings, InferenceResource, MlflowTracking  # noqa: E402


def build_definitions(iterations: int | None = None) -> Definitions:
    n = settings.iterations() if iterations is None else iterations
    jobs, schedules, sensors = build_jobs_and_schedules()
    return Definitions(
        assets=build_assets(n),
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={
            "settings": EtoSettings(),
            "mlflow_tracking": MlflowTracking(),
            "inference": InferenceResource(),
            "envs": EnvironmentsResource(),
        },
    )


defs = build_definitions()
