"""Which process runs a Dagster run: its pid, host and start time as run tags, so that a later
sweep can tell a run whose process was killed (SIGKILL, OOM) from one still going."""

from __future__ import annotations

import os
import socket
from pathlib import Path

PID_TAG = "eto/worker_pid"
HOST_TAG = "eto/worker_host"
STARTED_TAG = "eto/worker_started"
RUN_TAG = "eto/worker_run"  # the run the worker tags were written for: a re-execution inherits its parent's


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def worker_tags(pid: int | None = None, run_id: str | None = None) -> dict[str, str]:
    """Tags naming ``pid`` (default: this process) as the worker of run ``run_id``."""
    pid = os.getpid() if pid is None else pid
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    if run_id is not None:
        tags[RUN_TAG] = run_id
    started = process_start_time(pid)
    if started:
        tags[STARTED_TAG] = started
    return tags


def worker_gone(tags: dict[str, str]) -> bool | None:
    """True: the run's worker process is gone; False: it lives; None: cannot tell (no tags, other host)."""
    pid = tags.get(PID_TAG)
    if not pid or not pid.isdigit() or tags.get(HOST_TAG) != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, someone else's
    started = tags.get(STARTED_TAG)
    # True when the pid was reused by another process since the run started
    return bool(started) and process_start_time(int(pid)) not in (None, started)


def run_worker_gone(run_id: str, tags: dict[str, str]) -> bool | None:
    """:func:`worker_gone` for run ``run_id``; None (cannot tell) while its worker tags are another
    run's: a re-execution starts with its parent's tags until its own worker names itself."""
    if tags.get(RUN_TAG, run_id) != run_id:
        return None
    return worker_gone(tags)
