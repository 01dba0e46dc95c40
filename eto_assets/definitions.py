"""The one Definitions object (``workspace.yaml`` and ``[tool.dagster]`` point here): the assets
and the jobs, schedules and sensor derived from the stage table, with their resources.

The number of unrolled ETO iterations comes from ``ETO_ITERATIONS`` (default 2); a profile may run
fewer for a task (the extra iterations then materialize as explicit no-ops), never more.
"""

from __future__ import annotations

from dagster import Definitions

from eto_assets.assets.graph import build_assets
from eto_assets.assets.table import settings_groups, stage_table
from eto_assets.config import settings
from jobs.eto import build_jobs_and_schedules
from resources import EnvironmentsResource, EtoSettings, InferenceResource, MlflowTracking


def build_definitions(iterations: int | None = None) -> Definitions:
    settings.offline_environment()  # no hub downloads, no telemetry, before any model or run loads
    n = settings.iterations() if iterations is None else iterations
    jobs, schedules, sensors = build_jobs_and_schedules(stage_table(n), settings_groups(n))
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
