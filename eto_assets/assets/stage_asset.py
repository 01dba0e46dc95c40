"""The one Dagster wrapper every ETO asset uses, built from a row of the stage table: resolve the
task's run, check the graph against the profile, open the stage's MLflow run, call the stage, record
its result (MLflow run, registered version, Dagster metadata, data version, asset checks). The stage
itself returns values and never sees Dagster or MLflow."""

import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BetaWarning,
    DataVersion,
    DataVersionsByPartition,
    Failure,
    MaterializeResult,
    MetadataValue,
    SourceAsset,
    asset,
    observable_source_asset,
)

from eto_assets.assets import tracking
from eto_assets.assets.common import TASK_PARTITIONS, dagster_metadata, settings_params, user_errors
from eto_assets.assets.errors import root_cause
from eto_assets.assets.locks import StageBusy, claim_task, stage_lock
from eto_assets.assets.meter import MemoryPeak
from eto_assets.assets.table import SettingsGroup, StageSpec, StageTools, VersionInputs
from eto_assets.assets.versions import (
    latest_metadata,
    observe_settings,
    output_version,
    settings_version,
    settings_versions,
    skipped_version,
)
from eto_assets.assets.workers import RUN_TAG, worker_tags
from eto_assets.config.memory import trim
from eto_assets.config.profile import TASKS, check_profile_for_model
from eto_assets.envs.registry import BenchmarkSources
from eto_assets.stages import TaskRun, open_task_run
from eto_assets.stages.checks import CheckOutcome
from eto_assets.stages.layout import ETO
from eto_assets.stages.methods import STARTS
from eto_assets.stages.result import StageResult
from resources import EnvironmentsResource, EtoSettings, InferenceResource, MlflowTracking
from resources.preflight import preflight


@contextmanager
def beta_api() -> Iterator[None]:
    """Dagster 1.13 calls observable source assets, and jobs that observe them, beta: the project
    pins dagster<1.14 and its tests cover what it relies on (observation in a run, staleness), so
    the warning is noise for users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        yield


class RunResources(NamedTuple):
    """The run's resources, as the wrapper passes them along."""

    settings: EtoSettings
    mlflow_tracking: MlflowTracking
    inference: InferenceResource
    envs: EnvironmentsResource


def version_inputs(settings: EtoSettings, inference: InferenceResource) -> VersionInputs:
    return VersionInputs(settings.base_model, inference.backend, settings.data_dir)


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


def run_checks(spec: StageSpec, run: TaskRun, tools: StageTools) -> list[AssetCheckResult]:
    """The stage's checks on what it wrote; a check that cannot run fails with the reason."""
    if spec.check is None:
        return []
    try:
        outcomes = spec.check(run, tools)
    except Exception as exc:  # reported as failed checks, the materialization stands
        outcomes = [CheckOutcome(s.name, False, f"{type(exc).__name__}: {exc}") for s in spec.checks]
    return check_results(outcomes)


def as_failure(exc: Exception, spec: StageSpec) -> Failure:
    """``exc`` as a Failure whose description is its root cause in one line, with that cause, its
    type and the stage as metadata (the CLI prints them; the UI shows them on the failed step)."""
    if isinstance(exc, StageBusy):
        error_type, line = "StageBusy", str(exc)
    else:
        error_type, line = root_cause(exc)
    retry = exc.allow_retries if isinstance(exc, Failure) else not isinstance(exc, StageBusy)
    label = f"{spec.key.rpartition('/')[0]}/{spec.stage}" if "/" in spec.key else spec.stage
    return Failure(
        description=line,
        metadata={
            "cause": MetadataValue.text(line),
            "error_type": MetadataValue.text(error_type),
            "stage": MetadataValue.text(label),
            "asset": MetadataValue.text(spec.key),
        },
        allow_retries=retry,
    )


def tag_worker(context: AssetExecutionContext) -> None:
    """Name the run's worker process, so a later sweep can tell a killed run from a live one: this
    process, or under the multiprocess executor (each stage in a child process that ends with its
    stage) its parent, the run's orchestrator, which lives as long as the run."""
    try:
        if context.run.tags.get(RUN_TAG) != context.run_id:  # untagged, or a parent's tags
            multiprocess = context.job_def.executor_def.name == "multiprocess"
            pid = os.getppid() if multiprocess else os.getpid()
            context.instance.add_run_tags(context.run_id, worker_tags(pid, context.run_id))
    except Exception as exc:  # bookkeeping only: never fail a stage for it
        context.log.debug(f"could not tag the run's worker: {exc}")


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


class StageAssets:
    """Builds the assets of one stage table (``table``, ``n`` unrolled iterations): each stage's
    asset, and the settings groups as observable source assets."""

    def __init__(self, table: list[StageSpec], groups: list[SettingsGroup], n: int) -> None:
        self.table, self.groups, self.n = table, {g.name: g for g in groups}, n

    def policy_versions(self, context: AssetExecutionContext, task: str, method: str = ETO) -> dict[int, str]:
        """Iteration -> registered model version of ``method``'s policy, from Dagster's latest
        records; a method's iteration 0 is the version of the policy it starts from."""
        out = {}
        if method in STARTS:
            source, iteration = STARTS[method]
            start = self.policy_versions(context, task, source).get(iteration)
            if start:
                out[0] = start
        for spec in self.table:
            if spec.produces_policy and spec.method == method:
                version = latest_metadata(context.instance, spec.key, task).get("model_version")
                if version:
                    out[spec.iteration] = str(version)
        return out

    def wall_seconds(self, context: AssetExecutionContext, task: str) -> dict[tuple[str, int], float]:
        """(method, iteration) -> wall time of its stages' latest materializations."""
        out: dict[tuple[str, int], float] = {}
        for spec in self.table:
            seconds = latest_metadata(context.instance, spec.key, task).get("wall_seconds")
            if isinstance(seconds, int | float):
                key = (spec.method, spec.iteration)
                out[key] = out.get(key, 0.0) + float(seconds)
        return out

    def settings_asset(self, group: SettingsGroup) -> SourceAsset:
        with beta_api():
            return self._settings_asset(group)

    def _settings_asset(self, group: SettingsGroup) -> SourceAsset:
        @observable_source_asset(
            key=AssetKey.from_user_string(group.key),
            partitions_def=TASK_PARTITIONS,
            group_name="settings",
            description=group.description,
        )
        def _observe(context, settings: EtoSettings, inference: InferenceResource) -> DataVersionsByPartition:
            with user_errors():
                profile = settings.load_profile()
            inputs = version_inputs(settings, inference)
            tasks = [context.partition_key] if context.has_partition_key else list(TASKS)
            return DataVersionsByPartition(
                {t: DataVersion(settings_version(group, profile, t, inputs)) for t in tasks}
            )

        return _observe

    def stage_asset(self, spec: StageSpec) -> AssetsDefinition:
        key = AssetKey.from_user_string(spec.key)
        specs = [AssetCheckSpec(s.name, asset=key, description=s.description) for s in spec.checks]
        deps = [
            AssetKey.from_user_string(d) for d in (*spec.deps, *(self.groups[g].key for g in spec.settings))
        ]

        @asset(
            key=key,
            partitions_def=TASK_PARTITIONS,
            group_name=spec.group,
            deps=deps,
            kinds=set(spec.kinds),
            check_specs=specs,
            description=spec.description,
            code_version=spec.code_version,
        )
        def _stage(
            context: AssetExecutionContext,
            settings: EtoSettings,
            mlflow_tracking: MlflowTracking,
            inference: InferenceResource,
            envs: EnvironmentsResource,
        ) -> MaterializeResult:
            resources = RunResources(settings, mlflow_tracking, inference, envs)
            try:
                return self.materialize(spec, specs, context, resources)
            except Exception as exc:  # every failure as one line naming its root cause
                raise as_failure(exc, spec) from exc

        return _stage

    def materialize(
        self,
        spec: StageSpec,
        specs: list[AssetCheckSpec],
        context: AssetExecutionContext,
        resources: RunResources,
    ) -> MaterializeResult:
        settings, mlflow_tracking, inference, envs = resources
        tag_worker(context)
        home = settings.home_path()
        claim_task(home, context.partition_key, context.run_id, context.instance)
        if spec.preflight:  # the first asset: check the settings before any heavy work
            problems = preflight(
                home=home,
                backend=inference.backend,
                base_model=settings.base_model,
                tracking_uri=mlflow_tracking.tracking_uri,
            )
            if problems:
                raise Failure(description="; ".join(problems), allow_retries=False)
        run = open_run(context.partition_key, settings, envs)
        check_iterations(run, self.n)
        # A run whose settings differ from the last observation (a launchpad override, a selection
        # without the settings assets) records them, so the next check sees what this run used.
        groups = [self.groups[g] for g in spec.settings]
        observe_settings(
            context.instance,
            settings_versions(groups, run.profile, run.task, version_inputs(settings, inference)),
            run.task,
        )
        skipped = spec.skipped(run.profile, run.task)
        if skipped:
            checks = [AssetCheckResult(check_name=s.name, passed=True, description=skipped) for s in specs]
            return MaterializeResult(
                metadata={"skipped": skipped},
                check_results=checks,
                data_version=DataVersion(skipped_version(skipped)),
            )
        tools = StageTools(
            base_model=settings.base_model,
            accelerate_config=settings.accelerate_config,
            open_backend=inference.open,
            envs=envs.pool,
            wall_seconds=lambda: self.wall_seconds(context, run.task),
        )
        with stage_lock(home, run.task, spec.stage, spec.iteration, context.run_id):
            return self.record(spec, run, tools, context, resources)

    def record(
        self,
        spec: StageSpec,
        run: TaskRun,
        tools: StageTools,
        context: AssetExecutionContext,
        resources: RunResources,
    ) -> MaterializeResult:
        settings, mlflow_tracking, inference, _ = resources
        home = settings.home_path()
        uri = mlflow_tracking.resolved_uri(home)
        artifact_root = mlflow_tracking.artifact_root(home)
        parent = tracking.pipeline_parent(uri, run.task, context.run_id, artifact_root)
        tags = {
            "dagster.run_id": context.run_id,
            "dagster.asset_key": spec.key,
            "dagster.partition": run.task,
            "mlflow.parentRunId": parent,
            "eto.method": spec.method_tag,
        }
        params = settings_params(settings, inference, run.profile, run.task)
        started = time.perf_counter()
        with tracking.stage_run(
            uri, run.task, spec.stage, spec.iteration, artifact_root=artifact_root, tags=tags, params=params
        ) as mlflow_run:
            try:
                with user_errors(), MemoryPeak() as peak:
                    result: StageResult = spec.run(run, tools)
            finally:
                trim()  # the next stage runs in this process: hand back what this one freed
            result.metrics.update(peak.metrics())  # memory the stage needed, itself and its environments
            for warning in result.warnings:
                context.log.warning(warning)
            version = tracking.record_result(
                result, run.task, spec.iteration, spec.stage,
                copy_checkpoint=mlflow_tracking.copy_checkpoints, parent_run_id=parent,
                parent_metrics=spec.parent_metrics,
            )  # fmt: skip
            versions = self.policy_versions(context, run.task, spec.method)
            if version is not None:
                versions[spec.iteration] = version
                result.policy_tags.setdefault(spec.iteration, {})["eto.method"] = spec.method_tag
            elif result.policy is not None and result.policy.carried_over_from in versions:
                versions[spec.iteration] = versions[result.policy.carried_over_from]  # same weights
            evaluated = versions.get(spec.iteration)
            if spec.parent_metrics and evaluated and not spec.produces_policy:
                mlflow_tracking_tags = {
                    "eto.model_version": evaluated,
                    "eto.model_uri": f"models:/{tracking.model_name(run.task)}/{evaluated}",
                }
                tracking.tag_run(uri, mlflow_run.info.run_id, mlflow_tracking_tags)
            tracking.annotate_versions(run.task, versions, result.policy_tags, result.aliases)
            if spec.tag_parent and result.tags:
                tracking.tag_run(uri, parent, result.tags)
        tracking.extend_pipeline(uri, parent, result.summary)  # spans the pipeline; the champion's numbers
        metadata = dagster_metadata(result.metrics)  # the numbers first, rounded
        metadata["wall_seconds"] = round(time.perf_counter() - started, 2)
        if spec.produces_policy and spec.iteration in versions:
            metadata["model_version"] = versions[spec.iteration]
            metadata["registered_model"] = f"{tracking.model_name(run.task)} v{versions[spec.iteration]}"
        elif evaluated and spec.parent_metrics:
            metadata["evaluated_model"] = f"{tracking.model_name(run.task)} v{evaluated}"
        for alias, iteration in result.aliases.items():
            if iteration in versions:
                metadata[alias] = f"models:/{tracking.model_name(run.task)}@{alias} (v{versions[iteration]})"
        metadata.update(dagster_metadata(result.metadata))
        link = tracking.run_url(uri, mlflow_run, mlflow_tracking.ui_url)
        metadata["mlflow_run"] = MetadataValue.url(link)  # opens the training view, not GenAI
        metadata["mlflow_run_id"] = MetadataValue.text(mlflow_run.info.run_id)
        checks = run_checks(spec, run, tools)
        warned = [c for c in checks if not c.passed and c.severity == AssetCheckSeverity.WARN]
        if warned:
            text = "; ".join(f"{c.check_name}: {c.description}" for c in warned)
            tracking.tag_run(uri, mlflow_run.info.run_id, {tracking.WARNING_TAG: text})
            metadata["warning"] = MetadataValue.text(text)
            context.log.warning(f"{spec.key}: {text}")
        data_version = output_version(spec, run.layout)
        metadata["data_version"] = MetadataValue.text(data_version)  # the files' digest, shown in the UI
        return MaterializeResult(
            metadata=metadata,
            check_results=checks,
            data_version=DataVersion(data_version),
        )


def build_stage_assets(table: list[StageSpec], groups: list[SettingsGroup], n: int) -> list:
    """Every stage's asset and every settings group's observable source asset."""
    builder = StageAssets(table, groups, n)
    return [*(builder.settings_asset(g) for g in groups), *(builder.stage_asset(s) for s in table)]
