"""A full disk is said in one line naming the filesystem (SFT's own error, the CLI's last word), the
report keeps its last complete summary, published checkpoints follow the umask, a failed run prints
no table of an earlier run, and the pipeline's parent MLflow run ends FAILED or KILLED.

The full and read-only disks are real: a small tmpfs mounted in a private mount namespace
(:mod:`tests.faults.mounts`)."""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from eto_assets.config.training import TrainConfig
from eto_assets.data.schemas import write_jsonl
from eto_assets.training.launch import TrainSpec
from tests.conftest import REPO
from tests.faults.mounts import PYTHON, run_on_tmpfs

NANO = REPO / "tests" / "fixtures" / "nano.yaml"

# ------------------------------------------------------------------ a full disk

SFT_ON_A_FULL_DISK = """
import json, sys
from pathlib import Path
from eto_assets.assets.errors import root_cause
from eto_assets.training.launch import TrainSpec, run_spec
try:
    run_spec(TrainSpec.read(Path(sys.argv[1])))
    print(json.dumps(None))
except Exception as exc:
    print(json.dumps(root_cause(exc)))
"""


def test_sft_on_a_full_disk_says_no_space_left_on_the_filesystem(tiny_model_dir, expert_sample, tmp_path):
    """SFT saves a checkpoint (weights, then the optimizer state through torch.save's C++ stream) on a
    tmpfs with room for the weights only. Before: ``RuntimeError: basic_ios::clear: iostream error``."""
    model, book = tiny_model_dir
    data, book_path, small = tmp_path / "expert.jsonl", tmp_path / "book.json", tmp_path / "small"
    write_jsonl(data, expert_sample)
    book_path.write_text(json.dumps(book.to_dict()))
    config = TrainConfig(
        learning_rate=1e-3, batch_size=2, per_device_train_batch_size=2, num_train_epochs=1, save_steps=1
    )
    spec = TrainSpec("sft", str(model), str(data), str(book_path), str(small / "sft"), config)
    spec.write(tmp_path / "spec.json")
    weights = (model / "model.safetensors").stat().st_size
    size = f"{(weights * 3 // 2 + 64 * 1024) // 1024}k"  # the weights fit, their optimizer state does not
    done = run_on_tmpfs(small, size, [PYTHON, "-c", SFT_ON_A_FULL_DISK, str(tmp_path / "spec.json")])
    assert done.returncode == 0, done.stderr[-3000:]
    _, line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line.startswith(f"no space left on {small} ("), line
    assert "free of" in line and "\n" not in line


def test_the_cli_on_a_full_disk_ends_with_one_line_naming_it(tmp_path):
    """The nano run with ETO_HOME on a 1.5 MB tmpfs: the Dagster instance fits, the MLflow store does
    not. Before: a traceback ending ``sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) disk
    I/O error`` (or ``database or disk is full``)."""
    small = tmp_path / "small"
    env = {
        "ETO_HOME": str(small / "home"),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
        "TMPDIR": str(tmp_path),  # where the CLI writes the traceback it does not print
    }
    command = [PYTHON, "-m", "jobs.run", "--task", "sciworld", "--profile", str(NANO)]
    done = run_on_tmpfs(small, "1500k", command, env=env, timeout=600)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1, done.stderr[-3000:]
    assert last.startswith("error: ") and f"no space left on {small} (" in last, done.stderr[-3000:]
    said = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert all("no space left on" in line for line in said), said


KEEP_THE_SUMMARY = """
import errno, json, sys
from pathlib import Path
from eto_assets.data.files import atomic_write_text
summary = Path(sys.argv[1]) / "report" / "summary.md"
atomic_write_text(summary, "| iteration | reward |\\n| 0 | 0.25 |\\n")
try:
    with (summary.parent / "filler").open("wb", buffering=0) as fh:  # fill the disk
        while True:
            fh.write(b"x" * 4096)
except OSError as exc:
    assert exc.errno == errno.ENOSPC, exc
try:
    atomic_write_text(summary, "| iteration | reward |\\n" * 5000)
    outcome = "written"
except OSError as exc:
    outcome = errno.errorcode[exc.errno]
print(json.dumps([outcome, summary.read_text(), sorted(p.name for p in summary.parent.iterdir())]))
"""


def test_a_summary_that_cannot_be_written_keeps_the_last_complete_one(tmp_path):
    """The report's summary is written to a temporary file and renamed: on a full disk the write fails
    and the last complete summary stays, never an empty one, and no temporary file is left."""
    small = tmp_path / "small"
    done = run_on_tmpfs(small, "64k", [PYTHON, "-c", KEEP_THE_SUMMARY, str(small)])
    assert done.returncode == 0, done.stderr[-3000:]
    outcome, text, names = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == "ENOSPC"
    assert text == "| iteration | reward |\n| 0 | 0.25 |\n"
    assert names == ["filler", "summary.md"]


# ------------------------------------------------------------------ file modes


def test_published_checkpoints_follow_the_umask(tmp_path, tiny_model_dir):
    """safetensors writes through mkstemp (mode 0600); a published folder gets the modes of any file
    the process writes. Before: model.safetensors 0600 in every checkpoint (the tiny base model too)."""
    import torch
    from safetensors.torch import save_file

    from eto_assets.data.files import publish_dir, staging_dir, umask

    wanted = 0o666 & ~umask()
    final = tmp_path / "checkpoint"
    staging = staging_dir(final)
    staging.mkdir()
    save_file({"w": torch.zeros(4, 4)}, str(staging / "model.safetensors"))
    (staging / "config.json").write_text("{}")
    publish_dir(staging, final)
    modes = {p.name: p.stat().st_mode & 0o777 for p in final.iterdir()}
    assert modes == {"model.safetensors": wanted, "config.json": wanted}
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask()
    built, _ = tiny_model_dir  # the tiny model the pipeline builds (build_tiny_model)
    assert (built / "model.safetensors").stat().st_mode & 0o777 == wanted


# ------------------------------------------------------------------ a failed run


def test_a_failed_run_prints_no_earlier_table_and_its_mlflow_parent_is_failed(tmp_path, monkeypatch, capsys):
    """The expert stage fails inside its MLflow run. Before: the CLI printed the table and "best
    iteration" left by an earlier run as if they were this run's, and the parent run said FINISHED."""
    from mlflow.tracking import MlflowClient

    import eto_assets.stages as stages
    from jobs.run import main

    home = tmp_path / "home"
    summary = home / "artifacts" / "sciworld" / "report" / "summary.md"
    summary.parent.mkdir(parents=True)
    summary.write_text("an earlier run's report\n")

    def fail(*args, **kwargs):
        raise RuntimeError("expert data failed on purpose")

    monkeypatch.setattr(stages, "generate_expert_data", fail)
    earlier = ("| iteration | reward |\n| 0 (best) | EARLIER RUN |", SimpleNamespace(iteration=0))
    monkeypatch.setattr(stages, "report_table", lambda *args, **kwargs: earlier)
    for key, value in {
        "ETO_HOME": str(home),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["--task", "sciworld", "--profile", str(NANO)]) == 1
    out = capsys.readouterr().out
    assert "EARLIER RUN" not in out and "best iteration" not in out and "champion" not in out
    assert "(no table: this run failed; the last complete report, written " in out and str(summary) in out
    assert "error: expert: RuntimeError: expert data failed on purpose" in out
    client = MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    [experiment] = client.search_experiments(filter_string="name = 'eto-sciworld'")
    [parent] = client.search_runs([experiment.experiment_id], "tags.`eto.kind` = 'pipeline'")
    assert parent.info.status == "FAILED"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_stopped_by_a_signal_ends_killed_in_mlflow(tmp_path, signum):
    """The CLI's run gets SIGTERM (or Ctrl-C) while the expert stage runs: the stage's MLflow run and
    the pipeline's parent run end KILLED and the CLI exits 130. Before: the parent said FINISHED."""
    from mlflow.tracking import MlflowClient

    from eto_assets.assets.tracking import ensure_store

    home = tmp_path / "home"
    env = {
        **os.environ,
        "ETO_HOME": str(home),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-m", "jobs.run", "--task", "sciworld", "--profile", str(NANO)]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    db = home / "mlflow" / "mlflow.db"
    stage = None
    try:
        deadline = time.monotonic() + 240
        while stage is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            if db.exists():
                try:
                    ensure_store(f"sqlite:///{db}")  # waits while the run creates the store
                    client = MlflowClient(f"sqlite:///{db}")
                    experiments = client.search_experiments(filter_string="name = 'eto-sciworld'")
                    found = experiments and client.search_runs(
                        [experiments[0].experiment_id],
                        "tags.`eto.stage` = 'expert' and attributes.status = 'RUNNING'",
                    )
                except Exception:  # the store is being created by the run
                    found = None
                stage = found[0].info.run_id if found else None
        if stage is None:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the expert stage never ran (exit {proc.returncode}): {(out + err)[-3000:]}")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    runs = {r.info.run_id: r for r in client.search_runs([experiments[0].experiment_id])}
    [parent] = [r for r in runs.values() if r.data.tags.get("eto.kind") == "pipeline"]
    assert (runs[stage].info.status, parent.info.status) == ("KILLED", "KILLED")
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted (SIGINT or SIGTERM)" in out + err


def test_the_sweep_ends_a_dead_pipelines_parent_run_killed(tmp_path, monkeypatch):
    """A run whose worker was SIGKILLed: the sweep marks it FAILURE and its parent MLflow run KILLED.
    Before: the parent kept the FINISHED it shows while its stages run."""
    import socket
    import uuid

    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.storage.dagster_run import DagsterRun
    from mlflow.tracking import MlflowClient

    from eto_assets.assets.tracking import pipeline_parent
    from eto_assets.assets.workers import HOST_TAG, PID_TAG
    from jobs.sweep import sweep

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = str(uuid.uuid4())
    parent = pipeline_parent(uri, "sciworld", run_id, tmp_path / "artifacts")
    with DagsterInstance.get() as instance:
        tags = {PID_TAG: str(dead.pid), HOST_TAG: socket.gethostname()}
        instance.add_run(
            DagsterRun(job_name="eto_job", run_id=run_id, status=DagsterRunStatus.STARTED, tags=tags)
        )
        report = sweep(instance, uri)
    assert report.failed_runs == [run_id]
    assert MlflowClient(uri).get_run(parent).info.status == "KILLED"
