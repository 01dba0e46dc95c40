"""Environments are expensive to start (ScienceWorld boots a JVM), so one pool per process keeps
them alive across the stages of a run and hands them out again."""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections import defaultdict

from dagster import ConfigurableResource

from eto_assets.envs.base import Benchmark, Environment

_POOLS: dict[str, list[Environment]] = defaultdict(list)
_LOCK = threading.Lock()


def _close_all() -> None:
    with _LOCK:
        for envs in _POOLS.values():
            for env in envs:
                with contextlib.suppress(Exception):  # best effort at interpreter exit
                    env.close()
        _POOLS.clear()


atexit.register(_close_all)


class EnvironmentPool(ConfigurableResource):
    max_idle_per_task: int = 16

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
