"""``eto_job`` materializes the whole graph for one task partition, in one process, so the
environment pool (ScienceWorld JVMs) is reused across stages; it observes the run's settings first,
so every materialization records the settings it was made with. Each task has its own weekly
schedule (``eto_weekly_<task>``), off until turned on in the UI, and the ``eto_inputs_changed``
sensor reruns the stale part of a task's graph when one of its outside inputs (the settings groups
the stage table marks as watched: the base model, the expert data) changes."""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    in_process_executor,
    multiprocess_executor,
    schedule,
    sensor,
)

from eto_assets.assets.stage_asset import beta_api, version_inputs
from eto_assets.assets.table import EXPERT, SettingsGroup, StageSpec, inactive_keys
from eto_assets.assets.versions import has_materialization, observe_settings, settings_versions, stale_assets
from eto_assets.config import settings as env
from eto_assets.config.profile import TASKS, ProfileError
from eto_assets.stages.layout import ArtifactLayout
from jobs.queue import device_tags
from resources import EtoSettings, InferenceResource, MlflowTracking

with beta_api():
    ALL_WITH_SETTINGS = AssetSelection.all(include_sources=True)

# ETO_EXECUTOR: in_process reuses the environment pool across stages; multiprocess (the team
# deployment) runs each stage in its own process, one at a time, so a crash in one stage cannot take
# the others' state with it (a run's stages share one device; the run queue spreads runs over devices).
FORKSERVER_PRELOAD = ["eto_assets.definitions", "torch", "transformers", "trl", "mlflow"]
EXECUTORS = {
    "in_process": in_process_executor,
    "multiprocess": multiprocess_executor.configured(
        {
            "max_concurrent": 1,
            # A step forks from a server that has imported the code location and the training stack
            # once: a no-op stage costs a fork, not a fresh interpreter importing torch (spawn).
            "start_method": {"forkserver": {"preload_modules": FORKSERVER_PRELOAD}},
        }
    ),
}

eto_job = define_asset_job(
    name="eto_job",
    selection=ALL_WITH_SETTINGS,
    executor_def=EXECUTORS[env.executor()],
    tags=device_tags(),  # the run queue's device guard (jobs/queue.py)
    description="Settings observed -> expert data -> base model -> SFT -> N x (explore -> pairs -> DPO -> "
    "eval) -> report, for one task.",
)


def weekly_schedule(task: str) -> ScheduleDefinition:
    @schedule(
        name=f"eto_weekly_{task}",
        job=eto_job,
        cron_schedule="0 3 * * 0",
        default_status=DefaultScheduleStatus.STOPPED,
        description=f"Weekly rerun of the ETO loop on {task} (Sunday 03:00).",
    )
    def _weekly(context: ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.strftime("%Y%m%d")
        return RunRequest(run_key=f"{task}-{stamp}", partition_key=task)

    return _weekly


def inputs_sensor(table: list[StageSpec], groups: list[SettingsGroup]) -> SensorDefinition:
    watched = [g for g in groups if g.watched]
    names = ", ".join(g.key for g in watched)

    @sensor(
        name="eto_inputs_changed",
        job=eto_job,
        minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.STOPPED,
        description=f"Reruns the stale assets of a task's graph when an outside input changes ({names}); "
        "tasks never run before are left alone.",
    )
    def _sensor(
        context: SensorEvaluationContext, settings: EtoSettings, inference: InferenceResource
    ) -> SensorResult:
        try:
            profile = settings.load_profile()
        except ProfileError as exc:
            return SensorResult(skip_reason=str(exc))
        inputs = version_inputs(settings, inference)
        asset_graph = context.repository_def.asset_graph
        requests = []
        for task in TASKS:
            if not has_materialization(context.instance, EXPERT, task):
                continue  # never run: nothing to bring up to date
            changed = observe_settings(
                context.instance, settings_versions(watched, profile, task, inputs), task
            )
            if not changed:
                continue
            layout = ArtifactLayout(settings.home_path(), task)
            inactive = inactive_keys(table, profile, task)
            selected, _ = stale_assets(context.instance, asset_graph, table, task, layout, inactive)
            if selected:
                keys = [AssetKey.from_user_string(k) for k in (*selected, *(g.key for g in groups))]
                requests.append(
                    RunRequest(
                        run_key=f"{task}-inputs-{'-'.join(sorted(changed))}-{context.cursor or 0}",
                        partition_key=task,
                        asset_selection=keys,
                    )
                )
        return SensorResult(run_requests=requests, cursor=str(int(context.cursor or 0) + 1))

    return _sensor


@sensor(
    name="eto_dead_runs",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks FAILURE the runs whose worker process is gone (killed with the daemon, OOM), "
    "closes their MLflow runs and frees their place in the run queue (jobs/sweep.py); launches nothing.",
)
def dead_runs_sensor(
    context: SensorEvaluationContext, settings: EtoSettings, mlflow_tracking: MlflowTracking
):
    from jobs.sweep import sweep

    lines = sweep(context.instance, mlflow_tracking.resolved_uri(settings.home_path())).lines()
    return SkipReason("; ".join(lines) if lines else "no run's worker is gone")


def build_jobs_and_schedules(table: list[StageSpec], groups: list[SettingsGroup]):
    sensors = [inputs_sensor(table, groups), dead_runs_sensor]
    return [eto_job], [weekly_schedule(task) for task in TASKS], sensors
