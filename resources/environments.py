"""Environments are expensive to start (ScienceWorld boots a JVM), so one pool per process keeps
them alive across the stages of a run and hands them out again. For exploration and evaluation,
pure-Python environments (ALFWorld, WebShop) live in worker processes, so they step in parallel
and alongside the model instead of contending for the GIL."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pickle
import threading
from collections import defaultdict

from dagster import ConfigurableResource
from pydantic import Field

from eto_assets.envs.base import Benchmark, Environment
from eto_assets.envs.processes import EnvWorkerPool

_POOLS: dict[str, list[Environment]] = defaultdict(list)
_WORKERS: dict[str, EnvWorkerPool] = {}
_LOCK = threading.Lock()


def _close_all() -> None:
    with _LOCK:
        for envs in _POOLS.values():
            for env in envs:
                with contextlib.suppress(Exception):  # best effort at interpreter exit
                    env.close()
        _POOLS.clear()
        for workers in _WORKERS.values():
            workers.close()
        _WORKERS.clear()


atexit.register(_close_all)


def _default_processes() -> int:
    return int(os.environ.get("ETO_ENV_PROCESSES") or os.cpu_count() or 1)


class EnvironmentPool(ConfigurableResource):
    max_idle_per_task: int = 16
    env_processes: int = Field(
        default_factory=_default_processes,
        ge=0,
        description="worker processes hosting pure-Python environments during rollouts; 0 = in-process",
    )

    def _rollout_key(self, benchmark: Benchmark) -> str | None:
        """Where rollout environments of ``benchmark`` are kept: one worker pool (and its idle
        environments) per benchmark configuration; None when they stay in-process."""
        if self.env_processes <= 0 or not getattr(benchmark, "pure_python", False):
            return None
        return f"{benchmark.name}@workers:{hashlib.sha1(pickle.dumps(benchmark)).hexdigest()[:12]}"

    def acquire_for_rollouts(self, benchmark: Benchmark) -> Environment:
        """An environment for exploration or evaluation (in a worker process where that helps)."""
        key = self._rollout_key(benchmark)
        if key is None:
            return self.acquire(benchmark)
        env = self._take(key)
        if env is not None:
            return env
        with _LOCK:
            if key not in _WORKERS:
                _WORKERS[key] = EnvWorkerPool(benchmark.make_env, self.env_processes)
            workers = _WORKERS[key]
        return workers.make_env()

    def release_from_rollouts(self, benchmark: Benchmark, env: Environment) -> None:
        self._give(self._rollout_key(benchmark) or benchmark.name, env)

    def acquire(self, benchmark: Benchmark) -> Environment:
        env = self._take(benchmark.name)
        return env if env is not None else benchmark.make_env()

    def release(self, benchmark: Benchmark, env: Environment) -> None:
        self._give(benchmark.name, env)

    @staticmethod
    def _take(key: str) -> Environment | None:
        with _LOCK:
            pool = _POOLS[key]
            return pool.pop() if pool else None

    def _give(self, key: str, env: Environment) -> None:
        with _LOCK:
            pool = _POOLS[key]
            if len(pool) < self.max_idle_per_task:
                pool.append(env)
                return
        env.close()
