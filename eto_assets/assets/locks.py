"""File locks (``fcntl.flock``): one run per task, stage and iteration at a time, and a blocking lock
for one-time setup (creating the Dagster instance). A lock dies with its process, so a killed run
never leaves a stale lock behind; the file keeps naming its last holder for the error message.

A run also holds its task for its whole length (:func:`claim_task`): two runs of one task with
different settings would otherwise interleave their stages, one run's DPO starting from the other's
SFT. That lease is held by the Dagster run, not a process, so it holds across the run's steps
whichever process runs them, and ends when Dagster says the run ended or its worker is gone."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from eto_assets.assets.workers import run_worker_gone, worker_gone, worker_tags
from eto_assets.data.files import atomic_write_json

if TYPE_CHECKING:
    from dagster import DagsterInstance


class StageBusy(RuntimeError):
    """Another run holds the lock of this task, stage and iteration (or the task itself)."""


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


def task_lease_path(home: Path, task: str) -> Path:
    return home / "locks" / task / "run.lease"


def _lease_holder_runs(instance: DagsterInstance, holder: dict) -> bool:
    """Whether the run named by a lease is still going: Dagster calls it queued or running and its
    worker process is not known to be gone. A run of another instance is judged by the lease's pid."""
    from dagster import DagsterRunStatus

    going = {
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    }
    record = instance.get_run_by_id(holder.get("dagster_run_id", ""))
    if record is None:
        return worker_gone(holder.get("worker", {})) is False
    return record.status in going and run_worker_gone(record.run_id, dict(record.tags)) is not True


def claim_task(home: Path, task: str, run_id: str, instance: DagsterInstance) -> None:
    """Hold ``task`` for Dagster run ``run_id`` until that run ends; raise :class:`StageBusy` naming
    the other run when one still holds it. Every step of a run calls this: the first claims the
    task, the others find it theirs."""
    path = task_lease_path(home, task)
    with exclusive(path.with_name("run.lease.lock"), wait=True):
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            holder = {}
        other = holder.get("dagster_run_id")
        if other == run_id:
            return
        if other and _lease_holder_runs(instance, holder):
            worker = holder.get("worker", {})
            since = holder.get("since")
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "unknown time"
            raise StageBusy(
                f"{task} is being run by Dagster run {other} (pid {worker.get('eto/worker_pid', '?')} on "
                f"{worker.get('eto/worker_host', '?')}, since {started}); two runs of one task would mix "
                f"each other's checkpoints: wait for it to finish or terminate it (lease {path})"
            )
        atomic_write_json(path, {"dagster_run_id": run_id, "worker": worker_tags(), "since": time.time()})
