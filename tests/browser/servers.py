"""Start the Dagster webserver and an MLflow server on 127.0.0.1 for browser tests, and stop them
by process group (``dagster dev`` and uvicorn workers ignore SIGINT when backgrounded)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def server(cmd: list[str], health: str, log: Path, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """Run ``cmd`` in its own session; yields once ``health`` answers; kills the whole group."""
    with log.open("w") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    try:
        wait_http(health, process, log)
        yield health
    finally:
        stop_session(process)


def stop_session(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to the process's whole session (its own group), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


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
