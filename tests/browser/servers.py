"""Start the Dagster webserver and an MLflow server on 127.0.0.1 for browser tests, and stop them
by process group (``dagster dev`` and uvicorn workers ignore SIGINT when backgrounded)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from eto_assets.config import local_servers
from eto_assets.config.local_servers import free_port, stop_session

BIN = Path(sys.executable).parent


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    def failed(reason: str) -> RuntimeError:
        return RuntimeError(f"{url}: the server {reason}:\n{log.read_text()[-3000:]}")

    local_servers.wait_http(url, process, timeout, failed)


@contextlib.contextmanager
def server(cmd: list[str], health: str, log: Path, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """Run ``cmd`` in its own session; yields once ``health`` answers; kills the whole group."""
    process = local_servers.start_server(cmd, log, env, cwd)
    try:
        wait_http(health, process, log)
        yield health
    finally:
        stop_session(process)


@contextlib.contextmanager
def dagster_webserver(repo: Path, dagster_home: Path, log: Path) -> Iterator[str]:
    port = free_port()
    # as `make ui` starts: without the MLFLOW_TRACKING_URI that mlflow.set_tracking_uri exported here
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["DAGSTER_HOME"] = str(dagster_home)
    cmd = [
        str(BIN / "dagster-webserver"),
        "-w",
        str(repo / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with server(cmd, f"http://127.0.0.1:{port}/server_info", log, env, repo):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def mlflow_server(store_uri: str, artifacts: Path, log: Path, cwd: Path) -> Iterator[str]:
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", store_uri]
    cmd += ["--default-artifact-root", str(artifacts), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1"]  # the default 4 take ~30 s to start on 2 cores
    with server(cmd, f"http://127.0.0.1:{port}/health", log, dict(os.environ), cwd):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def dagster_dev(repo: Path, env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``dagster dev`` (webserver, daemon, code servers) in its own session, as ``make ui`` starts it:
    yields (url, process) once the webserver answers; the whole session is stopped on exit."""
    port = free_port()
    cmd = [str(BIN / "dagster"), "dev", "-w", str(repo / "workspace.yaml"), "-h", "127.0.0.1"]
    with log.open("a") as out:
        process = subprocess.Popen(
            [*cmd, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=repo,
            start_new_session=True,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/server_info", process, log)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop_session(process)
