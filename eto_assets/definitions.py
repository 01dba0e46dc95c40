"""The one Definitions object (``workspace.yaml`` and ``[tool.dagster]`` point here): the assets
and the jobs, schedules and sensor derived from the stage table, with their resources.

The number of unrolled ETO iterations comes from ``ETO_ITERATIONS`` (default 2); a profile may run
fewer for a task (the extra iterations then materialize as explicit no-ops), never more.
"""

from __future__ import annotations

from eto_assets.config import settings

# The code location's entry point (Dagster imports this module as others run a main): no hub
# downloads, no telemetry, set before the imports below load transformers and MLflow.
settings.offline_environment()
# Every setting checked before the imports below read them (the resources' defaults): a bad value is
# one error naming the variable and its allowed values, not a traceback from deep in an import.
settings.check_environment()

from dagster import Definitions  # noqa: E402

from eto_assets.assets.graph import build_assets  # noqa: E402
from eto_assets.assets.table import settings_groups, stage_table  # noqa: E402
from jobs.eto import build_jobs_and_schedules  # noqa: E402
from resources import default_resources  # noqa: E402


def build_definitions(iterations: int | None = None) -> Definitions:
    n = settings.iterations() if iterations is None else iterations
    jobs, schedules, sensors = build_jobs_and_schedules(stage_table(n), settings_groups(n))
    return Definitions(
        assets=build_assets(n),
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=default_resources(),
    )


defs = build_definitions()
