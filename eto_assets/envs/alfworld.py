"""ALFWorld (text) on TextWorld's PDDL engine, with the json_2.1.1 game files ETO and ReAct use.

Every observation, admissible command and the ``won`` flag come from ``textworld.envs.pddl``
(Fast Downward underneath): the game file's own domain, problem and grammar decide what an action
does, so the action text is whatever the files define (``put X in/on Y`` in json_2.1.1). Entity
ids are renamed the way ALFWorld shows them (``cabinet 3``) and the "You arrive at loc N." prefix
is dropped, as ETO/ReAct do. One episode per game file, reward 1.0 when won, at most 40 steps.

Splits: "train" = the train game files present, "seen" = valid_seen, "unseen" = valid_unseen,
each sorted by path. The expert lives in :mod:`eto_assets.envs.alfworld_expert`.
"""

from __future__ import annotations

import collections
import copy
import functools
import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

from eto_assets.data.schemas import Trajectory
from eto_assets.envs.base import (
    INVALID_FORMAT_OBSERVATION,
    SPLITS,
    BenchmarkNotAvailable,
    PromptSpec,
    StepResult,
    TaskInstance,
    replay_actions,
)

MAX_STEPS = 40
# ALFRED task families -> the short names ETO reports.
TASK_TYPES: dict[str, str] = {
    "pick_and_place_simple": "put",
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
    "look_at_obj_in_light": "examine",
    "pick_two_obj_and_place": "puttwo",
}
SHORT_TYPES = tuple(TASK_TYPES.values())
SPLIT_DIRS = {"train": "train", "seen": "valid_seen", "unseen": "valid_unseen"}
GAME_FILE = "game.tw-pddl"
ENGINE_PIN = "textworld[pddl]==1.6.2"

INSTRUCTION = """You are an agent in a simulated household, shown as text. You get a household task \
and complete it by acting in the home, one action per turn. After each action you receive an \
observation describing what happened.

Actions you can use (OBJ and RECEP are names exactly as they appear in observations, such as \
"mug 2" or "cabinet 4"):
- go to RECEP: walk to a receptacle (a table, cabinet, drawer, fridge, ...) and see what is in or on it
- open RECEP / close RECEP: open or close a receptacle such as a cabinet, drawer, fridge or microwave
- take OBJ from RECEP: pick up an object that you see; you can hold only one object at a time
- put OBJ in/on RECEP: place the object you hold in or on the receptacle you are at
- heat OBJ with RECEP: heat the object you hold with a microwave you are at
- cool OBJ with RECEP: cool the object you hold with a fridge you are at
- clean OBJ with RECEP: clean the object you hold with a sink or bathtub basin you are at
- use OBJ: turn a lamp on or off; you must be where the lamp is
- examine OBJ / examine RECEP / look / inventory
An action that cannot be done at that moment gives "Nothing happens." You have a limited number \
of actions, so search likely places first.

Answer every turn with an optional one-line thought followed by exactly one action:
Thought: <short reasoning>
Action: <one action>
"""

_BANNER = re.compile(r"^\s*-=.*?=-\s*", re.DOTALL)
_ARRIVE = re.compile(r"^You arrive at loc \d+\.\s*")


# -- data ----------------------------------------------------------------------------------------
def _has_games(folder: Path) -> bool:
    return (folder / "json_2.1.1").is_dir()


def resolve_data_dir(data_dir: Path | str | None = None, alfworld_data: Path | str | None = None) -> Path:
    """The ALFWorld folder (holding ``json_2.1.1/``): ``data_dir`` (itself or its ``alfworld/``;
    ETO_DATA_DIR), else ``alfworld_data`` (ALFWorld's own ALFWORLD_DATA), else ``~/.cache/alfworld``."""
    if data_dir is not None:
        candidates = [Path(data_dir).expanduser() / "alfworld", Path(data_dir).expanduser()]
    else:
        candidates = [Path(alfworld_data).expanduser()] if alfworld_data else []
        candidates.append(Path("~/.cache/alfworld").expanduser())
    for folder in candidates:
        if _has_games(folder):
            return folder
    tried = ", ".join(str(c / "json_2.1.1") for c in candidates)
    raise BenchmarkNotAvailable(
        f"ALFWorld game files not found (looked for {tried}). Run the ALFWorld download step "
        "(`alfworld-download` from alfworld<=0.3.5, which fetches the json_2.1.1 game files into "
        "$ALFWORLD_DATA or ~/.cache/alfworld), or point ETO_DATA_DIR at a folder holding alfworld/json_2.1.1."
    )


def _game_is_playable(game_file: Path) -> bool:
    """ALFWorld's own loader rule: traj_data.json beside the game, and the game marked solvable."""
    if not (game_file.parent / "traj_data.json").exists():
        return False
    try:
        return bool(json.loads(game_file.read_text()).get("solvable", True))
    except (OSError, json.JSONDecodeError):
        return False


def list_games(root: Path, split: str) -> list[tuple[str, Path]]:
    """(short task type, game file) of ``split``, sorted by path; sliced and movable-receptacle
    games (not among ETO's six types) are left out."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {SPLITS}")
    folder = root / "json_2.1.1" / SPLIT_DIRS[split]
    out = []
    for game_file in sorted(folder.glob(f"*/*/{GAME_FILE}")):
        family = game_file.parent.parent.name.split("-", 1)[0]
        if family not in TASK_TYPES or "Sliced" in game_file.parent.parent.name:
            continue
        if _game_is_playable(game_file):
            out.append((TASK_TYPES[family], game_file))
    return out


def read_goal_params(task: TaskInstance) -> dict[str, Any]:
    """The ALFRED goal parameters (object_target, parent_target, toggle_target, ...) of a task."""
    traj_data = Path(task.payload["game_file"]).parent / "traj_data.json"
    return dict(json.loads(traj_data.read_text())["pddl_params"])


# -- engine --------------------------------------------------------------------------------------
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


# -- benchmark -----------------------------------------------------------------------------------
class AlfWorldBenchmark:
    name = "alfworld"
    pure_python = True  # rollouts host its environments in worker processes

    def __init__(
        self,
        data_dir: Path | None = None,
        task_types: list[str] | None = None,
        max_steps_cap: int | None = None,
        limit_per_type: int | None = None,
        *,
        alfworld_data: Path | None = None,
    ) -> None:
        types = [TASK_TYPES.get(t, t) for t in task_types] if task_types else list(SHORT_TYPES)
        unknown = sorted(set(types) - set(SHORT_TYPES))
        if unknown:
            raise ValueError(f"unknown ALFWorld task types {unknown}; known: {list(SHORT_TYPES)}")
        self.task_types = types
        self.root = resolve_data_dir(data_dir, alfworld_data)
        self.max_steps = min(MAX_STEPS, max_steps_cap) if max_steps_cap else MAX_STEPS
        self.limit_per_type = limit_per_type
        self._tasks: dict[str, list[TaskInstance]] = {}

    @property
    def key(self) -> str:
        """Identifies the configuration: environments are pooled per key."""
        return f"alfworld:{self.root}:{','.join(self.task_types)}:{self.max_steps}:{self.limit_per_type}"

    def tasks(self, split: str) -> list[TaskInstance]:
        if split not in self._tasks:
            per_type: dict[str, int] = collections.Counter()
            out = []
            for task_type, game_file in list_games(self.root, split):
                if task_type not in self.task_types:
                    continue
                if self.limit_per_type is not None and per_type[task_type] >= self.limit_per_type:
                    continue
                per_type[task_type] += 1
                trial = game_file.parent
                out.append(
                    TaskInstance(
                        task_id=f"{split}/{trial.parent.name}/{trial.name}",
                        task_type=task_type,
                        split=split,
                        max_steps=self.max_steps,
                        payload={"game_file": str(game_file)},
                    )
                )
            self._tasks[split] = out
        return list(self._tasks[split])

    def make_env(self) -> AlfWorldEnv:
        return AlfWorldEnv()

    def prompt_spec(self) -> PromptSpec:
        return PromptSpec(instruction=INSTRUCTION, with_thoughts=True)

    def expert_trajectory(self, env: AlfWorldEnv, task: TaskInstance) -> Trajectory | None:
        """Let the expert play the game live, then replay its actions through a fresh episode."""
        from eto_assets.envs.alfworld_expert import play_expert

        steps = play_expert(env, task)
        if steps is None:
            return None
        trajectory = replay_actions(env, task, steps)
        return trajectory if trajectory.success else None
