"""The one Dagster wrapper every ETO asset uses: resolve the task's run, check the graph against
the profile, open the stage's MLflow run, call the stage, record its result, and build the
Dagster result. An asset definition then says only what it is and which stage it runs."""

import time
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
from eto_assets.config.profile import check_profile_for_model
from eto_assets.envs.pool import EnvironmentPool
from eto_assets.envs.registry import BenchmarkSources
from eto_assets.stages import StageResult, TaskRun, open_task_run
from eto_assets.stages.checks import STAGE_CHECKS, CheckOutcome, run_checks
from eto_assets.stages.compare import record_stage_seconds
from resources import EnvironmentsResource, EtoSettings, InferenceResource, MlflowTracking


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
) -> AssetsDefinition:
    """An asset running ``run_stage`` for ``iteration`` of a task partition (``stage`` names its
    MLflow run; without ``mlflow_run`` only registered-model aliases are recorded). The stage's
    checks (:data:`STAGE_CHECKS`) are declared on the asset and reported with each materialization."""
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
        run = open_run(context.partition_key, settings, envs)
        check_iterations(run, graph_iterations)
        if iteration > run.iterations:
            skipped = f"profile {run.profile.name!r} runs {run.iterations} iteration(s) for {run.task}"
            checks = [AssetCheckResult(check_name=s.name, passed=True, description=skipped) for s in specs]
            return MaterializeResult(metadata={"skipped": skipped}, check_results=checks)
        tools = StageTools(settings, inference, envs.pool)
        home = settings.home_path()
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
            started = time.perf_counter()
            with user_errors():
                result = run_stage(run, tools)
            record_stage_seconds(run.layout, iteration, stage, time.perf_counter() - started)
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
        return MaterializeResult(metadata=metadata, check_results=checks)

    return _stage
