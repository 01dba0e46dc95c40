"""``eto_job`` materializes the whole graph for one task partition, in one process, so the
environment pool (ScienceWorld JVMs) is reused across stages. ``eto_weekly`` reruns it for the
tasks in ``ETO_SCHEDULED_TASKS`` (default ``sciworld``); it is off until turned on in the UI."""

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    in_process_executor,
    schedule,
)

from eto_assets.config.settings import scheduled_tasks

eto_job = define_asset_job(
    name="eto_job",
    selection=AssetSelection.all(),
    executor_def=in_process_executor,
    description="Expert data -> SFT -> N x (explore -> pairs -> DPO -> eval) -> summary, for one task.",
)


@schedule(
    job=eto_job,
    cron_schedule="0 3 * * 0",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Weekly rerun of the ETO loop for the tasks in ETO_SCHEDULED_TASKS.",
)
def eto_weekly(context: ScheduleEvaluationContext):
    stamp = context.scheduled_execution_time.strftime("%Y%m%d") if context.scheduled_execution_time else "now"
    for task in scheduled_tasks():
        yield RunRequest(run_key=f"{task}-{stamp}", partition_key=task)


def build_jobs_and_schedules():
    return [eto_job], [eto_weekly]
