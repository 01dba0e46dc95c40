"""The one Definitions object (``workspace.yaml`` and ``[tool.dagster]`` point here).

The number of unrolled ETO iterations comes from ``ETO_ITERATIONS`` (default 2); a profile can
run fewer for a task (the extra iterations then materialize as explicit no-ops).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from dagster import Definitions  # noqa: E402

from eto_assets.assets import (  # noqa: E402
    build_iteration_assets,
    build_summary_asset,
    eval_report_asset,
    expert_trajectories,
    sft_checkpoint,
)
from jobs import build_jobs_and_schedules  # noqa: E402
from resources import EnvironmentPool, EtoSettings, InferenceResource, MlflowTracking  # noqa: E402


def iteration_count() -> int:
    raw = os.environ.get("ETO_ITERATIONS", "2")
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"ETO_ITERATIONS={raw!r} is not an integer") from exc
    if not 0 <= value <= 10:
        raise ValueError(f"ETO_ITERATIONS={value} is outside 0..10")
    return value


def build_definitions(iterations: int | None = None) -> Definitions:
    n = iteration_count() if iterations is None else iterations
    assets = [expert_trajectories, sft_checkpoint, eval_report_asset(0)]
    for k in range(1, n + 1):
        assets.extend(build_iteration_assets(k))
    assets.append(build_summary_asset(n))
    jobs, schedules = build_jobs_and_schedules()
    return Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        resources={
            "settings": EtoSettings(),
            "mlflow_tracking": MlflowTracking(),
            "inference": InferenceResource(),
            "envs": EnvironmentPool(),
        },
    )


defs = build_definitions()
