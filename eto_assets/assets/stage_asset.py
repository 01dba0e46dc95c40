"""The one Dagster wrapper every ETO asset uses: resolve the task's run, check the graph against
the profile, open the stage's MLflow run, call the stage, record its result, and build the
Dagster result. An asset definition then says only what it is and which stage it runs."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from eto_assets import tracking
from eto_assets.assets.common import TASK_PARTITIONS, dagster_metadata, settings_params, user_errors
from eto_assets.config.memory import trim
from eto_assets.config.profile import check_profile_for_model
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import BenchmarkSources
from eto_assets.stages import StageResult, TaskRun, open_task_run
from eto_assets.stages.checks import STAGE_CHECKS, CheckOutcome, run_checks
from eto_assets.stages.compare import record_stage_seconds
from eto_assets.stages.errors import root_cause
from eto_assets.stages.locks import StageBusy, stage_lock
from eto_assets.stages.meter import MemoryPeak
from jobs.fingerprint import forget_fingerprint, record_fingerprint
from resources import EnvironmentsResource, EtoSettings, InferenceResource, MlflowTracking
from resources.preflight import preflight


@dataclass(frozen=True)
class StageTools:
    """What a stage may need besides its task run, taken from the run's resources."""

    settings: EtoSettings
    inference: InferenceResource
    envs: EnvironmentPool


StageFn = Callable[[TaskRun, StageTools], StageResult]


def check_iterations(run: TaskRun, graph_iterations: int) -> None:
    """The profile may run fewer iterations than the graph has (the rest are no-ops), never more."""
    if run.iterations > graph_iterations:
        raise Failure(
            description=f"profile {run.profile.name!r} runs {run.iterations} ETO iterations for {run.task}, "
            f"but the asset graph has {graph_iterations}: set ETO_ITERATIONS={run.iterations} and reload "
            f"the code location (or lower `iterations` in the profile)",
            allow_retries=False,
        )


def check_results(outcomes: Sequence[CheckOutcome]) -> list[AssetCheckResult]:
    return [
        AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            severity=AssetCheckSeverity.WARN if o.severity == "WARN" else AssetCheckSeverity.ERROR,
            description=o.description,
            metadata=dagster_metadata(o.metadata),
        )
        for o in outcomes
    ]


def stage_checks(stage: str, run: TaskRun, iteration: int, tools: "StageTools") -> list[AssetCheckResult]:
    """The stage's checks on what it wrote; a check that cannot run fails with the reason."""
    try:
        outcomes = run_checks(stage, run, iteration, tools.inference.open)
    except Exception as exc:  # reported as failed checks, the materialization stands
        outcomes = [CheckOutcome(s.name, False, f"{type(exc).__name__}: {exc}") for s in STAGE_CHECKS[stage]]
    return check_results(outcomes)


def as_failure(exc: Exception, label: str, key: AssetKey) -> Failure:
    """``exc`` as a Failure whose description is its root cause in one line, with that cause, its
    type and the stage as metadata (the CLI prints them; the UI shows them on the failed step)."""
    if isinstance(exc, StageBusy):
        error_type, line = "StageBusy", str(exc)
    else:
        error_type, line = root_cause(exc)
    retry = exc.allow_retries if isinstance(exc, Failure) else not isinstance(exc, StageBusy)
    return Failure(
        description=line,
        metadata={
            "cause": MetadataValue.text(line),
            "error_type": MetadataValue.text(error_type),
            "stage": MetadataValue.text(label),
            "asset": MetadataValue.text(key.to_user_string()),
        },
        allow_retries=retry,
    )


def tag_worker(context: AssetExecutionContext) -> None:
    """Name this process as the run's worker (pid, host, start time), so a later sweep can tell a
    run whose process was killed from one still going."""
    from jobs.sweep import PID_TAG, worker_tags

    try:
        if PID_TAG not in context.run.tags:
            context.instance.add_run_tags(context.run_id, worker_tags())
    except Exception as exc:  # bookkeeping only: never fail a stage for it
        context.log.debug(f"could not tag the run's worker: {exc}")


def preflight_or_fail(settings: EtoSettings, mlflow_tracking: MlflowTracking, inference: InferenceResource):
    problems = preflight(
        home=settings.home_path(),
        backend=inference.backend,
        base_model=settings.base_model,
        tracking_uri=mlflow_tracking.tracking_uri,
    )
    if problems:
        raise Failure(description="; ".join(problems), allow_retries=False)


def stage_fingerprint(
    run: TaskRun, settings: EtoSettings, inference: InferenceResource, graph_iterations: int, key: AssetKey
) -> str:
    """What the CLI compares to tell whether this asset is up to date (``jobs.fingerprint``)."""
    from jobs.fingerprint import stage_fingerprints

    return stage_fingerprints(
        run.profile,
        run.task,
        base_model=settings.base_model,
        backend=inference.backend,
        iterations=graph_iterations,
        data_dir=settings.data_dir,
    )[key.to_user_string()]


def open_run(task: str, settings: EtoSettings, envs: EnvironmentsResource) -> TaskRun:
    with user_errors():
        sources = BenchmarkSources(
            home=settings.home_path(),
            data_dir=settings.data_path(),
            alfworld_data=settings.alfworld_data,
            sciworld_jvms=envs.sciworld_jvms,
        )
        profile = settings.load_profile()
        check_profile_for_model(profile, settings.base_model)
        return open_task_run(task, profile, sources)


def stage_asset(
    *,
    name: str,
    stage: str,
    iteration: int,
    graph_iterations: int,
    deps: Sequence[AssetKey],
    kinds: set[str],
    description: str,
    run_stage: StageFn,
    group: str,
    key_prefix: str | None = None,
    mlflow_run: bool = True,
    skip: Callable[[TaskRun], str | None] | None = None,
) -> AssetsDefinition:
    """An asset running ``run_stage`` for ``iteration`` of a task partition (``stage`` names its
    MLflow run; without ``mlflow_run`` only registered-model aliases are recorded). The stage's
    checks (:data:`STAGE_CHECKS`) are declared on the asset and reported with each materialization.
    ``skip`` gives the reason the profile leaves this asset out (it then materializes as a no-op),
    as iterations past the profile's are."""
    key = AssetKey([key_prefix, name] if key_prefix else [name])
    specs = [
        AssetCheckSpec(s.name, asset=key, description=s.description) for s in STAGE_CHECKS.get(stage, ())
    ]

    @asset(
        name=name,
        key_prefix=key_prefix,
        partitions_def=TASK_PARTITIONS,
        group_name=group,
        deps=list(deps),
        kinds=kinds,
        check_specs=specs,
        description=description,
    )
    def _stage(
        context: AssetExecutionContext,
        settings: EtoSettings,
        mlflow_tracking: MlflowTracking,
        inference: InferenceResource,
        envs: EnvironmentsResource,
    ) -> MaterializeResult:
        label = f"{key_prefix}/{stage}" if key_prefix else stage
        try:
            return run_asset(context, settings, mlflow_tracking, inference, envs)
        except Exception as exc:  # every failure as one line naming its root cause
            raise as_failure(exc, label, key) from exc

    def run_asset(
        context: AssetExecutionContext,
        settings: EtoSettings,
        mlflow_tracking: MlflowTracking,
        inference: InferenceResource,
        envs: EnvironmentsResource,
    ) -> MaterializeResult:
        tag_worker(context)
        if stage == "expert":  # the first asset: check the settings before any heavy work
            preflight_or_fail(settings, mlflow_tracking, inference)
        run = open_run(context.partition_key, settings, envs)
        check_iterations(run, graph_iterations)
        home = settings.home_path()
        fingerprint = stage_fingerprint(run, settings, inference, graph_iterations, key)
        skipped = skip(run) if skip is not None else None
        if iteration > run.iterations:
            skipped = f"profile {run.profile.name!r} runs {run.iterations} iteration(s) for {run.task}"
        if skipped:
            checks = [AssetCheckResult(check_name=s.name, passed=True, description=skipped) for s in specs]
            record_fingerprint(home, run.task, key.to_user_string(), fingerprint)
            return MaterializeResult(metadata={"skipped": skipped}, check_results=checks)
        tools = StageTools(settings, inference, envs.pool)
        with stage_lock(home, run.task, stage, iteration, context.run_id):
            forget_fingerprint(home, run.task, key.to_user_string())  # until this materialization succeeds
            materialized = materialize_stage(context, run, tools, mlflow_tracking, home)
            record_fingerprint(home, run.task, key.to_user_string(), fingerprint)
        return materialized

    def materialize_stage(
        context: AssetExecutionContext,
        run: TaskRun,
        tools: StageTools,
        mlflow_tracking: MlflowTracking,
        home,
    ) -> MaterializeResult:
        settings, inference = tools.settings, tools.inference
        if not mlflow_run:
            with user_errors():
                result = run_stage(run, tools)
            parent = mlflow_tracking.parent_run(home, run.task, context.run_id)
            tracking.record_without_run(result, run.task, parent)
            return MaterializeResult(metadata=dagster_metadata(result.metadata))
        params = settings_params(settings, inference, run.profile, run.task)
        with mlflow_tracking.stage_run(home, run.task, stage, iteration, context=context, params=params) as (
            mlflow_run_,
            link,
        ):
            try:
                with user_errors(), MemoryPeak() as peak:
                    result = run_stage(run, tools)
            finally:
                trim()  # the next stage runs in this process: hand back what this one freed
            record_stage_seconds(run.layout, iteration, stage, peak.wall_s)
            result.metrics.update(peak.metrics())  # memory the stage needed, itself and its environments
            for warning in result.warnings:
                context.log.warning(warning)
            version = mlflow_tracking.record_result(result, run.task, iteration, stage, mlflow_run_)
        metadata = dagster_metadata(result.metrics)  # the numbers first, rounded
        if version is not None and result.policy is not None:
            result.policy.with_registration(version, mlflow_run_.info.run_id).write(run.layout, iteration)
            metadata["model_version"] = f"{tracking.model_name(run.task)} v{version}"
        metadata.update(dagster_metadata(result.metadata))
        metadata["mlflow_run"] = MetadataValue.url(link)  # opens the training view, not GenAI
        metadata["mlflow_run_id"] = MetadataValue.text(mlflow_run_.info.run_id)
        checks = stage_checks(stage, run, iteration, tools) if specs else []
        warned = [c for c in checks if not c.passed and c.severity == AssetCheckSeverity.WARN]
        if warned:
            text = "; ".join(f"{c.check_name}: {c.description}" for c in warned)
            mlflow_tracking.tag_run(home, mlflow_run_.info.run_id, tracking.WARNING_TAG, text)
            metadata["warning"] = MetadataValue.text(text)
            context.log.warning(f"{key.to_user_string()}: {text}")
        return MaterializeResult(metadata=metadata, check_results=checks)

    return _stage
