"""Clean up after runs that were killed (SIGKILL, OOM, a lost machine): their Dagster run stays
STARTED and their MLflow stage runs RUNNING forever, and a model version registered just before the
kill belongs to no materialization.

The sweep (run by the CLI on start, callable from a script) marks a Dagster run FAILURE only when its
worker process is known to be gone: the run's ``eto/worker_pid`` / ``eto/worker_host`` /
``eto/worker_started`` tags (set by the CLI and by every asset) name a process of this host that no
longer exists (or is another process that reused the pid). Runs without these tags, or of another
host, or whose tags a re-execution inherited from its parent run (``eto/worker_run`` names another run),
are left to Dagster's run monitoring (``run_monitoring`` in ``dagster.yaml``). MLflow stage runs
still RUNNING whose Dagster run (in this instance) has ended are closed as KILLED, and the model
versions they registered are tagged ``eto.orphan=true``: a stage registers its checkpoint just before
its materialization is recorded, so a version whose stage run was killed belongs to no
materialization (none of Dagster's ``model_version`` metadata names it). The parent MLflow run of a
pipeline whose worker is gone ends KILLED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eto_assets.assets.workers import HOST_TAG, PID_TAG, run_worker_gone

ORPHAN_TAG = "eto.orphan"


@dataclass
class SweepReport:
    failed_runs: list[str] = field(default_factory=list)
    killed_mlflow_runs: list[str] = field(default_factory=list)
    orphan_versions: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"marked Dagster run {r} FAILURE: its worker process is gone" for r in self.failed_runs]
        out += [f"closed MLflow run {r} as KILLED: its Dagster run ended" for r in self.killed_mlflow_runs]
        out += [
            f"tagged model version {v} {ORPHAN_TAG}=true: its stage run was killed"
            for v in self.orphan_versions
        ]
        return out


def sweep_dagster(instance, report: SweepReport) -> None:
    from dagster import DagsterRunStatus, RunsFilter

    in_progress = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING]
    for run in instance.get_runs(filters=RunsFilter(statuses=in_progress)):
        gone = run_worker_gone(run.run_id, dict(run.tags))
        if gone:
            instance.report_run_failed(
                run,
                f"worker process {run.tags.get(PID_TAG)} on {run.tags.get(HOST_TAG)} is gone (killed?); "
                "marked failed by the ETO stale-run sweep",
            )
            report.failed_runs.append(run.run_id)
        elif gone is None:
            report.left_alone.append(run.run_id)


def sweep_mlflow(instance, tracking_uri: str, report: SweepReport) -> None:
    from dagster import DagsterRunStatus
    from mlflow.tracking import MlflowClient

    from eto_assets.assets.tracking import PIPELINE_KIND, ensure_store, model_name

    ensure_store(tracking_uri)  # a fresh sqlite store is created by one process at a time
    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments(filter_string="name LIKE 'eto-%'")
    if not experiments:
        return
    # The parent run of a pipeline whose worker was killed: KILLED, not the FINISHED it shows while
    # its stages run.
    for run_id in report.failed_runs:
        query = f"tags.`eto.kind` = '{PIPELINE_KIND}' and tags.`dagster.run_id` = '{run_id}'"
        for parent in client.search_runs([e.experiment_id for e in experiments], query, max_results=10):
            client.set_terminated(parent.info.run_id, "KILLED")
            client.set_tag(parent.info.run_id, "eto.killed_reason", f"Dagster run {run_id}: worker gone")
            report.killed_mlflow_runs.append(parent.info.run_id)
    ended = {DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS, DagsterRunStatus.CANCELED}
    running = client.search_runs(
        [e.experiment_id for e in experiments], "attributes.status = 'RUNNING'", max_results=1000
    )
    killed_by_task: dict[str, list[str]] = {}
    for run in running:
        dagster_run_id = run.data.tags.get("dagster.run_id")
        if not dagster_run_id:
            continue
        dagster_run = instance.get_run_by_id(dagster_run_id)
        if dagster_run is None or dagster_run.status not in ended:
            continue  # another instance's run, or one still going
        client.set_terminated(run.info.run_id, "KILLED")
        client.set_tag(
            run.info.run_id,
            "eto.killed_reason",
            f"Dagster run {dagster_run_id} ended: {dagster_run.status.value}",
        )
        report.killed_mlflow_runs.append(run.info.run_id)
        task = run.data.tags.get("eto.task")
        if task:
            killed_by_task.setdefault(task, []).append(run.info.run_id)
    for task, run_ids in killed_by_task.items():
        name = model_name(task)
        for run_id in run_ids:
            for version in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
                if version.tags.get(ORPHAN_TAG) != "true":
                    client.set_model_version_tag(name, version.version, ORPHAN_TAG, "true")
                    report.orphan_versions.append(f"{name} v{version.version}")


def sweep(instance, tracking_uri: str | None) -> SweepReport:
    """Mark dead runs failed, close their MLflow runs, tag orphan versions (see the module doc)."""
    report = SweepReport()
    sweep_dagster(instance, report)
    if tracking_uri and not (
        tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists()
    ):
        sweep_mlflow(instance, tracking_uri, report)
    return report
