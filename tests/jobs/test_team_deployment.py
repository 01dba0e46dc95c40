"""The team deployment against its real services: PostgreSQL (Debian's server, started by
``jobs.services`` under ETO_HOME) holding the Dagster instance and the MLflow backend store, an MLflow
tracking server, and ``dagster dev`` (webserver and daemon) launching runs through the queued run
coordinator, each stage in its own process, a second run held in the queue by the device tag.

``.ci/run`` starts the services itself (``make services``) and names their ``services.env`` in
``ETO_TEST_SERVICES``; without it the tests start their own under /tmp. Skipped, saying why, where
PostgreSQL's server is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from eto_assets.assets.table import settings_groups
from eto_assets.config import settings
from eto_assets.config.local_servers import session_running
from jobs.services import ServiceError, postgres_bin, read_env_file
from tests.browser.servers import dagster_dev, free_port
from tests.conftest import REPO, pid_alive, shared_data_dir
from tests.jobs.test_reexecute_from_ui import RUN, graphql, reexecute, steps, wait_finished

NANO = REPO / "tests" / "fixtures" / "nano.yaml"


def postgres_missing() -> str | None:
    try:
        postgres_bin()
    except ServiceError as exc:
        return str(exc)
    return None


pytestmark = pytest.mark.skipif(postgres_missing() is not None, reason=f"{postgres_missing()}")

LAUNCH = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId tags { key value } } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

START_SENSOR = """
mutation StartSensor($sensorSelector: SensorSelector!) {
  startSensor(sensorSelector: $sensorSelector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}"""

RUNS_BY_TAG = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) { ... on Runs { results { runId status tags { key value } } } }
}"""

IN_PROGRESS = {"NOT_STARTED", "STARTING", "STARTED"}
STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"""


def services(env: dict[str, str], command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "jobs.services", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def deployment():
    """The services' environment: those ``.ci/run`` started (``ETO_TEST_SERVICES``), else our own."""
    root = Path(tempfile.mkdtemp(prefix="eto-team-", dir="/tmp"))
    root.chmod(0o755)  # Debian's postgres user (the server, as root) must reach its data folder
    profile = root / "nano.yaml"  # the inputs sensor's test edits it
    shutil.copy(NANO, profile)
    data = shared_data_dir()
    given = os.environ.get("ETO_TEST_SERVICES")
    env = {k: v for k, v in os.environ.items() if k not in {"DAGSTER_HOME", "MLFLOW_TRACKING_URI"}}
    env.update(
        ETO_HOME=str(Path(given).parent if given else root / "home"),
        ETO_GPUS="0",
        ETO_CPU_RUNS="1",
        ETO_ITERATIONS="1",  # the nano profile runs one
        ETO_PROFILE=str(profile),
        **({"ETO_DATA_DIR": str(data)} if data else {}),
    )
    if given:  # the ports CI started them on (the settings' defaults unless it set them)
        env.update({name: str(settings.port(name, env)) for name in ("ETO_PG_PORT", "ETO_MLFLOW_PORT")})
    else:
        env.update(ETO_PG_PORT=str(free_port()), ETO_MLFLOW_PORT=str(free_port()))
    services(env, "start")  # started already (CI): says so and changes nothing
    env.update(read_env_file(Path(env["ETO_HOME"]) / "services.env"))
    try:
        yield env
    finally:
        if not given:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                services(env, "stop")
        shutil.rmtree(root, ignore_errors=True)


def connect(env: dict[str, str], db: str):
    import psycopg2

    return psycopg2.connect(
        host=env["DAGSTER_PG_HOST"],
        port=int(env["DAGSTER_PG_PORT"]),
        user=env["DAGSTER_PG_USERNAME"],
        password=env["DAGSTER_PG_PASSWORD"],
        dbname=db,
    )


def test_services_write_their_env_and_stop_and_restart_by_pid(deployment):
    env_file = Path(deployment["ETO_HOME"], "services.env")
    assert env_file.stat().st_mode & 0o777 == 0o600  # it holds the database password
    assert deployment["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{deployment['ETO_MLFLOW_PORT']}"
    assert deployment["ETO_EXECUTOR"] == "multiprocess"
    yaml_text = Path(deployment["DAGSTER_HOME"], "dagster.yaml").read_text()
    assert "postgres_db" in yaml_text and "eto/device" in yaml_text
    with connect(deployment, "postgres") as connection, connection.cursor() as cursor:
        cursor.execute("SHOW listen_addresses")
        assert cursor.fetchone()[0] == "127.0.0.1"
        cursor.execute("SELECT datname FROM pg_database")
        assert {"dagster", "mlflow"} <= {row[0] for row in cursor.fetchall()}

    pg_pid = int(
        Path(deployment["ETO_HOME"], "services", "postgres", "postmaster.pid").read_text().split()[0]
    )
    mlflow_pid = int(Path(deployment["ETO_HOME"], "services", "mlflow.pid").read_text())
    assert "stopped" in services(deployment, "stop")
    assert not pid_alive(pg_pid) and not pid_alive(mlflow_pid)
    assert services(deployment, "status").count("stopped") == 2
    services(deployment, "start")  # the same cluster and password: the data survives a restart
    with connect(deployment, "dagster") as connection:
        assert connection.status is not None
    with urllib.request.urlopen(f"{deployment['MLFLOW_TRACKING_URI']}/health", timeout=10) as answer:
        assert answer.status == 200


def launch(url: str, keys: list[str]) -> str:
    """Launch ``keys`` of the sciworld partition with the watched settings groups observed first, as
    a launch of the whole job does (so the inputs sensor can tell what a later change makes stale)."""
    keys = [*(g.key for g in settings_groups(1) if g.watched), *keys]
    params = {
        "selector": {
            "repositoryLocationName": "eto",
            "repositoryName": "__repository__",
            "jobName": "eto_job",
            "assetSelection": [{"path": key.split("/")} for key in keys],
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "sciworld"}]},
    }
    launched = graphql(url, LAUNCH, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    tags = {t["key"]: t["value"] for t in launched["run"]["tags"]}
    assert tags["eto/device"] == "cpu"
    return launched["run"]["runId"]


def status_of(url: str, run_id: str) -> str:
    return graphql(url, STATUS, {"runId": run_id})["runOrError"]["status"]


def step_status(url: str, run_id: str, step: str) -> str | None:
    stats = graphql(url, RUN, {"runId": run_id})["runOrError"]["stepStats"]
    return next((s["status"] for s in stats if s["stepKey"] == step), None)


def wait_for(what: str, predicate, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s\n{log.read_text()[-3000:]}")


def test_the_queue_holds_a_run_and_a_killed_daemon_run_is_failed_then_resumed(deployment, tmp_path):
    """Two runs through the queue (one cpu slot): the second waits while the first runs. The whole
    deployment's Dagster side (webserver, daemon, code servers, the run worker) is SIGKILLed while the
    first run is mid-way; on the next start the ``eto_dead_runs`` sensor marks it FAILURE, which frees
    the slot for the queued run, and a re-execution from failure finishes it without redoing the
    stage that had finished. Runs and events are in PostgreSQL, runs and models in the MLflow server."""
    log = tmp_path / "dagster-dev.log"
    with dagster_dev(REPO, deployment, log) as (url, process):
        first = launch(url, ["expert_trajectories", "base_model/checkpoint", "sft_checkpoint"])
        second = launch(url, ["expert_trajectories"])
        held = []

        def first_stage_done() -> bool:
            a, b = status_of(url, first), status_of(url, second)
            assert not (a in IN_PROGRESS and b in IN_PROGRESS), (a, b)  # never both on the one slot
            held.append(a in IN_PROGRESS and b == "QUEUED")
            assert a not in {"SUCCESS", "FAILURE"}, f"the first run ended ({a}) before the kill"
            return step_status(url, first, "expert_trajectories") == "SUCCESS"

        wait_for("the first run's expert stage", first_stage_done, 300, log)
        assert any(held)
        os.killpg(process.pid, signal.SIGKILL)  # webserver, daemon, code servers, run worker at once
        wait_for("every dagster dev process gone", lambda: not session_running(process.pid), 30, log)

    with dagster_dev(REPO, deployment, log) as (url, _):
        wait_for(
            "the sweep sensor failing the dead run", lambda: status_of(url, first) == "FAILURE", 180, log
        )
        assert wait_finished(url, second)["status"] == "SUCCESS", log.read_text()[-3000:]
        resumed = wait_finished(url, reexecute(url, first, "FROM_FAILURE"))
        assert resumed["status"] == "SUCCESS", log.read_text()[-3000:]
        ran = steps(resumed, "SUCCESS")
        assert "sft_checkpoint" in ran and "expert_trajectories" not in ran, ran
        sensed = sensor_run(url, deployment, log)

    ran = steps(sensed, "SUCCESS")
    assert {"base_model__checkpoint", "sft_checkpoint", "iteration_report"} <= ran, sorted(ran)
    assert "expert_trajectories" not in ran  # its inputs did not change

    with connect(deployment, "dagster") as connection, connection.cursor() as cursor:
        events = "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s"
        cursor.execute(events, (resumed["runId"], "STEP_WORKER_STARTED"))
        assert cursor.fetchone()[0] >= 2  # each stage in its own process (multiprocess executor)
        cursor.execute(events, (first, "ASSET_MATERIALIZATION"))
        assert cursor.fetchone()[0] >= 1  # the expert data, recorded before the kill
        cursor.execute(
            "SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type = 'PIPELINE_FAILURE'",
            (first,),
        )
        assert "stale-run sweep" in cursor.fetchone()[0]  # failed by the sensor, not by anything else
        cursor.execute("SELECT status FROM runs WHERE run_id IN (%s, %s)", (first, resumed["runId"]))
        assert sorted(row[0] for row in cursor.fetchall()) == ["FAILURE", "SUCCESS"]
        cursor.execute(events, (sensed["runId"], "ASSET_MATERIALIZATION"))
        assert cursor.fetchone()[0] >= 5  # the whole nano graph, stages and no-ops

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=deployment["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name = 'eto-sciworld'")
    assert any(v.tags.get("eto.stage") == "sft" for v in versions)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments, "tags.`eto.stage` = 'sft'")
    killed = client.search_runs(experiments, f"tags.`dagster.run_id` = '{first}'")
    assert killed and all(r.info.status != "RUNNING" for r in killed)  # closed by the sweep

    champion = client.search_runs(experiments, f"tags.`dagster.run_id` = '{sensed['runId']}'")
    assert any(r.data.tags.get("eto.stage") == "report" for r in champion)


def sensor_run(url: str, env: dict[str, str], log: Path) -> dict:
    """Change a watched input (the tiny base model's width, in the run's profile), start the
    ``eto_inputs_changed`` sensor as the UI's toggle does, and wait for the run the daemon's
    evaluation of it requests: the task's stale graph, base model onwards, through the queue."""
    profile = Path(env["ETO_PROFILE"])
    profile.write_text(profile.read_text().replace("hidden_size: 32", "hidden_size: 48"))
    selector = {
        "repositoryLocationName": "eto",
        "repositoryName": "__repository__",
        "sensorName": "eto_inputs_changed",
    }
    started = graphql(url, START_SENSOR, {"sensorSelector": selector})["startSensor"]
    assert started["__typename"] == "Sensor", started
    by_sensor = {"tags": [{"key": "dagster/sensor_name", "value": "eto_inputs_changed"}]}
    found: list[dict] = []

    def requested() -> bool:
        found[:] = graphql(url, RUNS_BY_TAG, {"filter": by_sensor})["runsOrError"]["results"]
        return bool(found)

    wait_for("the sensor's run", requested, 180, log)
    tags = {t["key"]: t["value"] for t in found[0]["tags"]}
    assert tags["dagster/partition"] == "sciworld" and tags["eto/device"] == "cpu", tags
    return wait_finished(url, found[0]["runId"])
