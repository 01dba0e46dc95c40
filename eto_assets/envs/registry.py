"""Benchmark names -> benchmark objects, scoped by a profile's :class:`TaskScope`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from eto_assets.config.profile import TASKS, TaskScope
from eto_assets.envs.base import Benchmark, BenchmarkNotAvailable, TaskInstance


class UnknownTaskError(ValueError):
    """The task (partition) name is not one of :data:`TASKS`."""


@dataclass(frozen=True)
class BenchmarkSources:
    """Where benchmarks find their data and how many engines they may start (from the settings)."""

    home: Path
    data_dir: Path | None = None
    alfworld_data: Path | None = None
    sciworld_jvms: int | None = None

    @property
    def webshop_catalog_dir(self) -> Path:
        """Where the generated WebShop catalog is written."""
        return self.home / "webshop" / "catalog"


def webshop_dev_slice(selection: str) -> bool:
    """Whether WebShop holds a dev slice of its train goals out as ``seen``: for every selection rule
    that chooses on the seen split; ``final`` (ETO's protocol, no selection) trains on all of them."""
    return selection != "final"


def split_settings(task: str, selection: str) -> dict[str, object]:
    """What the profile's ``selection`` changes in ``task``'s splits, for the expert stage's version:
    only WebShop without its dev slice (empty otherwise, so other versions stay as they were)."""
    return {"webshop_dev_slice": False} if task == "webshop" and not webshop_dev_slice(selection) else {}


def get_benchmark(task: str, scope: TaskScope, sources: BenchmarkSources, *, selection: str) -> Benchmark:
    """``selection`` is the profile's rule for choosing the champion (``Profile.selection``); it
    decides whether WebShop holds a dev slice out of train (:func:`webshop_dev_slice`)."""
    if task == "sciworld":
        from eto_assets.envs.sciworld import SciWorldBenchmark

        return SciWorldBenchmark(
            scope.task_types,
            max_steps_cap=scope.max_steps_cap,
            jvms=sources.sciworld_jvms,
            data_dir=sources.data_dir,
        )
    if task == "alfworld":
        try:
            from eto_assets.envs.alfworld.benchmark import AlfWorldBenchmark
        except ImportError as exc:
            raise BenchmarkNotAvailable(f"task 'alfworld' is not available ({exc})") from exc
        return AlfWorldBenchmark(
            data_dir=sources.data_dir,
            task_types=scope.task_types,
            max_steps_cap=scope.max_steps_cap,
            alfworld_data=sources.alfworld_data,
        )
    if task == "webshop":
        try:
            from eto_assets.envs.webshop.benchmark import WebShopBenchmark
        except ImportError as exc:
            raise BenchmarkNotAvailable(f"task 'webshop' is not available ({exc})") from exc
        catalog = scope.catalog or "generated"
        return WebShopBenchmark(
            data_dir=sources.data_dir,
            catalog=catalog,
            max_steps_cap=scope.max_steps_cap,
            catalog_dir=sources.webshop_catalog_dir if catalog == "generated" else None,
            dev_slice=webshop_dev_slice(selection),
        )
    raise UnknownTaskError(f"unknown task {task!r}; known tasks: {list(TASKS)}")


def limit_per_type(tasks: list[TaskInstance], per_type: int | None) -> list[TaskInstance]:
    """The first ``per_type`` instances of every task type, order kept."""
    if per_type is None:
        return tasks
    seen: dict[str, int] = defaultdict(int)
    out = []
    for task in tasks:
        if seen[task.task_type] < per_type:
            seen[task.task_type] += 1
            out.append(task)
    return out


def scoped_tasks(benchmark: Benchmark, split: str, scope: TaskScope) -> list[TaskInstance]:
    per_type = scope.train_per_type if split == "train" else scope.eval_per_type
    return limit_per_type(benchmark.tasks(split), per_type)
