"""ScienceWorld on its real Java engine (PyPI ``scienceworld``).

Splits are ETO's own lists (``$ETO_DATA_DIR/sciworld/eto_splits``, read by
:func:`eto_assets.envs.eto_splits.load_sciworld_eto_splits`): train 1,483, "seen" = ETO's dev 194,
"unseen" = ETO's test 211, over 24 task types, in ETO's order (a profile's ``train_per_type`` /
``eval_per_type`` then take the first N of each type). ETO's quirk is kept: 54 train tasks are
also in dev. Without the split files (a machine with no data folder) the benchmark falls back to
splits sampled from the engine's own variation lists (train at most 120 per type, seen/unseen at
most 10), with a loud warning; such a run is marked not comparable with the paper.
The wrapper's ``step`` asks the engine only for the observation, score and completion flag: the
stock ``ScienceWorldEnv.step`` also builds the valid-action list, look and inventory on every
step, which the agent never sees and which costs most of the step time. Games share a few JVMs
(:class:`EngineHost`) rather than starting one each.
The JVMs run a deterministic engine (:func:`engine_classpath`, :meth:`SciWorldEnv.gold_actions`): a
task's gold path and the observations of a given action sequence are the same on every JVM launch
and whatever the JVM ran before, so two runs of a profile generate the same expert data.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import hashlib
import os
import random
import shutil
import struct
import tempfile
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from eto_assets.data.schemas import Message, Trajectory
from eto_assets.envs.base import (
    INVALID_FORMAT_OBSERVATION,
    BenchmarkNotAvailable,
    PromptSpec,
    StepResult,
    TaskInstance,
    replay_actions,
)

SIMPLIFICATION = "easy"

# ETO's ScienceWorld task turn is the engine's ``info["taskDesc"]`` as is (eval_agent/envs/
# sciworld_env.py:95-97), which the engine writes as this prefix plus the task; ETO's golden
# (SFT) records and its preference prompts carry the task without it (construct_preference.py:74,
# :141 strip it from explored episodes before pairing).
TASK_TURN_PREFIX = "Task Description:\n"


def golden_task_turn(task_turn: str) -> str:
    """The task turn in the form of ETO's golden records: without ``TASK_TURN_PREFIX``, so expert
    episodes read like the imported ETO data (construct_preference.py:74)."""
    if task_turn.startswith(TASK_TURN_PREFIX):
        return task_turn[len(TASK_TURN_PREFIX) :].strip()
    return task_turn


def played_task_turn(task_turn: str) -> str:
    """The task turn as the agent reads it while playing (``TASK_TURN_PREFIX`` and the task): what a
    golden record's task turn becomes when the policy is asked for a turn from it."""
    return task_turn if task_turn.startswith(TASK_TURN_PREFIX) else TASK_TURN_PREFIX + task_turn


def golden_form(trajectory: Trajectory) -> Trajectory:
    """``trajectory`` with its task turn in the golden records' form (no ``Task Description:``): how
    expert episodes are stored, and how the pairs stage reads explored ones (construct_preference.py
    :74, :141). Returned as is when there is nothing to strip."""
    first = trajectory.messages[0] if trajectory.messages else None
    if first is None or first.role != "user" or golden_task_turn(first.content) == first.content:
        return trajectory
    messages = [Message("user", golden_task_turn(first.content)), *trajectory.messages[1:]]
    return dataclasses.replace(trajectory, messages=messages)


# Step limits per task type (the engine's short task names), as in ETO's evaluation.
MAX_STEPS: dict[str, int] = {
    "boil": 100,
    "change-the-state-of-matter-of": 80,
    "freeze": 80,
    "melt": 80,
    "measure-melting-point-known-substance": 120,
    "use-thermometer": 30,
    "power-component": 20,
    "power-component-renewable-vs-nonrenewable-energy": 30,
    "test-conductivity": 30,
    "test-conductivity-of-unknown-substances": 30,
    "find-animal": 15,
    "find-living-thing": 15,
    "find-non-living-thing": 15,
    "find-plant": 15,
    "grow-fruit": 60,
    "grow-plant": 30,
    "chemistry-mix": 60,
    "chemistry-mix-paint-secondary-color": 15,
    "chemistry-mix-paint-tertiary-color": 30,
    "lifespan-longest-lived": 10,
    "lifespan-longest-lived-then-shortest-lived": 12,
    "lifespan-shortest-lived": 10,
    "identify-life-stages-1": 30,
    "identify-life-stages-2": 30,
}

SPLIT_CAPS = {"train": 120, "seen": 10, "unseen": 10}
SPLIT_SEED = 20240305

INSTRUCTION = """You are a science agent in a text-based simulated world of rooms, objects, living \
things and devices. You get a science task and complete it by acting in the world, one action per turn.
After each action you receive an observation describing what happened.

Actions you can use (OBJ and LOC are object or place names exactly as they appear in observations):
- look around: describe the current room
- look at OBJ / look in OBJ: describe an object or a container's contents
- go to LOC: move to an adjacent room (doors must be open)
- open OBJ / close OBJ
- pick up OBJ / put down OBJ / move OBJ to OBJ: carry objects or place them in containers
- pour OBJ into OBJ / mix OBJ: combine substances
- activate OBJ / deactivate OBJ: switch devices on or off
- connect OBJ to OBJ / disconnect OBJ: build electrical circuits
- use OBJ on OBJ: use a tool (for example a thermometer) on something
- eat OBJ / read OBJ / dunk OBJ into OBJ / teleport to LOC / inventory / wait / wait1
- focus on OBJ: declare the object your task is about; focusing on the wrong object ends the task
- When a task asks you to choose, answer by focusing on or moving the chosen object as instructed.

Answer every turn with exactly one line of the form
Action: <one action>
"""


@dataclass(frozen=True)
class SciWorldSplits:
    """task type -> sorted variation indices, per split."""

    train: dict[str, list[int]]
    seen: dict[str, list[int]]
    unseen: dict[str, list[int]]

    def as_dict(self) -> dict[str, dict[str, list[int]]]:
        return {"train": self.train, "seen": self.seen, "unseen": self.unseen}


def _import_engine():
    try:
        from scienceworld import ScienceWorldEnv
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise BenchmarkNotAvailable("ScienceWorld needs the `scienceworld` package and Java 17") from exc
    return ScienceWorldEnv


def task_types() -> list[str]:
    """Task types ETO uses, in a stable order."""
    return sorted(MAX_STEPS)


def _sample(variations: list[int], cap: int, rng: random.Random) -> list[int]:
    if len(variations) <= cap:
        return sorted(variations)
    return sorted(rng.sample(sorted(variations), cap))


ETO_SPLIT_NAMES = {"train": "train", "seen": "dev", "unseen": "test"}
_FALLBACK_WARNING = (
    "ScienceWorld: ETO's split lists were not found ({why}); FALLING BACK to splits sampled from the "
    "engine's variations. Set ETO_DATA_DIR to a folder holding sciworld/eto_splits. Results of this "
    "run are not comparable with the paper."
)


@functools.lru_cache(maxsize=8)
def eto_split_order(data_dir: Path | None) -> dict[str, list[tuple[str, int]]] | None:
    """ETO's lists as ``(task type, variation)`` in ETO's order per split (train / seen / unseen);
    None, after a loud warning, when the files are not there."""
    from eto_assets.envs.eto_splits import EtoSplitsNotFound, load_sciworld_eto_splits

    try:
        eto = load_sciworld_eto_splits(data_dir)
    except EtoSplitsNotFound as exc:
        warnings.warn(_FALLBACK_WARNING.format(why=exc), stacklevel=2)
        return None
    return {
        ours: [(item.task_name, item.variation) for item in eto.split(theirs)]
        for ours, theirs in ETO_SPLIT_NAMES.items()
    }


# --------------------------------------------------------------------------- determinism
# The engine (1.2.3) keeps a room's objects in hash sets, and its ``EnvObject`` overrides ``equals``
# (same ``uuid``) but not ``hashCode``: the JVM's identity hash codes, which differ on every launch,
# fix the order in which the engine lists objects in observations, ticks them (bees, heat) and
# shuffles them with its seeded random stream, so gold paths and observation texts changed from
# launch to launch (measured: 40 of 119 expert episodes identical across two launches). The engine
# resets the ``uuid`` counter on every load, so a ``hashCode`` of the ``uuid`` is the same on every
# launch: the JVMs load a copy of ``EnvObject`` with that ``hashCode``, ahead of the jar on the
# classpath (upstream fixed the same after 1.2.3 by ordering those sets by ``uuid``). Its ``equals``
# becomes identity: the same within a game, where every live object has its own ``uuid``, but games
# sharing a JVM share the counter, so two objects of one game can get the same ``uuid``, and with
# ``uuid`` equality and hashes a set would drop one of them. JVM flags cannot do it: with
# ``-XX:hashCode=3`` (one counter) the hashes depend on what the JVM ran before, and
# ``-XX:hashCode=2`` (all equal) is 1.4 times slower.
ENV_OBJECT_CLASS = "scienceworld/struct/EnvObject.class"
_CONSTANT_SIZES = {3: 4, 4: 4, 5: 8, 6: 8, 7: 2, 8: 2, 9: 4, 10: 4, 11: 4, 12: 4, 15: 3, 16: 2, 17: 4, 18: 4}
_HASH_CODE = (b"hashCode", b"()I")
_EQUALS = {(b"equals", b"(Ljava/lang/Object;)Z"), (b"equals", b"(Lscienceworld/struct/EnvObject;)Z")}


def _members(
    data: bytes, pos: int, utf8: dict[int, bytes]
) -> tuple[int, list[tuple[bytes, bytes, int, int]]]:
    """(position after, [(name, descriptor, start, end)]) of the class file's field or method table
    at ``pos``."""
    members = []
    count, pos = struct.unpack_from(">H", data, pos)[0], pos + 2
    for _ in range(count):
        start, (_, name, descriptor, attributes) = pos, struct.unpack_from(">HHHH", data, pos)
        pos += 8
        for _ in range(attributes):
            pos += 6 + struct.unpack_from(">I", data, pos + 2)[0]
        members.append((utf8[name], utf8[descriptor], start, pos))
    return pos, members


def deterministic_env_object(data: bytes) -> bytes | None:
    """The class file ``data`` (``EnvObject``) with ``hashCode() { return Long.hashCode(uuid); }``
    added and both ``equals`` made ``Object.equals`` (identity); None when it has a ``hashCode``."""
    count, pos, index, utf8 = struct.unpack_from(">H", data, 8)[0], 10, 1, {}
    while index < count:  # the constant pool
        tag = data[pos]
        if tag == 1:
            size = struct.unpack_from(">H", data, pos + 1)[0]
            utf8[index], pos = data[pos + 3 : pos + 3 + size], pos + 3 + size
        else:
            pos += 1 + _CONSTANT_SIZES[tag]
        index += 2 if tag in (5, 6) else 1
    pool_end, this_class = pos, struct.unpack_from(">H", data, pos + 2)[0]
    pos += 8 + 2 * struct.unpack_from(">H", data, pos + 6)[0]  # flags, this, super, interfaces
    methods_at, fields = _members(data, pos, utf8)
    end, methods = _members(data, methods_at, utf8)
    if any((name, descriptor) == _HASH_CODE for name, descriptor, _, _ in methods):
        return None
    if not any((name, descriptor) == (b"uuid", b"J") for name, descriptor, _, _ in fields):
        raise BenchmarkNotAvailable("ScienceWorld's EnvObject has no `long uuid` field (engine != 1.2.3?)")
    added: list[bytes] = []

    def constant(tag: int, fmt: str, *values) -> int:
        added.append(struct.pack(">B" + fmt, tag, *values))
        return count + len(added) - 1

    def text(value: bytes) -> int:
        return constant(1, f"H{len(value)}s", len(value), value)

    def reference(tag: int, owner: int, name: bytes, descriptor: bytes) -> int:
        return constant(tag, "HH", owner, constant(12, "HH", text(name), text(descriptor)))

    code = text(b"Code")

    def method(flags: int, name: bytes, descriptor: bytes, stack: int, local: int, body: bytes) -> bytes:
        attribute = struct.pack(">HHI", stack, local, len(body)) + body + struct.pack(">HH", 0, 0)
        head = struct.pack(">HHHH", flags, text(name), text(descriptor), 1)
        return head + struct.pack(">HI", code, len(attribute)) + attribute

    uuid = reference(9, this_class, b"uuid", b"J")
    long_hash = reference(10, constant(7, "H", text(b"java/lang/Long")), b"hashCode", b"(J)I")
    same = reference(10, constant(7, "H", text(b"java/lang/Object")), b"equals", b"(Ljava/lang/Object;)Z")
    # aload_0; getfield uuid; invokestatic Long.hashCode; ireturn
    table = [
        method(0x0001, *_HASH_CODE, 2, 1, struct.pack(">BBHBHB", 0x2A, 0xB4, uuid, 0xB8, long_hash, 0xAC))
    ]
    for name, descriptor, start, stop in methods:
        if (name, descriptor) in _EQUALS:  # aload_0; aload_1; invokespecial Object.equals; ireturn
            flags = struct.unpack_from(">H", data, start)[0]
            table.append(
                method(flags, name, descriptor, 2, 2, struct.pack(">BBBHB", 0x2A, 0x2B, 0xB7, same, 0xAC))
            )
        else:
            table.append(data[start:stop])
    pool = struct.pack(">H", count + len(added)) + data[10:pool_end] + b"".join(added)
    return (
        data[:8]
        + pool
        + data[pool_end:methods_at]
        + struct.pack(">H", len(table))
        + b"".join(table)
        + data[end:]
    )


@functools.lru_cache(maxsize=4)
def _deterministic_class(jar: str) -> bytes | None:
    with zipfile.ZipFile(jar) as archive:
        return deterministic_env_object(archive.read(ENV_OBJECT_CLASS))


def _class_folder(patched: bytes) -> Path:
    """A folder holding ``patched`` as ``ENV_OBJECT_CLASS``: one per content in the user's cache
    (``~/.cache/eto``; shared by processes, written atomically), else a private temporary one."""
    try:
        folder = Path.home() / ".cache" / "eto" / f"sciworld-{hashlib.sha256(patched).hexdigest()[:16]}"
        target = folder / ENV_OBJECT_CLASS
        if not target.is_file() or target.read_bytes() != patched:
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}")
            part.write_bytes(patched)
            os.replace(part, target)
        return folder
    except (OSError, RuntimeError):  # no home folder, or not writable
        folder = Path(tempfile.mkdtemp(prefix="eto-sciworld-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        (folder / ENV_OBJECT_CLASS).parent.mkdir(parents=True)
        (folder / ENV_OBJECT_CLASS).write_bytes(patched)
        return folder


def engine_classpath() -> str:
    """The classpath the JVMs start with: the deterministic ``EnvObject`` ahead of the engine's jar."""
    from scienceworld.constants import JAR_PATH

    patched = _deterministic_class(JAR_PATH)
    return JAR_PATH if patched is None else os.pathsep.join([str(_class_folder(patched)), JAR_PATH])


def _start_engine():
    """A new JVM with the engine (deterministic: see :func:`engine_classpath`)."""
    engine = _import_engine()
    return engine("", serverPath=engine_classpath(), envStepLimit=10_000)


@functools.lru_cache(maxsize=1)
def compute_splits() -> SciWorldSplits:
    """Ask the engine for its train/dev/test variations and sample ETO-sized splits (deterministic)."""
    engine = _start_engine()
    try:
        names = set(engine.get_task_names())
        splits: dict[str, dict[str, list[int]]] = {"train": {}, "seen": {}, "unseen": {}}
        for task_type in task_types():
            if task_type not in names:
                raise BenchmarkNotAvailable(f"ScienceWorld engine has no task {task_type!r}")
            engine.load(task_type, 0, SIMPLIFICATION, generateGoldPath=False)
            per_split = {
                "train": list(engine.get_variations_train()),
                "seen": list(engine.get_variations_dev()),
                "unseen": list(engine.get_variations_test()),
            }
            for split, variations in per_split.items():
                rng = random.Random(f"{SPLIT_SEED}-{task_type}-{split}")
                splits[split][task_type] = _sample(variations, SPLIT_CAPS[split], rng)
    finally:
        engine.close()
    return SciWorldSplits(**splits)


class EngineHost:
    """One ScienceWorld JVM hosting any number of games (one ``PythonInterface`` object each).

    The engine keeps state shared between the games of a JVM: steps of two games running at once
    corrupt each other (measured), while interleaved one at a time they play correctly, though not
    word for word as alone: they share the engine's random stream and object-id counter, so random
    events (bees) and the order objects are listed in follow the interleaving (a game alone on its
    JVM is reproducible). So every call into a host holds its lock; parallelism comes from several
    hosts (JVM processes), and games sharing a JVM share its warmed-up JIT instead of each starting
    cold.
    """

    def __init__(self) -> None:
        _silence_py4j()
        self.engine = _start_engine()
        self.process = self.engine._gateway.java_process  # the JVM (a Popen)
        # The gold agent's room-search routes, cached per start room for the JVM's lifetime.
        path_finder = self.engine._gateway.jvm.scienceworld.goldagent.PathFinder
        self.gold_routes = path_finder.precomputedExhaustivePaths()
        self.lock = threading.Lock()
        self.games = 0
        self.dead = False  # set when a call found the JVM gone or it was killed

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self.dead and self.process.poll() is None

    def kill(self) -> None:
        """Stop a JVM that died or hung (its games fail on their next call and are replaced)."""
        self.dead = True
        with contextlib.suppress(OSError):
            self.process.kill()

    def new_game(self):
        with self.lock:
            return self.engine._gateway.jvm.scienceworld.runtime.pythonapi.PythonInterface()

    def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            if self.alive:
                engine.close()
            else:  # a dead JVM: only the Python side of the gateway is left to shut
                self.kill()
                with _quiet_py4j(), contextlib.suppress(Exception):
                    engine._gateway.shutdown()
            engine.close = lambda: None  # the engine's __del__ closes again and hits a dead pipe


class EngineHosts:
    """The process's JVMs: a new game goes to the least-loaded host, a new host is started while
    there are fewer than ``max_hosts``; a host whose last game closes shuts its JVM down.

    ``max_hosts`` comes from ``ETO_SCIWORLD_JVMS``; the default is one JVM per two CPU cores, because a
    stepping JVM keeps about 1.3 cores busy (its own GC and JIT threads; measured on 2 cores, where
    a second JVM made 16 concurrent episodes slower, not faster)."""

    def __init__(self, max_hosts: int | None = None) -> None:
        self._hosts: list[EngineHost] = []
        self._lock = threading.Lock()
        self._max_hosts = max_hosts

    def __len__(self) -> int:
        return len(self._hosts)

    @property
    def max_hosts(self) -> int:
        return self._max_hosts or max(1, (os.cpu_count() or 2) // 2)

    def acquire(self) -> EngineHost:
        with self._lock:
            # A dead JVM takes no new games; a new one is started in its place.
            self._hosts = [h for h in self._hosts if h.alive]
            if len(self._hosts) < self.max_hosts:
                host = EngineHost()
                self._hosts.append(host)
            else:
                host = min(self._hosts, key=lambda h: h.games)
            host.games += 1
            return host

    def release(self, host: EngineHost) -> None:
        with self._lock:
            host.games -= 1
            if host.games > 0:
                return
            if host in self._hosts:
                self._hosts.remove(host)
        host.close()


_SHARED_HOSTS: dict[int | None, EngineHosts] = {}
_SHARED_LOCK = threading.Lock()


def shared_hosts(max_hosts: int | None = None) -> EngineHosts:
    """The process's JVM group for a JVM cap: every benchmark with that cap shares its JVMs."""
    with _SHARED_LOCK:
        if max_hosts not in _SHARED_HOSTS:
            _SHARED_HOSTS[max_hosts] = EngineHosts(max_hosts)
        return _SHARED_HOSTS[max_hosts]


class EngineCrashed(RuntimeError):
    """The JVM hosting a game died (or was killed after a hang) during a call."""


class SciWorldEnv:
    """One ScienceWorld game on a shared JVM (see :class:`EngineHost`); one episode at a time.

    A call that finds its JVM dead raises :class:`EngineCrashed`; the next ``reset`` moves the game
    to a live JVM (a new one is started in the dead one's place), so the episode can be replayed."""

    def __init__(self, hosts: EngineHosts | None = None) -> None:
        self._hosts = hosts if hosts is not None else shared_hosts()
        self._host: EngineHost | None = None
        self._attach()
        self._best_score = 0.0
        self._done = True
        self._in_call = False

    def _attach(self) -> None:
        """A new game on a live JVM; a JVM that dies while the game is created is replaced once."""
        for attempt in (1, 2):
            host = self._hosts.acquire()
            try:
                self._server = host.new_game()
            except Exception:
                died = not host.alive
                if died:
                    host.dead = True
                self._hosts.release(host)
                if died and attempt == 1:
                    continue
                raise
            self._host = host
            return

    def _reattach_if_dead(self) -> None:
        if self._host is not None and not self._host.alive:
            host, self._host = self._host, None
            self._hosts.release(host)
            self._attach()

    @contextlib.contextmanager
    def _call(self, what: str):
        """One call into the engine, under the host's lock; a dead JVM becomes EngineCrashed."""
        host = self._host
        if host is None:
            raise RuntimeError("ScienceWorld game used after close()")
        with host.lock:
            self._in_call = True
            try:
                yield
            except Exception as exc:
                from py4j.protocol import Py4JError

                if isinstance(exc, Py4JError) and not (host.alive and _is_java_exception(exc)):
                    host.dead = True
                    code = host.process.poll()
                    raise EngineCrashed(
                        f"ScienceWorld JVM (pid {host.pid}) died during {what} (exit code {code}): "
                        f"{type(exc).__name__}"
                    ) from exc
                raise
            finally:
                self._in_call = False

    def _load(self, task: TaskInstance, gold: bool) -> None:
        variation = int(task.payload["variation"])
        self._best_score = 0.0
        self._done = False
        self._server.load(task.task_type, variation, SIMPLIFICATION, gold)

    def reset(self, task: TaskInstance) -> str:
        self._reattach_if_dead()
        with self._call(f"reset of task {task.task_id}"):
            self._load(task, gold=False)
            # What ETO's agent reads (sciworld_env.py:96): "Task Description:\n" and the task.
            return str(self._server.freeActionTaskDesc())

    def step(self, action: str) -> StepResult:
        if self._done:
            raise RuntimeError("step() after the episode ended; call reset() first")
        if action is None or action == "":
            return StepResult(INVALID_FORMAT_OBSERVATION, self._best_score, False, False)
        with self._call(f"step {action!r}"):
            observation = str(self._server.step(action))
            score = float(self._server.getScore())  # 0..1; negative when the task failed
            completed = bool(self._server.getCompleted())
        self._best_score = max(self._best_score, score)
        success = completed and score >= 1.0
        self._done = completed or score < 0
        return StepResult(observation, min(self._best_score, 1.0), self._done, success)

    def gold_actions(self, task: TaskInstance) -> list[str]:
        self._reattach_if_dead()
        with self._call(f"gold path of task {task.task_id}"):
            # The engine caches the routes its gold agent searches the house by, per start room,
            # for the JVM's lifetime, so a gold path depended on which tasks the JVM had solved
            # before; emptied first, every gold path is the one a fresh JVM gives (the search
            # then costs about 0.2 s of engine time per gold path).
            self._host.gold_routes.clear()
            self._load(task, gold=True)
            return list(self._server.getGoldActionSequence())

    @property
    def host_pid(self) -> int | None:
        """The pid of the JVM this game runs on."""
        return self._host.pid if self._host is not None else None

    def discard(self) -> None:
        """Give the game up after a fault: a call still running (a hang) kills its JVM, whose other
        games then fail and are replayed on a new one; a dead JVM is shut."""
        host = self._host
        if host is not None and (self._in_call or not host.alive):
            host.kill()
        self.close()

    def close(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            self._server = None
            self._hosts.release(host)


def _is_java_exception(exc: Exception) -> bool:
    """A Java exception thrown by the engine (the JVM is fine), not a broken connection."""
    from py4j.protocol import Py4JJavaError

    return isinstance(exc, Py4JJavaError)


@contextlib.contextmanager
def _quiet_py4j():
    """py4j logs every failed reconnect to a dead JVM at ERROR; shutting one down is expected."""
    import logging

    logger = logging.getLogger("py4j")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@functools.lru_cache(maxsize=1)
def _silence_py4j() -> None:
    """py4j logs a full traceback at ERROR for every call that finds its JVM dead (eight for one
    killed JVM); the games raise :class:`EngineCrashed` naming the JVM instead, and the rollout
    counts the restart (``*_env_restarts``), so those tracebacks only bury the one line that matters."""
    import logging

    logging.getLogger("py4j").setLevel(logging.CRITICAL)


@functools.lru_cache(maxsize=1)
def _no_data_dir() -> None:
    warnings.warn(_FALLBACK_WARNING.format(why="ETO_DATA_DIR is not set"), stacklevel=3)
    return None


class SciWorldBenchmark:
    name = "sciworld"
    pure_python = False  # its games run in JVMs; threads suffice

    def __init__(
        self,
        task_types: list[str] | None = None,
        max_steps_cap: int | None = None,
        jvms: int | None = None,
        data_dir: Path | str | None = None,
    ) -> None:
        """``jvms``: the most JVMs this process starts for its games (None: one per two cores);
        ``data_dir``: the folder holding ``sciworld/eto_splits`` (None: ``$ETO_DATA_DIR``)."""
        unknown = sorted(set(task_types or []) - set(MAX_STEPS))
        if unknown:
            raise ValueError(f"unknown ScienceWorld task types {unknown}; known: {sorted(MAX_STEPS)}")
        self._task_types = list(task_types) if task_types else sorted(MAX_STEPS)
        self._max_steps_cap = max_steps_cap
        self._jvms = jvms
        self._data_dir = Path(data_dir) if data_dir else None

    @property
    def key(self) -> str:
        """Identifies the configuration: environments are pooled per key."""
        return f"sciworld:{','.join(self._task_types)}:{self._max_steps_cap}"

    @property
    def data_dir(self) -> Path | None:
        """The folder holding ``sciworld/eto_splits`` (None: no data folder)."""
        return self._data_dir

    def _eto_order(self) -> dict[str, list[tuple[str, int]]] | None:
        return _no_data_dir() if self._data_dir is None else eto_split_order(self._data_dir)

    @property
    def split_source(self) -> str:
        """``eto`` when ETO's split lists are used, ``engine-sampled`` on the fallback."""
        return "eto" if self._eto_order() is not None else "engine-sampled"

    def tasks(self, split: str) -> list[TaskInstance]:
        """The split's tasks of the benchmark's types: in ETO's list order with ETO's splits (so the
        first N per type is ETO's deterministic subset), grouped by type on the fallback."""
        eto = self._eto_order()
        if eto is not None:
            wanted = set(self._task_types)
            order = [(t, v) for t, v in eto[split] if t in wanted]
        else:
            by_type = compute_splits().as_dict()[split]
            order = [(t, v) for t in self._task_types for v in by_type[t]]
        out = []
        for task_type, variation in order:
            limit = MAX_STEPS[task_type]
            if self._max_steps_cap:
                limit = min(limit, self._max_steps_cap)
            out.append(
                TaskInstance(
                    task_id=f"{task_type}/{variation}",
                    task_type=task_type,
                    split=split,
                    max_steps=limit,
                    payload={"variation": variation},
                )
            )
        return out

    def make_env(self) -> SciWorldEnv:
        return SciWorldEnv(shared_hosts(self._jvms))

    def prompt_spec(self) -> PromptSpec:
        return PromptSpec(instruction=INSTRUCTION, with_thoughts=False)

    def expert_trajectory(self, env: SciWorldEnv, task: TaskInstance) -> Trajectory | None:
        gold = env.gold_actions(task)
        # The gold path can be longer than the step limit; the expert gets the full gold path.
        full = TaskInstance(
            task.task_id, task.task_type, task.split, max(task.max_steps, len(gold)), task.payload
        )
        trajectory = replay_actions(env, full, [(None, a) for a in gold])
        return golden_form(trajectory) if trajectory.success else None
