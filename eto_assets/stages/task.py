"""One task's run as the stages see it: the profile, where artifacts go, and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass

from eto_assets.config.profile import Profile, TaskScope
from eto_assets.envs.base import Benchmark, TaskInstance
from eto_assets.envs.registry import BenchmarkSources, get_benchmark, scoped_tasks
from eto_assets.stages.layout import ArtifactLayout


@dataclass(frozen=True)
class TaskRun:
    task: str
    profile: Profile
    layout: ArtifactLayout
    benchmark: Benchmark

    @property
    def scope(self) -> TaskScope:
        return self.profile.scope(self.task)

    @property
    def iterations(self) -> int:
        """ETO iterations the profile runs for this task."""
        return self.profile.iterations_for(self.task)

    def for_method(self, method: str) -> TaskRun:
        """The same run with ``method``'s artifact folders (see :class:`ArtifactLayout`)."""
        return TaskRun(self.task, self.profile, self.layout.for_method(method), self.benchmark)

    def tasks(self, split: str) -> list[TaskInstance]:
        """The split's task instances, limited to the profile's scope."""
        return scoped_tasks(self.benchmark, split, self.scope)


def open_task_run(task: str, profile: Profile, sources: BenchmarkSources) -> TaskRun:
    benchmark = get_benchmark(task, profile.scope(task), sources, selection=profile.selection)
    return TaskRun(task, profile, ArtifactLayout(sources.home, task), benchmark)
