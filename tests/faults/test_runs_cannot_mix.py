"""Two runs of one task never interleave: a run holds its task from its first step to its end, so a
second run (other settings, same ``ETO_HOME``) is refused in one line naming the first instead of
replacing the checkpoint the first run's later stages read. The lease follows Dagster's own record
of the holding run (queued or running, worker alive), so a finished, failed or killed run frees it.
A real sqlite Dagster instance and the real CLI on the nano profile."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.storage.dagster_run import DagsterRun

from eto_assets.assets.locks import StageBusy, claim_task, task_lease_path
from eto_assets.assets.workers import worker_tags
from jobs.run import open_instance, prepare_instance_home
from tests.conftest import REPO

NANO = (REPO / "tests" / "fixtures" / "nano.yaml").read_text()


def _add_run(instance: DagsterInstance, status: DagsterRunStatus, tags: dict[str, str]) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(DagsterRun(job_name="eto_job", run_id=run_id, status=status, tags=tags))
    return run_id


@pytest.fixture
def instance(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", "")
    with open_instance(prepare_instance_home(tmp_path / "home")) as instance:
        yield instance


def test_a_running_run_holds_its_task_until_dagster_says_it_ended(tmp_path, instance):
    home = tmp_path / "home"
    first = _add_run(instance, DagsterRunStatus.STARTED, worker_tags())  # this process: alive
    claim_task(home, "sciworld", first, instance)
    claim_task(home, "sciworld", first, instance)  # its later steps find the task theirs
    second = _add_run(instance, DagsterRunStatus.STARTED, worker_tags())
    with pytest.raises(StageBusy, match=f"sciworld is being run by Dagster run {first} .*wait for it"):
        claim_task(home, "sciworld", second, instance)
    claim_task(home, "alfworld", second, instance)  # another task is free
    instance.report_run_canceled(instance.get_run_by_id(first))
    claim_task(home, "sciworld", second, instance)  # ended: the next run takes the task


def test_a_killed_holder_frees_the_task(tmp_path, instance):
    home = tmp_path / "home"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tags = {**worker_tags(), "eto/worker_pid": str(dead.pid)}
    killed = _add_run(instance, DagsterRunStatus.STARTED, tags)  # Dagster never heard it die
    claim_task(home, "sciworld", killed, instance)
    claim_task(home, "sciworld", _add_run(instance, DagsterRunStatus.STARTED, worker_tags()), instance)


def test_a_second_run_with_other_settings_is_refused_while_the_first_runs(tmp_path, monkeypatch):
    """The probe's case: run B (another SFT learning rate) started while run A is mid-way. B exits 2
    with one line naming A; nothing of A's is replaced."""
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", "")  # prepare_instance_home sets it for this process
    env = {
        **os.environ,
        "ETO_HOME": str(home),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
    }
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        with open_instance(prepare_instance_home(home)) as instance:
            tags = {**worker_tags(), "eto/worker_pid": str(holder.pid)}
            tags.pop("eto/worker_started", None)
            run_a = _add_run(instance, DagsterRunStatus.STARTED, tags)
            claim_task(home, "sciworld", run_a, instance)  # A's first step ran
        lease = task_lease_path(home, "sciworld").read_text()
        profile = tmp_path / "nano-lr.yaml"
        profile.write_text(NANO.replace("learning_rate: 3.0e-3", "learning_rate: 1.0e-3"))
        out = subprocess.run(
            [sys.executable, "-m", "jobs.run", "--task", "sciworld", "--profile", str(profile)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        holder.kill()
        holder.wait()
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    assert f"sciworld is being run by Dagster run {run_a}" in text, text[-3000:]
    assert task_lease_path(home, "sciworld").read_text() == lease  # still A's
    assert not (home / "artifacts" / "sciworld" / "expert").exists()  # B wrote nothing
