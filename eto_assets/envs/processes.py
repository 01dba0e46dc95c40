"""Environments hosted in worker processes.

ALFWorld's and WebShop's engines are pure Python: stepping them in threads of the main process
holds the GIL, so they neither run in parallel nor overlap with the model. An
:class:`EnvWorkerPool` starts a few worker processes; :meth:`EnvWorkerPool.make_env` creates an
environment inside one of them and returns a :class:`RemoteEnv` proxy with the same
``reset``/``step``/``close`` interface. Calls on environments of one worker run one at a time;
different workers run in parallel (the caller's thread waits on a pipe, without the GIL).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from eto_assets.envs.base import Environment, StepResult, TaskInstance


class EnvWorkerError(RuntimeError):
    """An environment call failed in its worker process, or the worker died."""


def _serve(conn, make_env: Callable[[], Environment]) -> None:
    envs: dict[int, Environment] = {}
    while True:
        try:
            request = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if request is None:
            break
        slot, method, args = request
        try:
            if method == "open":
                envs[slot] = make_env()
                result: Any = None
            elif method == "close":
                envs.pop(slot).close()
                result = None
            else:
                result = getattr(envs[slot], method)(*args)
            conn.send((True, result))
        except Exception as exc:  # reported to the caller with the worker's traceback
            conn.send((False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    for env in envs.values():
        env.close()


class _Worker:
    def __init__(self, context, make_env: Callable[[], Environment]) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, make_env), daemon=True)
        self.process.start()
        child.close()
        self.lock = threading.Lock()
        self.envs = 0

    def call(self, slot: int, method: str, *args: Any, what: str = "") -> Any:
        with self.lock:
            try:
                self.conn.send((slot, method, args))
                ok, result = self.conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
                code = self.process.exitcode
                raise EnvWorkerError(
                    f"environment worker {self.process.pid} died (exit code {code}) during {method}{what}"
                ) from exc
        if not ok:
            raise EnvWorkerError(f"{method}{what} failed in environment worker {self.process.pid}:\n{result}")
        return result

    def stop(self, timeout: float = 10.0) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
        self.conn.close()


class RemoteEnv:
    """An environment living in a worker process (the :class:`Environment` interface)."""

    def __init__(self, worker: _Worker, slot: int) -> None:
        self._worker, self._slot = worker, slot
        self._task_id = ""
        self._in_call = False

    def _call(self, method: str, *args: Any) -> Any:
        worker = self._worker
        if worker is None:
            raise EnvWorkerError(f"{method} on a closed environment")
        self._in_call = True
        try:
            return worker.call(self._slot, method, *args, what=f" of task {self._task_id}")
        finally:
            self._in_call = False

    @property
    def worker_pid(self) -> int:
        return self._worker.process.pid

    def reset(self, task: TaskInstance) -> str:
        self._task_id = task.task_id
        return self._call("reset", task)

    def step(self, action: str) -> StepResult:
        return self._call("step", action)

    def discard(self) -> None:
        """Give the environment up after a fault without waiting on its worker: a call still
        running (a hang) kills the worker, whose other environments then fail and are replaced
        (the pool starts a new worker in its place); a dead worker is only forgotten."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.envs -= 1
        if self._in_call:
            with contextlib.suppress(OSError):
                worker.process.kill()
        elif worker.process.is_alive():
            threading.Thread(target=_quiet_close, args=(worker, self._slot), daemon=True).start()

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.envs -= 1
            if worker.process.is_alive():
                worker.call(self._slot, "close")


def _quiet_close(worker: _Worker, slot: int) -> None:
    with contextlib.suppress(Exception):
        worker.call(slot, "close")


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()


class EnvWorkerPool:
    """``workers`` processes (default: the CPU core count) hosting environments from ``make_env``
    (picklable, e.g. a benchmark's bound ``make_env``). Processes are spawned, never forked."""

    def __init__(self, make_env: Callable[[], Environment], workers: int | None = None) -> None:
        self._context = context = mp.get_context("spawn")
        self._make_env = make_env
        self._workers = [_Worker(context, make_env) for _ in range(max(1, workers or os.cpu_count() or 1))]
        self._slots = itertools.count()
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    def make_env(self) -> RemoteEnv:
        with self._lock:
            for i, old in enumerate(self._workers):  # a dead worker is replaced by a new one
                if not old.process.is_alive():
                    with contextlib.suppress(OSError):
                        old.conn.close()
                    self._workers[i] = _Worker(self._context, self._make_env)
            worker = min(self._workers, key=lambda w: w.envs)
            worker.envs += 1
            slot = next(self._slots)
        try:
            worker.call(slot, "open")
        except Exception:
            worker.envs -= 1
            raise
        return RemoteEnv(worker, slot)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> EnvWorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
