"""The team deployment against its real services: PostgreSQL (Debian's server, started by
``jobs.services`` under ETO_HOME) holding the Dagster instance and the MLflow backend store, an MLflow
tracking server, and ``dagster dev`` (webserver and daemon) launching runs through the queued run
coordinator, each stage in its own process, a second run held in the queue by the device tag.

Skipped, saying why, where PostgreSQL's server is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from jobs.services import ServiceError, postgres_bin
from tests.browser.servers import BIN, free_port, server
from tests.conftest import REPO, shared_data_dir
from tests.jobs.test_reexecute_from_ui import graphql, wait_finished

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


def exported(env_file: Path) -> dict[str, str]:
    pairs = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            pairs[key] = shlex.split(value)[0]
    return pairs


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def deployment():
    root = Path(tempfile.mkdtemp(prefix="eto-team-", dir="/tmp"))
    root.chmod(0o755)  # Debian's postgres user (the server, as root) must reach its data folder
    data = shared_data_dir()
    env = {k: v for k, v in os.environ.items() if k not in {"DAGSTER_HOME", "MLFLOW_TRACKING_URI"}}
    env.update(
        ETO_HOME=str(root / "home"),
        ETO_PG_PORT=str(free_port()),
        ETO_MLFLOW_PORT=str(free_port()),
        ETO_GPUS="0",
        ETO_CPU_RUNS="1",
        ETO_PROFILE=str(NANO),
        **({"ETO_DATA_DIR": str(data)} if data else {}),
    )
    services(env, "start")
    env.update(exported(root / "home" / "services.env"))
    try:
        yield env
    finally:
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


def test_runs_queue_on_the_device_tag_and_record_in_postgres_and_the_mlflow_server(deployment, tmp_path):
    port = free_port()
    log = tmp_path / "dagster-dev.log"
    dev = [str(BIN / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1"]
    with server([*dev, "-p", str(port)], f"http://127.0.0.1:{port}/server_info", log, deployment, REPO):
        url = f"http://127.0.0.1:{port}"
        first = launch(url, ["expert_trajectories", "base_model/checkpoint", "sft_checkpoint"])
        second = launch(url, ["expert_trajectories"])
        held = False  # the second run waited in the queue while the first held the one cpu slot
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            a = graphql(url, STATUS, {"runId": first})["runOrError"]["status"]
            b = graphql(url, STATUS, {"runId": second})["runOrError"]["status"]
            held |= a in {"STARTING", "STARTED"} and b == "QUEUED"
            assert not (a in {"STARTING", "STARTED"} and b in {"STARTING", "STARTED"}), (a, b)
            if a not in {"QUEUED", "NOT_STARTED", "STARTING", "STARTED"}:
                break
            time.sleep(1)
        assert held
        assert wait_finished(url, first)["status"] == "SUCCESS", log.read_text()[-3000:]
        assert wait_finished(url, second)["status"] == "SUCCESS", log.read_text()[-3000:]

    with connect(deployment, "dagster") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (first,))
        assert cursor.fetchone()[0] == "SUCCESS"
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (first, "STEP_WORKER_STARTED"),
        )
        assert cursor.fetchone()[0] >= 3  # each stage in its own process (multiprocess executor)
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (first, "ASSET_MATERIALIZATION"),
        )
        assert cursor.fetchone()[0] >= 3

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=deployment["MLFLOW_TRACKING_URI"])
    [model] = client.search_registered_models(filter_string="name = 'eto-sciworld'")
    versions = client.search_model_versions("name = 'eto-sciworld'")
    assert model.name == "eto-sciworld" and any(v.tags.get("eto.stage") == "sft" for v in versions)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`eto.stage` = 'sft'"
    )
    assert runs and runs[0].data.tags["eto.method"]
