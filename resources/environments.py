"""Environments are expensive to start (ScienceWorld boots a JVM), so one pool per process keeps
them alive across the stages of a run and hands them out again. For exploration and evaluation,
pure-Python environments (ALFWorld, WebShop) live in worker processes, so they step in parallel
and alongside the model instead of contending for the GIL."""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import threading
from collections import defaultdict

from dagster import ConfigurableResource
from pydantic import Field

from eto_assets.envs.base import Benchmark, Environment
from eto_assets.envs.processes import EnvWorkerPool, RemoteEnv

_POOLS: dict[str, list[Environment]] = defaultdict(list)
_WORKERS: dict[bytes, EnvWorkerPool] = {}
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
        hosted = self.env_processes > 0 and getattr(benchmark, "pure_python", False)
        return f"{benchmark.name}@workers" if hosted else None

    def acquire_for_rollouts(self, benchmark: Benchmark) -> Environment:
        """An environment for exploration or evaluation (in a worker process where that helps)."""
        key = self._rollout_key(benchmark)
        if key is None:
            return self.acquire(benchmark)
        with _LOCK:
            if _POOLS[key]:
                return _POOLS[key].pop()
            identity = pickle.dumps(benchmark)
            if identity not in _WORKERS:
                _WORKERS[identity] = EnvWorkerPool(benchmark.make_env, self.env_processes)
            workers = _WORKERS[identity]
        return workers.make_env()

    def release_from_rollouts(self, benchmark: Benchmark, env: Environment) -> None:
        key = self._rollout_key(benchmark)
        if key is None or not isinstance(env, RemoteEnv):
            self.release(benchmark, env)
            return
        with _LOCK:
            if len(_POOLS[key]) < self.max_idle_per_task:
                _POOLS[key].append(env)
                return
        env.close()

    def acquire(self, benchmark: Benchmark) -> Environment:
        with _LOCK:
            pool = _POOLS[benchmark.name]
            if pool:
                return pool.pop()
        return benchmark.make_env()

    def release(self, benchmark: Benchmark, env: Environment) -> None:
        with _LOCK:
            pool = _POOLS[benchmark.name]
            if len(pool) < self.max_idle_per_task:
                pool.append(env)
                return
        env.close()
