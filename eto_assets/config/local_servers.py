"""Helpers for the local servers the product starts (the vLLM policy server, PostgreSQL and the
MLflow server of the team deployment, the UIs in tests): a free port, waiting for a health URL,
stopping a process or its whole session by pid. Servers run in their own session so that stopping
one stops what it started (vLLM's engine process, uvicorn workers) and so that a terminal's SIGINT,
which backgrounded ``dagster dev`` ignores anyway, never reaches them half-way."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

# Runs the server as its child, in the server's session. When the process that started it dies,
# even by SIGKILL (a killed Dagster step), its parent changes and it stops the whole session; a
# SIGTERM it forwards and waits on, so a stop by pid ends only when the server has.
_WATCHDOG = """\
import os, signal, subprocess, sys, time
parent = os.getppid()
server = subprocess.Popen(sys.argv[1:])
def stop(*_):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    try:
        server.wait(timeout=float(os.environ.get("ETO_SERVER_STOP_S", "20")))
    finally:
        os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGTERM, stop)
while server.poll() is None:
    if os.getppid() != parent:
        stop()
    time.sleep(0.5)
sys.exit(server.returncode)
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    command: Sequence[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """``command`` in its own session behind a watchdog (see ``_WATCHDOG``), its output appended to
    ``log``: stopped with :func:`stop_session`, and never outliving this process."""
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def wait_http(
    url: str, process: subprocess.Popen, timeout: float, failed: Callable[[str], Exception]
) -> None:
    """Return once ``url`` answers 200; raise ``failed(reason)`` if ``process`` exits first or the
    answer does not come within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise failed(f"exited with {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(1)
    raise failed(f"did not answer {url} in {timeout:.0f} s")


def stop_pid(
    pid: int, *, group: bool = False, timeout: float = 30, first: signal.Signals = signal.SIGTERM
) -> bool:
    """``first`` (SIGTERM) to ``pid`` (its whole process group with ``group``), SIGKILL if it is
    still alive after ``timeout`` seconds; True when it had to be killed. Reaps it when it is our
    child."""
    send = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError):
        send(pid, first)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        send(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return True


def stop_session(process: subprocess.Popen, timeout: float = 30) -> bool:
    """Stop a server started with ``start_new_session=True`` and everything in its group."""
    killed = stop_pid(process.pid, group=True, timeout=timeout)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    deadline = time.monotonic() + 5  # the rest of the group may still be exiting
    while group_running(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return killed


def _running_with(field: int, value: int) -> list[int]:
    """Processes whose ``/proc/<pid>/stat`` field ``field`` (counted after the command name: 2 is
    the process group, 3 the session) is ``value`` and that still run (zombies, ended but unreaped,
    are not counted: a container's first process may never reap them)."""
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[field]) == value and fields[0] != "Z":
                running.append(int(stat.parent.name))
    return running


def group_running(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run."""
    return _running_with(2, pgid)


def session_running(sid: int) -> list[int]:
    """The processes of session ``sid`` that still run (a server and everything it started)."""
    return _running_with(3, sid)
