"""The ALFWorld engine: TextWorld's PDDL engine (Fast Downward underneath) playing one json_2.1.1 game.

Every observation, admissible command and the ``won`` flag come from ``textworld.envs.pddl``: the
game file's own domain, problem and grammar decide what an action does, so the action text is
whatever the files define (``put X in/on Y`` in json_2.1.1). Entity ids are renamed the way ALFWorld
shows them (``cabinet 3``) and the "You arrive at loc N." prefix is dropped, as ETO/ReAct do. One
episode per game file, reward 1.0 when won, at most 40 steps.

This module is the bottom of the ALFWorld package: it knows nothing of splits or of the expert, so
both :mod:`.expert` and :mod:`.benchmark` can import it without an import circle.
"""

from __future__ import annotations

import collections
import copy
import functools
import re
import sys
import threading
from typing import Any

from eto_assets.envs.base import INVALID_FORMAT_OBSERVATION, BenchmarkNotAvailable, StepResult, TaskInstance

MAX_STEPS = 40
ENGINE_PIN = "textworld[pddl]==1.6.2"

_BANNER = re.compile(r"^\s*-=.*?=-\s*", re.DOTALL)
_ARRIVE = re.compile(r"^You arrive at loc \d+\.\s*")

# textworld's PDDL engine keeps global parser/translator state (shared TatSu parsers, Fast
# Downward's translate options, sys.stdout capture), so all engine calls go through one lock.
_ENGINE_LOCK = threading.RLock()
_SPEEDUPS_FOR = ("1.6.2",)  # the textworld versions whose internals the caches below were checked on


def _import_engine() -> Any:
    try:
        import textworld
        from textworld.envs.pddl import PddlEnv
    except ImportError as exc:
        raise BenchmarkNotAvailable(
            f"ALFWorld needs `{ENGINE_PIN}` (TextWorld's PDDL engine): {exc}"
        ) from exc
    try:
        import fast_downward  # noqa: F401  (the PDDL engine's planner library)
    except ImportError as exc:
        raise BenchmarkNotAvailable(
            f"ALFWorld needs `{ENGINE_PIN}` (fast-downward-textworld): {exc}"
        ) from exc
    with _ENGINE_LOCK:
        _install_speedups(textworld)
    return PddlEnv


@functools.cache
def _install_speedups(textworld: Any) -> bool:
    """Memoise what textworld 1.6.2 recomputes on every step; observations, admissible commands and
    ``won`` stay exactly the stock engine's (checked on 468 steps of 18 games).

    Per step the stock engine re-parses every command template and grammar condition with TatSu
    and deep-copies entity records for each admissible command (about 1 s per step in a kitchen);
    per reset it translates the PDDL problem to SAS twice more. Parsed trees are cached and handed
    out as deep copies, the derivation contexts are copied one level deep (their values are never
    mutated), and the SAS translation of a (domain, problem) pair is made once and reused (the
    planner's copy too, which only ``policy_commands`` would search: it gets the same translation).
    """
    if getattr(textworld, "__version__", "") not in _SPEEDUPS_FOR:
        return False
    import fast_downward
    import textworld.envs.pddl.textgen as textgen
    import textworld.logic as tw_logic

    parse_symbols = textgen._parse_and_convert
    symbols_cache: dict[tuple[str, str | None], Any] = {}

    def cached_parse(text: str, rule_name: str | None = None, **kwargs: Any) -> Any:
        key = (text, rule_name)
        if key not in symbols_cache:
            if len(symbols_cache) > 20_000:
                symbols_cache.clear()
            symbols_cache[key] = parse_symbols(text, rule_name=rule_name, **kwargs)
        return copy.deepcopy(symbols_cache[key])

    def shallow_context(context: dict[str, Any]) -> dict[str, Any]:
        out = dict(context)
        out["variables"] = dict(context["variables"])
        out["mapping"] = dict(context["mapping"])
        return out

    parse_query = tw_logic.Rule.parse_conjunctive_query.__func__
    cached_query = functools.lru_cache(maxsize=4096)(lambda expr: parse_query(tw_logic.Rule, expr))

    translate = fast_downward.pddl2sas
    sas_cache: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()

    def cached_translate(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        # ``optimize`` only shapes the copy the planner searches (policy_commands / walkthrough,
        # which AlfWorldEnv never requests); both copies describe the same task, so one serves.
        key = (domain, problem)
        if key in sas_cache:
            sas_cache.move_to_end(key)
            return sas_cache[key]
        argv = list(sys.argv)  # the translator overwrites sys.argv
        try:
            result = translate(domain, problem, verbose=verbose, optimize=False)
        finally:
            sys.argv[:] = argv
        sas_cache[key] = result
        while len(sas_cache) > 16:
            sas_cache.popitem(last=False)
        return result

    textgen._parse_and_convert = cached_parse
    textgen.copy_context = shallow_context
    tw_logic.Rule.parse_conjunctive_query = classmethod(lambda cls, expr: cached_query(expr))
    fast_downward.pddl2sas = cached_translate
    return True


def name_entities(entity_infos: dict[str, Any]) -> None:
    """Give PDDL ids the names ALFWorld shows: ``cabinet_bar__minus_00_dot_50_...`` -> ``cabinet 3``.

    Instances of a class are numbered by their sorted ids, the last id getting 1 (ALFWorld's
    convention, so "cabinet 3" is the same cabinet as in ALFWorld); a sink's basin is "sinkbasin".
    """
    groups: dict[str, list[str]] = collections.defaultdict(list)
    for entity_id in sorted(entity_infos):
        if "_bar_" in entity_id:
            base = entity_id.split("_bar_", 1)[0] + ("basin" if "basin" in entity_id else "")
            groups[base].append(entity_id)
        else:
            entity_infos[entity_id].name = entity_id  # agent, types, ...: never shown
    for base, members in groups.items():
        for index, entity_id in enumerate(members):
            entity_infos[entity_id].name = f"{base} {len(members) - index}"


def clean_intro(text: str) -> str:
    return _BANNER.sub("", text, count=1).strip()


def clean_feedback(text: str) -> str:
    return _ARRIVE.sub("", text.strip(), count=1)


class AlfWorldEnv:
    """One TextWorld PDDL engine (its own copy of Fast Downward's library); one episode at a time."""

    def __init__(self) -> None:
        self._engine_cls = _import_engine()
        self._engine: Any = None
        self._game_file: str | None = None
        self._admissible: list[str] = []
        self._won = False
        self._done = True
        self._steps = 0
        self._max_steps = MAX_STEPS

    def reset(self, task: TaskInstance) -> str:
        game_file = str(task.payload["game_file"])
        with _ENGINE_LOCK:
            if self._engine is None:
                from textworld.core import EnvInfos

                self._engine = self._engine_cls(EnvInfos(admissible_commands=True, won=True))
            if game_file != self._game_file:
                self._game_file = None
                self._engine.load(game_file)
                name_entities(self._engine._entity_infos)
                self._game_file = game_file
            state = self._engine.reset()
        self._admissible = list(state["admissible_commands"])
        self._won = bool(state["won"])
        self._done, self._steps, self._max_steps = False, 0, task.max_steps
        return clean_intro(state.feedback)

    def step(self, action: str) -> StepResult:
        if self._done:
            raise RuntimeError("step() after the episode ended; call reset() first")
        self._steps += 1
        command = " ".join((action or "").split())
        if not command:
            observation = INVALID_FORMAT_OBSERVATION
        else:
            with _ENGINE_LOCK:
                state, _, _ = self._engine.step(command)
            observation = clean_feedback(state.feedback)
            self._admissible = list(state["admissible_commands"])
            self._won = bool(state["won"])
        self._done = self._won or self._steps >= self._max_steps
        return StepResult(observation, 1.0 if self._won else 0.0, self._done, self._won)

    @property
    def admissible_commands(self) -> list[str]:
        """The engine's admissible commands in the current state (sorted)."""
        return list(self._admissible)

    @property
    def won(self) -> bool:
        return self._won

    @property
    def steps(self) -> int:
        return self._steps

    def close(self) -> None:
        with _ENGINE_LOCK:
            engine, self._engine, self._game_file = self._engine, None, None
            lib = getattr(engine, "downward_lib", None)
            if lib is not None:
                # Free the planner's state but keep the library mapped: ``close_lib`` dlcloses it,
                # and its C++ static destructors, still registered with the process, then crash
                # the interpreter at exit (seen as a segfault after a pipeline run).
                lib.cleanup()
        self._done = True
