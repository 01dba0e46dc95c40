"""File locks (``fcntl.flock``): one run per task, stage and iteration at a time, and a blocking lock
for one-time setup (creating the Dagster instance). A lock dies with its process, so a killed run
never leaves a stale lock behind; the file keeps naming its last holder for the error message."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StageBusy(RuntimeError):
    """Another run holds the lock of this task, stage and iteration."""


def stage_lock_path(home: Path, task: str, stage: str, iteration: int) -> Path:
    return home / "locks" / task / f"{stage}-{iteration}.lock"


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def exclusive(path: Path, *, holder: dict | None = None, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed). Without ``wait``, raise
    :class:`StageBusy` naming the holder at once when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise StageBusy(_describe(path, _holder(fd))) from None
        if holder is not None:
            record = {**holder, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(record).encode())
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _describe(path: Path, holder: dict) -> str:
    what = path.stem
    task = path.parent.name
    run_id = holder.get("dagster_run_id", "unknown")
    since = holder.get("since")
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "unknown time"
    return (
        f"{task} {what} is already being run by Dagster run {run_id} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {started}); wait for it to finish or terminate it (lock {path})"
    )


@contextmanager
def stage_lock(home: Path, task: str, stage: str, iteration: int, run_id: str) -> Iterator[None]:
    """One run of ``task``'s ``stage`` (of ``iteration``) at a time under ``home``."""
    with exclusive(stage_lock_path(home, task, stage, iteration), holder={"dagster_run_id": run_id}):
        yield
