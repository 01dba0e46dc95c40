"""``eto_job`` materializes the whole graph for one task partition, in one process, so the
environment pool (ScienceWorld JVMs) is reused across stages. Each task has its own weekly
schedule (``eto_weekly_<task>``), off until turned on in the UI, and the ``eto_inputs_changed``
sensor requests a rerun of a task's graph when its expert data source or base model changes."""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    in_process_executor,
    schedule,
    sensor,
)

from eto_assets.config.profile import TASKS, ProfileError
from jobs.fingerprint import input_fingerprint
from resources import EtoSettings

eto_job = define_asset_job(
    name="eto_job",
    selection=AssetSelection.all(),
    executor_def=in_process_executor,
    description="Expert data -> SFT -> N x (explore -> pairs -> DPO -> eval) -> summary, for one task.",
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


def has_run(context: SensorEvaluationContext, task: str) -> bool:
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("expert_trajectories"), asset_partitions=[task]), limit=1
    )
    return bool(records.records)


@sensor(
    job=eto_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description="Reruns a task's graph when its expert data source or base model setting changes "
    "(fingerprints of the setting and the files it names); tasks never run before are left alone.",
)
def eto_inputs_changed(context: SensorEvaluationContext, settings: EtoSettings) -> SensorResult:
    import json

    previous = json.loads(context.cursor) if context.cursor else {}
    try:
        profile = settings.load_profile()
    except ProfileError as exc:
        return SensorResult(skip_reason=str(exc))
    current = {task: input_fingerprint(settings.base_model, profile, task) for task in TASKS}
    requests = [
        RunRequest(run_key=f"{task}-inputs-{fingerprint[:12]}", partition_key=task)
        for task, fingerprint in current.items()
        if task in previous and previous[task] != fingerprint and has_run(context, task)
    ]
    return SensorResult(run_requests=requests, cursor=json.dumps(current))


def build_jobs_and_schedules():
    return [eto_job], [weekly_schedule(task) for task in TASKS], [eto_inputs_changed]
