"""MLflow records for every stage (the asset layer calls these; the stages never do): one
experiment per task, one run per materialization, tagged so a run can be traced to its Dagster run
and asset; datasets as run inputs (lineage from expert data to every checkpoint), checkpoints as
versions of the registered model ``eto-<task>``."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from eto_assets.assets.locks import exclusive
from eto_assets.data.files import folder_identity
from eto_assets.stages.layout import BASE_ITERATION
from eto_assets.stages.result import StageResult

PIP_REQUIREMENTS = ["torch", "transformers", "tokenizers", "accelerate"]


def experiment_name(task: str) -> str:
    return f"eto-{task}"


def model_name(task: str) -> str:
    """The registered model whose versions are a task's checkpoints."""
    return f"eto-{task}"


PIPELINE_KIND = "pipeline"  # the eto.kind tag of a pipeline run's parent MLflow run
WARNING_TAG = "eto.warning"  # on a stage run whose WARN checks flagged something (most actions invalid)


def is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store (None for any other store)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def store_lock_path(db: Path) -> Path:
    """The lock a sqlite store is created under, next to it (as ``$DAGSTER_HOME/.eto-instance.lock``
    is for the Dagster instance)."""
    return db.with_name(f".{db.name}.eto-create.lock")


_ready_stores: set[str] = set()


def ensure_store(tracking_uri: str) -> None:
    """Create a sqlite store's schema (MLflow's migrations) under a file lock, once per process.

    MLflow creates the tables of a fresh sqlite store on first use, without a lock: two processes
    starting at once in a fresh home both migrate it and one fails (``table webhooks already exists``,
    ``... in 'alembic_version'; 0 found``). Under the lock the second waits and finds the schema made.
    Other stores are created by their server or administrator: nothing to do."""
    db = sqlite_file(tracking_uri)
    if db is None or tracking_uri in _ready_stores:
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(store_lock_path(db), wait=True):
        MlflowClient(tracking_uri).search_experiments(max_results=1)  # creates and migrates the schema
    _ready_stores.add(tracking_uri)


def use_experiment(tracking_uri: str, task: str, artifact_root: Path | None) -> str:
    """Point MLflow at ``tracking_uri`` and return the task's experiment id (created if needed)."""
    ensure_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    name = experiment_name(task)
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None
    if artifact_root is not None and is_local_store(tracking_uri):
        location = (artifact_root / task).resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently
        return mlflow.get_experiment_by_name(name).experiment_id


def pipeline_parent(tracking_uri: str, task: str, dagster_run_id: str, artifact_root: Path | None) -> str:
    """The parent MLflow run of one pipeline run and task (created on first use): every stage run of
    that Dagster run is nested under it, and it charts reward by iteration."""
    experiment_id = use_experiment(tracking_uri, task, artifact_root)
    client = MlflowClient()
    query = f"tags.`eto.kind` = '{PIPELINE_KIND}' and tags.`dagster.run_id` = '{dagster_run_id}'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    tags = {"eto.kind": PIPELINE_KIND, "eto.task": task, "dagster.run_id": dagster_run_id}
    run = client.create_run(experiment_id, run_name=f"{task}-pipeline-{dagster_run_id[:8]}", tags=tags)
    # A container: FINISHED unless a stage fails (FAILED) or is interrupted (KILLED), see stage_run
    # and end_pipeline.
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def extend_pipeline(tracking_uri: str, run_id: str, summary: dict[str, float] | None = None) -> None:
    """The parent run spans the pipeline: its end moves to now as each stage ends (keeping the status a
    failed or interrupted stage gave it); ``summary`` (the champion's numbers) joins its metrics."""
    client = MlflowClient(tracking_uri)
    if summary:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in summary.items()])
    status = client.get_run(run_id).info.status
    client.set_terminated(run_id, "FINISHED" if status == "RUNNING" else status, int(time.time() * 1000))


def find_pipeline(tracking_uri: str, task: str, dagster_run_id: str) -> str | None:
    """The parent run of a pipeline run, if one was created (creates no store and no experiment)."""
    db = sqlite_file(tracking_uri)
    if db is not None and not db.exists():
        return None
    ensure_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(task))
    if experiment is None:
        return None
    query = f"tags.`eto.kind` = '{PIPELINE_KIND}' and tags.`dagster.run_id` = '{dagster_run_id}'"
    found = client.search_runs([experiment.experiment_id], filter_string=query, max_results=1)
    return found[0].info.run_id if found else None


def end_pipeline(tracking_uri: str, task: str, dagster_run_id: str, status: str) -> str | None:
    """Give a pipeline's parent run its final status (``FAILED`` or ``KILLED``) unless a stage already
    did (a stage interrupted in its run marks it KILLED, which a later FAILED must not undo); returns
    the run id, None when the pipeline never created one."""
    run_id = find_pipeline(tracking_uri, task, dagster_run_id)
    if run_id is not None:
        client = MlflowClient(tracking_uri)
        if client.get_run(run_id).info.status in ("FINISHED", "RUNNING"):
            client.set_terminated(run_id, status)
    return run_id


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C or SIGTERM: Python's KeyboardInterrupt, or Dagster's own form of it inside a step."""
    return isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "DagsterExecutionInterruptedError"


def prefixed(metrics: Mapping[str, float], stage: str) -> dict[str, float]:
    """``eval_seen_avg_reward`` -> ``eval/seen_avg_reward``: metrics grouped by stage in the UI."""
    short = stage.rsplit("_", 1)[-1]  # a method's stage (``rft_eval``) names its metrics like ETO's
    return {f"{stage}/{k.removeprefix(short + '_')}": float(v) for k, v in metrics.items()}


def _iteration_tag(iteration: int) -> str:
    """``it<k>`` in run names; ``base`` for the untrained model's evaluation (iteration -1)."""
    return "base" if iteration == BASE_ITERATION else f"it{iteration}"


@contextmanager
def stage_run(
    tracking_uri: str,
    task: str,
    stage: str,
    iteration: int,
    *,
    artifact_root: Path | None,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    experiment_id = use_experiment(tracking_uri, task, artifact_root)
    all_tags = {"eto.task": task, "eto.stage": stage, "eto.iteration": str(iteration), **(tags or {})}
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{task}-{_iteration_tag(iteration)}-{stage}", tags=all_tags
    ) as run:
        if params:
            log_params(params)
        try:
            yield run
        except BaseException as exc:
            # The stage run ends FAILED (MLflow's own exit) or KILLED; the pipeline's parent run, which
            # shows FINISHED while its stages run, takes the same status.
            status = "KILLED" if interrupted(exc) else "FAILED"
            parent = all_tags.get("mlflow.parentRunId")
            try:
                if parent:
                    MlflowClient(tracking_uri).set_terminated(parent, status)
                if status == "KILLED":
                    mlflow.end_run(status)
            except Exception:  # bookkeeping only: the stage's own error is the one to report
                pass
            raise


def tag_run(tracking_uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    """Tag a (possibly finished) run."""
    ensure_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    for key, value in tags.items():
        client.set_tag(run_id, key, value[:5000])


def log_params(params: Mapping[str, Any]) -> None:
    items = [(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


def log_dataset_input(path: Path, name: str, context: str) -> None:
    """Record an upstream file as a dataset input of the active run (name, digest, location)."""
    source = resolve_dataset_source(path.resolve().as_uri())
    dataset = MetaDataset(source=source, name=name, digest=folder_identity(path))
    mlflow.log_input(dataset, context=context)


def log_history(history: list[dict[str, Any]], prefix: str) -> None:
    """Trainer log rows as step-indexed metrics (``<prefix>/loss`` ...)."""
    for row in history:
        step = int(row.get("step", 0))
        metrics = {
            f"{prefix}/{k.replace('/', '_')}": float(v)
            for k, v in row.items()
            if isinstance(v, int | float) and k not in ("step", "epoch")
        }
        if metrics:
            mlflow.log_metrics(metrics, step=step)


def register_checkpoint(
    task: str, checkpoint: Path, *, iteration: int, stage: str, copy_checkpoint: bool = False
) -> str:
    """Log the checkpoint as a pyfunc model of the active run and register it as a new version of
    ``eto-<task>``, tagged with iteration, stage and the checkpoint's path. Returns the version number.

    By default the model holds only a reference to the checkpoint folder (a few kilobytes; see
    :mod:`eto_assets.assets.policy_model`), so the folder must stay where it is and unchanged for the
    version to load. ``copy_checkpoint`` copies the whole folder into the artifact store instead."""
    import tempfile

    from eto_assets.assets.policy_model import (
        CHECKPOINT_ARTIFACT,
        REFERENCE_ARTIFACT,
        REFERENCE_FILE,
        PolicyModel,
        signature,
        write_reference,
    )

    checkpoint = Path(checkpoint).resolve()
    with tempfile.TemporaryDirectory(prefix="eto-checkpoint-ref-") as tmp:
        if copy_checkpoint:
            artifacts = {CHECKPOINT_ARTIFACT: str(checkpoint)}
        else:
            artifacts = {REFERENCE_ARTIFACT: str(write_reference(checkpoint, Path(tmp) / REFERENCE_FILE))}
        info = mlflow.pyfunc.log_model(
            name=f"{task}-it{iteration}-{stage}",
            python_model=PolicyModel(),
            artifacts=artifacts,
            signature=signature(),
            pip_requirements=PIP_REQUIREMENTS,
        )
    version = mlflow.register_model(info.model_uri, model_name(task))
    client = MlflowClient()
    tags = {
        "eto.iteration": str(iteration),
        "eto.stage": stage,
        "eto.task": task,
        "eto.checkpoint": str(checkpoint),
        "eto.checkpoint_storage": "copy" if copy_checkpoint else "reference",
    }
    for key, value in tags.items():
        client.set_model_version_tag(model_name(task), version.version, key, value)
    return str(version.version)


def record_result(
    result: StageResult,
    task: str,
    iteration: int,
    stage: str,
    *,
    copy_checkpoint: bool = False,
    parent_run_id: str | None = None,
    parent_metrics: tuple[str, ...] = (),
) -> str | None:
    """Log a stage's result into the active run: params, dataset inputs, trainer history, metrics
    (``<stage>/<name>``), tags, artifacts; register the produced policy (by reference to its
    checkpoint folder, or as a copy with ``copy_checkpoint``). Metrics starting with one of
    ``parent_metrics`` also go to the pipeline's parent run at ``step = iteration`` (the chart of
    held-out reward by iteration). Returns the new model version."""
    log_params({"iteration": iteration, **result.params})
    for dataset in result.datasets:
        log_dataset_input(dataset.path, dataset.name, dataset.context)
    if result.history:
        log_history(result.history, result.history_prefix)
    if result.metrics:
        mlflow.log_metrics(prefixed(result.metrics, stage), step=result.metrics_step)
        charted = {k: v for k, v in result.metrics.items() if k.startswith(parent_metrics)}
        if parent_run_id and charted:
            for name, value in prefixed(charted, stage).items():
                MlflowClient().log_metric(parent_run_id, name, value, step=iteration)
    if result.tags:
        mlflow.set_tags(result.tags)
    for path, folder in result.artifacts:
        if path.exists():
            mlflow.log_artifact(str(path), artifact_path=folder)
    if result.policy is not None and result.register_policy:
        return register_checkpoint(
            task,
            Path(result.policy.checkpoint),
            iteration=iteration,
            stage=stage,
            copy_checkpoint=copy_checkpoint,
        )
    return None


def annotate_versions(
    task: str,
    versions: Mapping[int, str],
    policy_tags: Mapping[int, Mapping[str, str]],
    aliases: Mapping[str, int],
) -> None:
    """Tags and aliases a stage gave by iteration, on the registered versions of those iterations'
    policies (``versions``: iteration -> version; iterations without a version are left out)."""
    client = MlflowClient()
    for iteration, tags in policy_tags.items():
        if iteration in versions:
            for key, value in tags.items():
                client.set_model_version_tag(model_name(task), versions[iteration], key, value)
    for alias, iteration in aliases.items():
        if iteration in versions:
            client.set_registered_model_alias(model_name(task), alias, versions[iteration])


# The MLflow UI opens experiments in its GenAI view unless the link asks for the training view.
TRAINING_VIEW = "workflowType=machine_learning"


def run_url(tracking_uri: str, run: mlflow.ActiveRun, ui_url: str) -> str:
    base = f"{ui_url.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return f"{base}?{TRAINING_VIEW}"
