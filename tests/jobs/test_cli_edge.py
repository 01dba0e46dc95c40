"""The CLI at the edge: settings that would fail late are refused before launching (exit 2, one line),
the Dagster instance is created once when two runs start together, runs left behind by a killed
process are swept, up-to-date assets are skipped, and mostly-invalid actions are reported."""

import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from jobs.run import main
from tests.conftest import REPO

NANO = (REPO / "tests" / "fixtures" / "nano.yaml").read_text()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--backend", "tensorrt"], {}, "unknown inference backend 'tensorrt'"),
        (
            ["--profile", "small", "--base-model", "/no/such/model"],
            {"ETO_ITERATIONS": "3"},
            "base model folder '/no/such/model' does not exist",
        ),
        (
            [],
            {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
            "MLflow tracking server http://127.0.0.1:9 is unreachable",
        ),
    ],
)
def test_settings_that_would_fail_late_are_refused_at_once(argv, env, message, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ETO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ETO_ITERATIONS", "1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    started = time.perf_counter()
    assert main(["--profile", "micro", *argv] if "--profile" not in argv else argv) == 2
    assert time.perf_counter() - started < 15
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "home").exists()


def test_an_unwritable_home_is_refused_at_once(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ETO_HOME", str(blocker / "home"))
    monkeypatch.setenv("ETO_ITERATIONS", "1")
    assert main(["--profile", "micro"]) == 2
    err = capsys.readouterr().err
    assert "is not writable" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ instance creation race


def test_two_runs_at_once_in_a_fresh_home_both_get_an_instance(tmp_path):
    code = (
        "import sys; from pathlib import Path; from jobs.run import open_instance, prepare_instance_home\n"
        "home = prepare_instance_home(Path(sys.argv[1]))\n"
        "with open_instance(home) as instance: print('ok', len(instance.get_runs()))"
    )
    for attempt in range(2):
        home = tmp_path / f"home{attempt}"
        env = {**os.environ, "DAGSTER_HOME": ""}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(home)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        for proc, (out, err) in zip(procs, outs, strict=True):
            assert proc.returncode == 0 and out.strip() == "ok 0", err[-2000:]


# ------------------------------------------------------------------ stale-run sweep


def test_sweep_fails_dead_runs_kills_their_mlflow_runs_and_tags_orphan_versions(tmp_path, monkeypatch):
    import socket

    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.storage.dagster_run import DagsterRun
    from mlflow.tracking import MlflowClient

    from eto_assets.assets.workers import HOST_TAG, PID_TAG, worker_tags
    from jobs.sweep import ORPHAN_TAG, sweep

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("eto-sciworld")
    with DagsterInstance.get() as instance:
        runs = {}
        for name, tags in {
            "killed": {PID_TAG: str(dead.pid), HOST_TAG: socket.gethostname()},
            "alive": worker_tags(),  # this test's own process: still running
            "unknown": {},  # no worker tags: left to Dagster's run monitoring
        }.items():
            run_id = str(uuid.uuid4())
            instance.add_run(
                DagsterRun(job_name="eto_job", run_id=run_id, status=DagsterRunStatus.STARTED, tags=tags)
            )
            mlflow_run = client.create_run(
                experiment, tags={"dagster.run_id": run_id, "eto.task": "sciworld", "eto.stage": "sft"}
            )
            runs[name] = (run_id, mlflow_run.info.run_id)
        # the killed stage run registered a version its materialization never recorded; the live
        # run's version is still being recorded
        client.create_registered_model("eto-sciworld")
        orphan = client.create_model_version("eto-sciworld", "file:///x", run_id=runs["killed"][1])
        kept = client.create_model_version("eto-sciworld", "file:///y", run_id=runs["alive"][1])

        report = sweep(instance, uri)

        status = {name: instance.get_run_by_id(run_id).status for name, (run_id, _) in runs.items()}
        assert status == {
            "killed": DagsterRunStatus.FAILURE,
            "alive": DagsterRunStatus.STARTED,
            "unknown": DagsterRunStatus.STARTED,
        }
        mlflow_status = {name: client.get_run(run_id).info.status for name, (_, run_id) in runs.items()}
        assert mlflow_status == {"killed": "KILLED", "alive": "RUNNING", "unknown": "RUNNING"}
        assert client.get_model_version("eto-sciworld", orphan.version).tags.get(ORPHAN_TAG) == "true"
        assert ORPHAN_TAG not in client.get_model_version("eto-sciworld", kept.version).tags
        assert report.failed_runs == [runs["killed"][0]] and len(report.lines()) == 3
        assert sweep(instance, uri).lines() == []  # idempotent


# ------------------------------------------------------------------ skipping, invalid actions (one real run)


def run_cli(home, profile, *extra):
    env = {
        **os.environ,
        "ETO_HOME": str(home),
        "ETO_ITERATIONS": "1",
        "DAGSTER_HOME": "",
        "MLFLOW_TRACKING_URI": "",
    }
    out = subprocess.run(
        [sys.executable, "-m", "jobs.run", "--task", "sciworld", "--profile", str(profile), *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out.returncode, out.stdout


@pytest.fixture(scope="module")
def one_token_run(tmp_path_factory):
    """The nano profile with ``max_new_tokens: 1`` through the CLI: every action is invalid."""
    root = tmp_path_factory.mktemp("cli-edge")
    profile = root / "nano-1tok.yaml"
    profile.write_text(NANO.replace("max_new_tokens: 8", "max_new_tokens: 1"))
    code, out = run_cli(root / "home", profile)
    return root, profile, code, out


def test_mostly_invalid_actions_warn_in_the_summary_mlflow_and_checks(one_token_run):
    from mlflow.tracking import MlflowClient

    root, _, code, out = one_token_run
    assert code == 0, out[-3000:]
    for asset in ("iteration_1/exploration_rollouts", "iteration_0/eval_report", "iteration_1/eval_report"):
        assert f"warning: {asset}: mostly_valid_actions: most actions were invalid" in out
    client = MlflowClient(f"sqlite:///{root / 'home' / 'mlflow' / 'mlflow.db'}")
    [experiment] = client.search_experiments(filter_string="name = 'eto-sciworld'")
    runs = client.search_runs([experiment.experiment_id], "tags.`eto.stage` = 'explore'")
    assert "most actions were invalid" in runs[0].data.tags["eto.warning"]


def test_the_terminal_shows_stages_and_results_and_the_log_keeps_the_rest(one_token_run):
    """One line per stage as it starts and ends, then the table; Dagster's event lines and the
    trainers' output are in the run log the terminal names, not on the terminal."""
    root, _, code, out = one_token_run
    assert code == 0, out[-3000:]
    stages = re.findall(r"^\[ *(\d+)/(\d+)\] done +(\S+)", out, flags=re.MULTILINE)
    done = {key for _, _, key in stages}
    assert {"expert_trajectories", "sft_checkpoint", "iteration_report"} <= done, out[-3000:]
    assert not any(key.startswith("best_of_n") for key in done)  # a method left out: counted only
    assert stages[-1][0] == stages[-1][1]  # the last step's count is the total
    assert " - DEBUG - " not in out and "STEP_START" not in out
    [log] = (root / "home" / "logs").glob("run-sciworld-*.log")
    assert f"run log:     {log}" in out
    text = log.read_text()
    assert "STEP_SUCCESS" in text and "RUN_SUCCESS" in text
    assert len(out.splitlines()) < 60 < len(text.splitlines())


def test_a_second_run_skips_up_to_date_assets(one_token_run):
    root, profile, code, _ = one_token_run
    assert code == 0
    code, out = run_cli(root / "home", profile)
    assert code == 0, out[-3000:]
    assert "skip expert_trajectories: up to date" in out and "skip sft_checkpoint: up to date" in out
    assert "every asset is up to date: nothing to run" in out
    assert "\nrun " not in out


def test_a_changed_sft_learning_rate_reruns_sft_and_downstream_only(one_token_run, monkeypatch):
    import argparse

    from jobs.run import open_instance, prepare_instance_home, select_assets

    root, profile, code, _ = one_token_run
    assert code == 0
    home = root / "home"
    monkeypatch.setenv("ETO_DATA_DIR", os.environ.get("ETO_DATA_DIR", ""))
    monkeypatch.setenv("DAGSTER_HOME", "")
    changed = root / "nano-1tok-lr.yaml"
    changed.write_text(profile.read_text().replace("learning_rate: 3.0e-3", "learning_rate: 1.0e-3"))
    args = argparse.Namespace(
        task="sciworld", profile=str(changed), base_model="tiny", backend="transformers", force=False
    )
    with open_instance(prepare_instance_home(home)) as instance:
        selected, reasons = select_assets(args, home, instance, 1)
        assert "expert_trajectories" not in selected and "base_model/checkpoint" not in selected
        assert selected[:2] == ["sft_checkpoint", "iteration_0/eval_report"]
        assert "iteration_1/dpo_checkpoint" in selected and "iteration_report" in selected
        # Dagster itself calls SFT stale, naming the settings that changed
        assert reasons["sft_checkpoint"] == "stale: has a new dependency data version (settings/sft)"
        forced, _ = select_assets(argparse.Namespace(**{**vars(args), "force": True}), home, instance, 1)
        assert "expert_trajectories" in forced
        # back to the profile the run used: up to date again
        same = argparse.Namespace(**{**vars(args), "profile": str(profile)})
        assert select_assets(same, home, instance, 1)[0] == []
        # a file removed or edited by hand reruns its asset and everything after it
        pairs = home / "artifacts" / "sciworld" / "iteration_1" / "preference_pairs.jsonl"
        pairs.rename(root / "pairs.bak")
        selected, reasons = select_assets(same, home, instance, 1)
        (root / "pairs.bak").rename(pairs)
        assert (
            selected[0] == "iteration_1/preference_pairs"
            and "files changed or are missing" in reasons[selected[0]]
        )
        assert "iteration_1/dpo_checkpoint" in selected and "sft_checkpoint" not in selected
        summary = home / "artifacts" / "sciworld" / "report" / "summary.md"
        text = summary.read_text()
        summary.write_text(text + "edited\n")
        selected, _ = select_assets(same, home, instance, 1)
        summary.write_text(text)
        assert selected == ["iteration_report"]
        assert select_assets(same, home, instance, 1)[0] == []
