"""The environment pool as a resource: set up when a run starts, closed when it ends (every idle
environment, JVM and worker process with it), so the stages of one run share warm engines."""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from eto_assets.config import settings as env
from eto_assets.envs.pool import EnvironmentPool


class EnvironmentsResource(ConfigurableResource):
    max_idle_per_task: int = Field(default=16, ge=0, description="idle environments kept per benchmark")
    env_processes: int = Field(
        default=env.env_processes(),
        ge=0,
        description=f"ETO_ENV_PROCESSES: {env.SETTINGS['ETO_ENV_PROCESSES'].help}",
    )
    sciworld_jvms: int = Field(
        default=env.sciworld_jvms(),
        ge=1,
        description=f"ETO_SCIWORLD_JVMS: {env.SETTINGS['ETO_SCIWORLD_JVMS'].help}",
    )
    _pool: EnvironmentPool | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._pool = EnvironmentPool(max_idle=self.max_idle_per_task, processes=self.env_processes)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @property
    def pool(self) -> EnvironmentPool:
        if self._pool is None:  # used outside a run (a test, a script): the caller closes it
            self._pool = EnvironmentPool(max_idle=self.max_idle_per_task, processes=self.env_processes)
        return self._pool
