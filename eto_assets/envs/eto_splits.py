"""ETO's own split index files, read as facts so runs can use exactly the paper's task lists.

ScienceWorld (``<data_dir>/sciworld/eto_splits/``): ``{train,dev,test}_indices.json`` hold
``[task_name, variation]`` pairs in ETO's (shuffled) order; ``taskname2id.json`` numbers the task
names (ETO's ScienceWorld record ids are ``"<number>_<variation>"``). ETO's names are the old
ScienceWorld release's long names (``task-1-boil``, ``task-6-lifespan-(longest-lived)``); the
engine we run (PyPI ``scienceworld`` 1.2.3) names the same tasks ``boil``,
``lifespan-longest-lived``: :func:`engine_task_name` converts. ETO's lists keep one quirk on
purpose: 54 train items are also in dev (train and test, dev and test are disjoint); we keep them
as ETO has them and expose the overlap so a report can say so.

WebShop (``<data_dir>/webshop/eto_splits/``): ``train_indices.json`` and ``test_indices.json`` are
goal (session) indices into WebShop's human-goal list; train holds 1,824 entries, 1,823 distinct
(4116 twice, as in ETO's SFT file); kept as is.

Small profiles take :func:`first_per_type`: the first N items of each task type in ETO's list
order. ETO's lists are already in a shuffled order, so this is a fixed, seed-free sample that is
the same on every machine and Python version, and nested (the N=2 subset is inside the N=5 one),
so a larger profile only adds tasks; a seeded sample would give neither property for free.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from eto_assets.envs.base import BenchmarkNotAvailable

SCIWORLD_SPLITS = ("train", "dev", "test")
WEBSHOP_SPLITS = ("train", "test")

# The engine's task names (PyPI scienceworld 1.2.3, ``scienceworld/tasks.json``), in its id order.
ENGINE_TASK_NAMES: tuple[str, ...] = (
    "boil", "melt", "freeze", "change-the-state-of-matter-of",
    "use-thermometer", "measure-melting-point-known-substance", "measure-melting-point-unknown-substance",
    "power-component", "power-component-renewable-vs-nonrenewable-energy",
    "test-conductivity", "test-conductivity-of-unknown-substances",
    "find-living-thing", "find-non-living-thing", "find-plant", "find-animal",
    "grow-plant", "grow-fruit",
    "chemistry-mix", "chemistry-mix-paint-secondary-color", "chemistry-mix-paint-tertiary-color",
    "lifespan-longest-lived", "lifespan-shortest-lived", "lifespan-longest-lived-then-shortest-lived",
    "identify-life-stages-1", "identify-life-stages-2",
    "inclined-plane-determine-angle", "inclined-plane-friction-named-surfaces",
    "inclined-plane-friction-unnamed-surfaces",
    "mendelian-genetics-known-plant", "mendelian-genetics-unknown-plant",
)  # fmt: skip

# Old spellings the engine later corrected.
_SPELLING_FIXES = {"mendellian": "mendelian"}
_OLD_PREFIX = re.compile(r"^task-\d+[a-z]?-")


class EtoSplitsNotFound(BenchmarkNotAvailable, FileNotFoundError):
    """An ETO split file is missing; the message names it and says how to point at the data."""


def resolve_data_dir(data_dir: Path | str | None = None) -> Path:
    """``data_dir`` (the ``ETO_DATA_DIR`` setting, a folder laid out like ``shared/data``)."""
    if data_dir is None:
        raise EtoSplitsNotFound(
            "no benchmark data folder given: set ETO_DATA_DIR to a folder holding "
            "sciworld/eto_splits and webshop/eto_splits (laid out like shared/data)"
        )
    return Path(data_dir)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise EtoSplitsNotFound(
            f"ETO split file not found: {path}. Set ETO_DATA_DIR to the benchmark data folder "
            "(laid out like shared/data) or pass data_dir."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def engine_task_name(eto_name: str) -> str:
    """``task-6-lifespan-(longest-lived)`` -> ``lifespan-longest-lived`` (the engine's name).

    Raises ValueError when the result is not one of the engine's tasks, so a renamed task is
    caught when the splits are read rather than when the engine refuses to load it.
    """
    name = _OLD_PREFIX.sub("", eto_name).replace("(", "").replace(")", "")
    for old, new in _SPELLING_FIXES.items():
        name = name.replace(old, new)
    if name not in ENGINE_TASK_NAMES:
        raise ValueError(f"ETO task name {eto_name!r} maps to {name!r}, which is not a ScienceWorld task")
    return name


@dataclass(frozen=True)
class SciWorldItem:
    """One ETO ScienceWorld task: ETO's name, the engine's name and the variation index."""

    eto_name: str
    task_name: str
    variation: int

    @property
    def task_id(self) -> str:
        """Our task id for it (``<engine task name>/<variation>``, as the ScienceWorld benchmark uses)."""
        return f"{self.task_name}/{self.variation}"


@dataclass(frozen=True)
class SciWorldEtoSplits:
    train: tuple[SciWorldItem, ...]
    dev: tuple[SciWorldItem, ...]
    test: tuple[SciWorldItem, ...]
    taskname2id: Mapping[str, int]  # ETO task name -> the number in ETO's record ids

    def split(self, name: str) -> tuple[SciWorldItem, ...]:
        if name not in SCIWORLD_SPLITS:
            raise ValueError(f"unknown ETO ScienceWorld split {name!r}; known: {SCIWORLD_SPLITS}")
        return getattr(self, name)

    @property
    def train_dev_overlap(self) -> tuple[SciWorldItem, ...]:
        """Items in both train and dev, in train order (ETO's quirk, kept on purpose)."""
        dev = set(self.dev)
        return tuple(item for item in self.train if item in dev)

    def eto_id(self, item: SciWorldItem) -> str:
        """ETO's record id of an item: ``"<taskname2id number>_<variation>"``."""
        return f"{self.taskname2id[item.eto_name]}_{item.variation}"

    def record_resolver(self) -> dict[str, str]:
        """ETO record id -> our task id, over all three splits (for ``match_records``)."""
        return {self.eto_id(item): item.task_id for name in SCIWORLD_SPLITS for item in self.split(name)}


def _sciworld_items(path: Path, names: Mapping[str, int]) -> tuple[SciWorldItem, ...]:
    raw = _load_json(path)
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of [task_name, variation] pairs")
    items = []
    for i, entry in enumerate(raw):
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not isinstance(entry[0], str)
            or isinstance(entry[1], bool)
            or not isinstance(entry[1], int)
        ):
            raise ValueError(f"{path}: entry {i} is not a [task_name, variation] pair: {entry!r}")
        if entry[0] not in names:
            raise ValueError(f"{path}: entry {i}: task {entry[0]!r} is not in taskname2id.json")
        items.append(SciWorldItem(entry[0], engine_task_name(entry[0]), entry[1]))
    return tuple(items)


def load_sciworld_eto_splits(data_dir: Path | str | None = None) -> SciWorldEtoSplits:
    """ETO's ScienceWorld train / dev / test lists (1,483 / 194 / 211 items with ETO's files)."""
    folder = resolve_data_dir(data_dir) / "sciworld" / "eto_splits"
    names = _load_json(folder / "taskname2id.json")
    if not isinstance(names, dict):
        raise ValueError(f"{folder / 'taskname2id.json'}: expected an object of task name -> id")
    taskname2id = {str(k): int(v) for k, v in names.items()}
    parts = {s: _sciworld_items(folder / f"{s}_indices.json", taskname2id) for s in SCIWORLD_SPLITS}
    return SciWorldEtoSplits(parts["train"], parts["dev"], parts["test"], taskname2id)


@dataclass(frozen=True)
class WebShopEtoSplits:
    train: tuple[int, ...]  # goal indices in ETO's order, duplicates kept
    test: tuple[int, ...]

    def split(self, name: str) -> tuple[int, ...]:
        if name not in WEBSHOP_SPLITS:
            raise ValueError(f"unknown ETO WebShop split {name!r}; known: {WEBSHOP_SPLITS}")
        return getattr(self, name)

    def duplicates(self, name: str) -> dict[int, int]:
        """Goal index -> occurrences, for indices listed more than once (train: {4116: 2})."""
        return {k: n for k, n in Counter(self.split(name)).items() if n > 1}

    @property
    def train_test_overlap(self) -> frozenset[int]:
        return frozenset(self.train) & frozenset(self.test)


def _int_list(path: Path) -> tuple[int, ...]:
    raw = _load_json(path)
    if not isinstance(raw, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in raw):
        raise ValueError(f"{path}: expected a list of integer goal indices")
    return tuple(raw)


def load_webshop_eto_splits(data_dir: Path | str | None = None) -> WebShopEtoSplits:
    """ETO's WebShop train / test goal indices (1,824 / 200 entries with ETO's files)."""
    folder = resolve_data_dir(data_dir) / "webshop" / "eto_splits"
    return WebShopEtoSplits(_int_list(folder / "train_indices.json"), _int_list(folder / "test_indices.json"))


T = TypeVar("T")


def first_per_type(items: Iterable[T], n: int, key: Callable[[T], Hashable] | None = None) -> list[T]:
    """The first ``n`` items of each type, in the input order (see the module doc for why).

    ``key`` gives an item's type; by default ``item.task_name`` (ScienceWorld items), and items
    without one (WebShop goal indices) form a single type, so the result is simply the first ``n``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    type_of = key or (lambda item: getattr(item, "task_name", None))
    seen: Counter[Hashable] = Counter()
    out = []
    for item in items:
        kind = type_of(item)
        if seen[kind] < n:
            seen[kind] += 1
            out.append(item)
    return out
