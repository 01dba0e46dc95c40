"""Environments kept alive across the stages of a run.

Environments are expensive to start (ScienceWorld boots a JVM, WebShop builds a search index), so
a pool hands them out again after a stage returns them. For exploration and evaluation, pure-Python
environments (ALFWorld, WebShop) live in worker processes, so they step in parallel and alongside
the model instead of contending for the GIL. Pools are keyed by the benchmark's configuration
(:attr:`Benchmark.key`), so exploration and evaluation of one run share one set of workers. The
owner (a Dagster resource, a script, a notebook) closes the pool; it is a context manager.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable

from eto_assets.envs.base import Benchmark, Environment
from eto_assets.envs.processes import EnvWorkerPool


class EnvironmentPool:
    def __init__(self, *, max_idle: int = 16, processes: int = 0) -> None:
        """``max_idle``: idle environments kept per key; ``processes``: worker processes for
        pure-Python benchmarks during rollouts (0 keeps them in-process)."""
        self.max_idle = max_idle
        self.processes = processes
        self._idle: dict[str, list[Environment]] = defaultdict(list)
        self._workers: dict[str, EnvWorkerPool] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> EnvironmentPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _key(self, benchmark: Benchmark, rollouts: bool) -> str:
        if rollouts and self.processes > 0 and getattr(benchmark, "pure_python", False):
            return f"{benchmark.key}@workers"
        return benchmark.key

    def acquire(self, benchmark: Benchmark, *, rollouts: bool = False) -> Environment:
        """An idle environment of ``benchmark`` or a new one (in a worker process when ``rollouts``
        and the benchmark is pure Python)."""
        key = self._key(benchmark, rollouts)
        with self._lock:
            if self._closed:
                raise RuntimeError("environment pool is closed")
            if self._idle[key]:
                return self._idle[key].pop()
            workers = None
            if key.endswith("@workers"):
                if key not in self._workers:
                    self._workers[key] = EnvWorkerPool(benchmark.make_env, self.processes)
                workers = self._workers[key]
        return workers.make_env() if workers is not None else benchmark.make_env()

    def release(self, benchmark: Benchmark, env: Environment, *, rollouts: bool = False) -> None:
        key = self._key(benchmark, rollouts)
        with self._lock:
            if not self._closed and len(self._idle[key]) < self.max_idle:
                self._idle[key].append(env)
                return
        env.close()

    def for_rollouts(
        self, benchmark: Benchmark
    ) -> tuple[Callable[[], Environment], Callable[[Environment], None]]:
        """``(make_env, release_env)`` for :func:`eto_assets.agent.rollout.run_rollouts`."""
        return (
            lambda: self.acquire(benchmark, rollouts=True),
            lambda env: self.release(benchmark, env, rollouts=True),
        )

    def idle(self) -> dict[str, int]:
        with self._lock:
            return {k: len(v) for k, v in self._idle.items() if v}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [env for envs in self._idle.values() for env in envs]
            workers = list(self._workers.values())
            self._idle.clear()
            self._workers.clear()
        for env in idle:
            with contextlib.suppress(Exception):  # best effort: an engine may already be gone
                env.close()
        for pool in workers:
            pool.close()
