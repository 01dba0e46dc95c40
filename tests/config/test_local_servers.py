"""Local servers never outlive what started them: a stage process killed by SIGKILL takes its
server (the vLLM policy server in production) down with it, and a stop by pid ends a server that
ignores SIGTERM. Real processes, no vLLM needed: the server here is a plain Python process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from eto_assets.config.local_servers import start_server, stop_session
from tests.conftest import REPO, pid_alive

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def server_children(watchdog: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(watchdog)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.2)
    return False


def test_a_killed_stage_takes_its_server_down(tmp_path):
    stage = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from eto_assets.config.local_servers import start_server; "
            f"log = Path({str(tmp_path / 's.log')!r}); "
            f"p = start_server([sys.executable, '-c', {IGNORES_SIGTERM!r}], log); "
            "print(p.pid, flush=True); time.sleep(600)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "ETO_SERVER_STOP_S": "1"},
    )
    watchdog = int(stage.stdout.readline())
    deadline = time.monotonic() + 20
    while not server_children(watchdog) and time.monotonic() < deadline:
        time.sleep(0.2)
    [server] = server_children(watchdog)
    os.kill(stage.pid, signal.SIGKILL)
    stage.wait()
    # the watchdog notices within a second, asks politely, then kills the session
    assert wait_gone(server, 15), "the server outlived the stage that started it"
    assert wait_gone(watchdog, 5)


def test_a_stop_by_pid_ends_a_server_that_ignores_sigterm(tmp_path, monkeypatch):
    monkeypatch.setenv("ETO_SERVER_STOP_S", "1")
    process = start_server([sys.executable, "-c", IGNORES_SIGTERM], tmp_path / "s.log")
    deadline = time.monotonic() + 20
    while not server_children(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    [server] = server_children(process.pid)
    started = time.monotonic()
    stop_session(process, timeout=30)
    assert wait_gone(server, 5) and process.poll() is not None
    assert time.monotonic() - started < 10  # the watchdog's own deadline, not the caller's 30 s
