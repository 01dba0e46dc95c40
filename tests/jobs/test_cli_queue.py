"""``python -m jobs.run --queue`` puts the run in the instance's queue as the UI's launchpad does: a
QUEUED run with the code location's origin (so the daemon can launch it) and the device tag, and no
worker tags (no process of this command will run it)."""

from dagster import DagsterInstance, DagsterRunStatus

from eto_assets.assets.workers import PID_TAG
from jobs.queue import DEVICE_TAG
from jobs.run import main
from tests.conftest import REPO

NANO = REPO / "tests" / "fixtures" / "nano.yaml"


def test_queue_puts_a_launchable_run_in_the_queue_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ETO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["--task", "sciworld", "--profile", str(NANO), "--queue"]) == 0
    out = capsys.readouterr().out
    with DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        [run] = instance.get_runs()
        assert f"queued run {run.run_id}" in out
        assert run.status == DagsterRunStatus.QUEUED
        assert run.remote_job_origin is not None and run.remote_job_origin.location_name == "eto"
        assert run.tags[DEVICE_TAG] == "cpu" and run.tags["dagster/partition"] == "sciworld"
        assert PID_TAG not in run.tags
        assert run.asset_selection and len(run.asset_selection) > 10  # every stale asset of the task
    assert not (tmp_path / "home" / "artifacts" / "sciworld" / "expert").exists()  # no stage ran
