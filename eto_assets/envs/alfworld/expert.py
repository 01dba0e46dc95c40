"""The ALFWorld expert: it searches the home the way an agent could, acting through the real engine.

It decides only from what an agent sees -- the receptacles listed in the first observation, every
observation since, and whether the engine accepts a command -- plus a prior of where each object
class tends to be, per receptacle type (the share of receptacles of that type holding the class in
the initial states of the 240 train games, smoothed; the table below). It visits receptacles in
order of P(object there) / cost (a closed receptacle costs a second step to open), remembers every
object it has seen, then picks up, cleans / heats / cools, lights (examine) and places as the goal
asks. Templated one-line thoughts mark the plan and each sub-goal, as in ReAct-style trajectories.
The goal itself is read from the game's ``traj_data.json`` (ALFRED's task parameters).

It drives an :class:`~.engine.AlfWorldEnv` and imports nothing else of the package; :mod:`.benchmark`
calls it, so the package's imports run one way (engine <- expert <- benchmark).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eto_assets.envs.alfworld.engine import AlfWorldEnv
from eto_assets.envs.base import TaskInstance

# object class -> "receptacle type:percent ..." (descending): how often a receptacle of that type holds
# at least one object of the class, in the train games' initial states.
_PRIOR_TEXT: dict[str, str] = {
    "alarmclock": "dresser:49 diningtable:44 desk:43 sidetable:38 shelf:15",
    "apple": "fridge:44 diningtable:32 sidetable:29 microwave:21 countertop:20 garbagecan:20 sinkbasin:17",
    "book": (
        "bed:58 coffeetable:52 sofa:42 desk:38 countertop:32 dresser:16 armchair:13 sidetable:12 "
        "diningtable:9 cabinet:4 drawer:2 shelf:1"
    ),
    "bowl": (
        "desk:72 fridge:36 tvstand:35 diningtable:33 dresser:32 countertop:13 sidetable:7 "
        "microwave:6 cabinet:6 sinkbasin:6 shelf:5"
    ),
    "box": (
        "diningtable:32 coffeetable:31 ottoman:28 sofa:24 desk:13 cabinet:7 dresser:7 armchair:5 "
        "shelf:4 sidetable:3"
    ),
    "bread": "diningtable:51 countertop:31 fridge:18 sidetable:10 garbagecan:1",
    "butterknife": "diningtable:50 countertop:37 sidetable:18 sinkbasin:5 drawer:2",
    "candle": (
        "countertop:63 coffeetable:57 sidetable:57 cart:42 toilet:40 tvstand:32 dresser:25 "
        "shelf:17 drawer:13 cabinet:12"
    ),
    "cd": (
        "diningtable:65 dresser:56 desk:32 sidetable:25 safe:16 armchair:14 garbagecan:13 drawer:9 shelf:5"
    ),
    "cellphone": (
        "dresser:42 desk:39 countertop:38 diningtable:35 safe:30 bed:30 coffeetable:25 "
        "sidetable:20 sofa:11 armchair:10 shelf:8 drawer:7 cabinet:2"
    ),
    "cloth": (
        "bathtubbasin:51 cart:40 countertop:38 dresser:24 cabinet:16 toilet:10 drawer:8 sinkbasin:4 shelf:4"
    ),
    "creditcard": (
        "diningtable:49 tvstand:44 desk:43 dresser:43 sofa:31 countertop:26 sidetable:21 "
        "coffeetable:19 shelf:12 armchair:10 drawer:9"
    ),
    "cup": (
        "fridge:33 diningtable:27 sidetable:24 sinkbasin:18 countertop:13 microwave:10 shelf:5 cabinet:4"
    ),
    "desklamp": "dresser:46 desk:44 sidetable:41 coffeetable:13 shelf:2",
    "dishsponge": (
        "cart:37 countertop:19 diningtable:19 garbagecan:15 sinkbasin:14 drawer:7 "
        "sidetable:5 shelf:4 cabinet:4"
    ),
    "egg": "fridge:45 diningtable:25 sinkbasin:25 microwave:22 garbagecan:20 sidetable:20 countertop:17",
    "fork": "diningtable:44 countertop:32 sidetable:24 sinkbasin:17 drawer:8",
    "glassbottle": "diningtable:30 fridge:24 garbagecan:17 countertop:15 shelf:6 sinkbasin:4 cabinet:3",
    "handtowel": "handtowelholder:69 countertop:7",
    "houseplant": (
        "diningtable:34 desk:29 countertop:28 dresser:23 tvstand:17 sidetable:16 "
        "coffeetable:9 shelf:3 cabinet:0"
    ),
    "kettle": "stoveburner:19 countertop:13 diningtable:10 cabinet:4 sinkbasin:3 shelf:1",
    "keychain": (
        "safe:59 tvstand:35 dresser:35 diningtable:33 desk:32 coffeetable:31 ottoman:31 "
        "sidetable:22 sofa:17 armchair:13 drawer:9 shelf:6 cabinet:4"
    ),
    "knife": "diningtable:39 countertop:35 sidetable:15 sinkbasin:9 drawer:7",
    "ladle": "diningtable:57 countertop:24 drawer:6 sinkbasin:4 cabinet:4",
    "laptop": (
        "bed:74 diningtable:43 desk:41 tvstand:35 ottoman:29 coffeetable:28 sofa:17 dresser:15 "
        "armchair:6 sidetable:4"
    ),
    "lettuce": "diningtable:46 fridge:33 countertop:28 sidetable:19 sinkbasin:10 garbagecan:2",
    "mug": (
        "desk:55 coffeemachine:35 dresser:31 sidetable:30 diningtable:26 countertop:24 fridge:20 "
        "microwave:16 sinkbasin:14 shelf:7 cabinet:3"
    ),
    "newspaper": "diningtable:47 sofa:34 coffeetable:25 dresser:22 sidetable:13 shelf:13 drawer:2",
    "pan": "countertop:25 stoveburner:23 diningtable:7 fridge:5 cabinet:1 toaster:1",
    "papertowelroll": "diningtable:45 countertop:21 shelf:14 garbagecan:8",
    "pen": (
        "diningtable:80 desk:55 dresser:55 coffeetable:53 countertop:29 sidetable:20 shelf:8 "
        "garbagecan:6 drawer:5"
    ),
    "pencil": (
        "dresser:42 desk:36 sidetable:33 diningtable:32 coffeetable:20 shelf:10 countertop:8 "
        "garbagecan:8 drawer:7"
    ),
    "peppershaker": "sidetable:39 diningtable:35 countertop:24 shelf:12 drawer:5 cabinet:5",
    "pillow": "bed:88 sofa:60 ottoman:29 armchair:20",
    "plate": (
        "diningtable:32 coffeetable:26 countertop:19 fridge:18 sidetable:12 shelf:6 cabinet:5 sinkbasin:2"
    ),
    "pot": "stoveburner:33 countertop:9 fridge:9 diningtable:9 shelf:1 sinkbasin:1 cabinet:0",
    "potato": "fridge:40 countertop:25 diningtable:21 microwave:16 sidetable:15 sinkbasin:14 garbagecan:12",
    "remotecontrol": (
        "tvstand:43 coffeetable:40 dresser:40 diningtable:26 sofa:20 desk:17 sidetable:17 "
        "drawer:3 armchair:2 shelf:1"
    ),
    "saltshaker": "diningtable:36 sidetable:24 countertop:22 shelf:5 cabinet:5 drawer:5",
    "soapbar": (
        "sidetable:56 countertop:38 toilet:22 bathtubbasin:19 sinkbasin:16 drawer:14 "
        "garbagecan:13 cabinet:12 shelf:10"
    ),
    "soapbottle": (
        "diningtable:39 toilet:37 sidetable:31 countertop:26 garbagecan:19 shelf:15 cabinet:5 drawer:1"
    ),
    "spatula": "diningtable:51 countertop:31 sinkbasin:16 sidetable:15 drawer:9",
    "spoon": "diningtable:34 countertop:30 sidetable:29 sinkbasin:19 drawer:9",
    "spraybottle": (
        "sidetable:54 diningtable:52 toilet:46 cart:39 countertop:34 shelf:24 dresser:24 "
        "garbagecan:21 cabinet:5"
    ),
    "statue": (
        "coffeetable:57 diningtable:34 dresser:33 desk:30 tvstand:26 countertop:22 shelf:20 sidetable:14"
    ),
    "teddybear": "bed:60",
    "television": "dresser:78 tvstand:51 sidetable:2",
    "tissuebox": (
        "coffeetable:66 tvstand:56 desk:39 countertop:31 shelf:26 sidetable:20 diningtable:18 "
        "toilet:18 drawer:5 garbagecan:5"
    ),
    "toiletpaper": (
        "toilet:46 dresser:45 countertop:38 sidetable:32 toiletpaperhanger:28 garbagecan:19 "
        "drawer:10 shelf:10 cabinet:6 bathtubbasin:6"
    ),
    "tomato": "fridge:46 diningtable:38 garbagecan:23 countertop:22 sidetable:20 sinkbasin:13",
    "towel": "towelholder:90 countertop:4",
    "vase": (
        "coffeetable:51 diningtable:34 dresser:31 countertop:28 shelf:23 tvstand:22 sidetable:11 cabinet:6"
    ),
    "watch": "dresser:55 coffeetable:51 desk:24 diningtable:20 tvstand:20 sidetable:10 shelf:7 drawer:6",
    "wateringcan": "coffeetable:14",
    "winebottle": "diningtable:56 countertop:32 garbagecan:15 fridge:6 shelf:6 cabinet:4",
}
# The same share over all object classes: the search order for a class missing above.
_GENERIC_TEXT = (
    "diningtable:26.9 desk:25 dresser:22.5 tvstand:22.3 coffeetable:20.5 countertop:20.1 cart:20 bed:14 "
    "toilet:13.7 fridge:12.3 sidetable:12 sofa:11.6 ottoman:9.3 sinkbasin:6.2 towelholder:6.1 "
    "bathtubbasin:5.5 handtowelholder:4.6 shelf:4.3 armchair:3.6 garbagecan:3.4 microwave:3.2 safe:2.9 "
    "stoveburner:2.3 drawer:2.1 toiletpaperhanger:1.9 cabinet:1.6 coffeemachine:1.2 toaster:0.1 "
    "laundryhamper:0.1"
)


def _parse_rates(text: str) -> dict[str, float]:
    return {rtype: float(share) / 100 for rtype, share in (item.split(":") for item in text.split())}


PRIOR: dict[str, dict[str, float]] = {cls: _parse_rates(text) for cls, text in _PRIOR_TEXT.items()}
GENERIC: dict[str, float] = _parse_rates(_GENERIC_TEXT)
# Receptacle types that are usually closed: looking inside costs "go to" + "open".
OPENABLE_TYPES = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})
# Receptacle types one is "in" rather than "on" (only for the wording of thoughts).
INSIDE_TYPES = OPENABLE_TYPES | {"sinkbasin", "bathtubbasin", "garbagecan", "laundryhamper"}
APPLIANCES = {"clean": ("sinkbasin", "bathtubbasin"), "heat": ("microwave",), "cool": ("fridge",)}
STATE_WORD = {"clean": "clean", "heat": "hot", "cool": "cool"}

_NAME = re.compile(r"\b(?:a|an) ([a-z]+ \d+)")


def class_of(name: str) -> str:
    """``"cabinet 3"`` -> ``"cabinet"``."""
    return name.rsplit(" ", 1)[0]


def _number(name: str) -> int:
    tail = name.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def visible_names(observation: str) -> list[str]:
    """Entity names listed after the last "you see" of an observation ("a mug 1, and an apple 2")."""
    lowered = observation.lower()
    at = lowered.rfind("you see ")
    if at < 0:
        return []
    return _NAME.findall(lowered[at:].split("\n", 1)[0])


def _where(receptacle: str) -> str:
    return f"{'in' if class_of(receptacle) in INSIDE_TYPES else 'on'} the {receptacle}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" or {items[-1]}"


def read_goal_params(task: TaskInstance) -> dict[str, Any]:
    """The ALFRED goal parameters (object_target, parent_target, toggle_target, ...) of a task."""
    traj_data = Path(task.payload["game_file"]).parent / "traj_data.json"
    return dict(json.loads(traj_data.read_text())["pddl_params"])


@dataclass(frozen=True)
class Goal:
    """What the game asks, in ALFWorld's lower-case class names."""

    kind: str  # short task type: put, clean, heat, cool, examine, puttwo
    obj: str
    recep: str  # where the object goes ("" for examine)
    lamp: str  # the light to use (examine only)

    @classmethod
    def from_params(cls, kind: str, params: dict) -> Goal:
        return cls(
            kind=kind,
            obj=str(params.get("object_target", "")).lower(),
            recep=str(params.get("parent_target", "")).lower(),
            lamp=str(params.get("toggle_target", "")).lower(),
        )


class _Stuck(Exception):
    """The expert cannot go on: no admissible way forward, or no steps left."""


class _Won(Exception):
    """The engine reports the goal reached."""


class _Expert:
    def __init__(self, env: AlfWorldEnv, goal: Goal, intro: str, budget: int) -> None:
        self.env, self.goal, self.budget = env, goal, budget
        room = next((part for part in intro.split("\n\n") if "you see" in part.lower()), intro)
        self.receptacles = visible_names(room)
        self.contents: dict[str, list[str]] = {}  # receptacle -> objects seen in/on it
        self.steps: list[tuple[str | None, str]] = []
        self.thought: str | None = None
        self.at: str | None = None

    # -- acting ----------------------------------------------------------------------------------
    def act(self, command: str) -> str:
        if len(self.steps) >= self.budget:
            raise _Stuck("out of steps")
        if command not in self.env.admissible_commands:
            raise _Stuck(f"not admissible: {command!r}")
        result = self.env.step(command)
        self.steps.append((self.thought, command))
        self.thought = None
        if result.success:
            raise _Won
        return result.observation

    def act_any(self, *commands: str) -> str:
        """The first of equivalent phrasings the game accepts (json_2.1.1 vs newer grammars)."""
        admissible = set(self.env.admissible_commands)
        for command in commands:
            if command in admissible:
                return self.act(command)
        raise _Stuck(f"none admissible: {commands!r}")

    def visit(self, receptacle: str, look_inside: bool = True) -> None:
        """Walk to a receptacle (opening it if closed and ``look_inside``); record what is there."""
        if self.at != receptacle:
            admissible = set(self.env.admissible_commands)
            if f"go to {receptacle}" in admissible:
                observation = self.act(f"go to {receptacle}")
            elif f"examine {receptacle}" in admissible:  # it stands where we already are
                observation = self.act(f"examine {receptacle}")
            else:
                raise _Stuck(f"cannot reach {receptacle}")
            self.at = receptacle
            if "you see" in observation.lower():
                self.contents[receptacle] = visible_names(observation)
        if look_inside and f"open {receptacle}" in self.env.admissible_commands:
            observation = self.act(f"open {receptacle}")
            self.contents[receptacle] = visible_names(observation)

    # -- searching -------------------------------------------------------------------------------
    def score(self, receptacle: str, cls: str) -> float:
        rtype = class_of(receptacle)
        rates = PRIOR.get(cls)
        rate = rates.get(rtype, 0.0) if rates else 0.0
        rate = rate or 0.01 * GENERIC.get(rtype, 0.001)  # unseen pairs: after every seen one
        return rate / (2.0 if rtype in OPENABLE_TYPES else 1.0)

    def search_order(self, cls: str) -> list[str]:
        unseen = [r for r in self.receptacles if r not in self.contents]
        return sorted(unseen, key=lambda r: (-self.score(r, cls), class_of(r), _number(r)))

    def seen(self, cls: str, exclude: frozenset[str]) -> list[tuple[str, str]]:
        """(object, receptacle) of ``cls`` seen so far, those where we stand first. For "puttwo", an
        object already in a receptacle of the goal's type stays there (the pair is built around it)."""
        keep_type = self.goal.recep if self.goal.kind == "puttwo" else None
        return sorted(
            (
                (name, r)
                for r, names in self.contents.items()
                for name in names
                if class_of(name) == cls and name not in exclude and class_of(r) != keep_type
            ),
            key=lambda item: (item[1] != self.at, _number(item[0])),
        )

    def find(self, cls: str, exclude: frozenset[str] = frozenset(), why: str = "") -> tuple[str, str]:
        """Go to an object of ``cls`` (remembered, else searched for); return (object, receptacle)."""
        found = self.seen(cls, exclude)
        if found:
            name, receptacle = found[0]
            if self.at != receptacle:
                self.thought = f"{why}I saw {name} {_where(receptacle)} before, so I go back there."
            self.visit(receptacle)
            return name, receptacle
        order = self.search_order(cls)
        if not order:
            raise _Stuck(f"no {cls} anywhere")
        types = list(dict.fromkeys(class_of(r) for r in order))
        likely = [t for t in types if PRIOR.get(cls, GENERIC).get(t)][:3] or types[:3]
        likely = [f"{_article(t)} {t}" for t in likely]
        self.thought = (
            f"{why}{_article(cls).capitalize()} {cls} is most likely in or on {_listing(likely)}. "
            f"I check them one by one, starting with {order[0]}."
        )
        for receptacle in order:
            self.visit(receptacle)
            found = self.seen(cls, exclude)
            if found and found[0][1] == receptacle:
                return found[0]
        raise _Stuck(f"no {cls} found")

    # -- sub-goals -------------------------------------------------------------------------------
    def take(self, name: str, receptacle: str) -> None:
        self.thought = f"I found {name}. I take it."
        self.act(f"take {name} from {receptacle}")
        self.contents[receptacle] = [n for n in self.contents.get(receptacle, []) if n != name]

    def put(self, name: str, receptacle: str, adjective: str = "") -> None:
        described = f"{adjective} {name}".strip()
        if self.at != receptacle:
            self.thought = f"Now I put the {described} {_where(receptacle)}."
        self.visit(receptacle)
        self.act_any(f"put {name} in/on {receptacle}", f"move {name} to {receptacle}")
        self.contents.setdefault(receptacle, []).append(name)

    def transform(self, name: str) -> None:
        kind = self.goal.kind
        appliance = next(
            (r for t in APPLIANCES[kind] for r in sorted(self.receptacles, key=_number) if class_of(r) == t),
            None,
        )
        if appliance is None:
            raise _Stuck(f"no appliance to {kind} with")
        if self.at != appliance:
            self.thought = f"Next I {kind} the {name} with the {appliance}."
        self.visit(appliance, look_inside=False)
        self.act(f"{kind} {name} with {appliance}")

    def destination(self) -> str:
        """A receptacle of the goal's type: one already holding a goal object (puttwo), else one seen
        already, else the lowest-numbered."""
        options = [r for r in self.receptacles if class_of(r) == self.goal.recep]
        if not options:
            raise _Stuck(f"no {self.goal.recep} in the room")

        def rank(r: str) -> tuple[bool, bool, int]:
            holds_one = any(class_of(n) == self.goal.obj for n in self.contents.get(r, []))
            return (not holds_one, r not in self.contents, _number(r))

        return min(options, key=rank)

    # -- tasks -----------------------------------------------------------------------------------
    def plan_text(self) -> str:
        g = self.goal
        start = "To do the task, I need to"
        obj, recep = f"{_article(g.obj)} {g.obj}", f"{_article(g.recep)} {g.recep}"
        if g.kind == "examine":
            return f"{start} find and take {obj}, then turn on {_article(g.lamp)} {g.lamp}. "
        if g.kind == "puttwo":
            return f"{start} put two {g.obj}s in/on {recep}, one at a time. "
        if g.kind in APPLIANCES:
            tool = f"{_article(APPLIANCES[g.kind][0])} {APPLIANCES[g.kind][0]}"
            return f"{start} find {obj}, {g.kind} it with {tool}, then put it in/on {recep}. "
        return f"{start} find and take {obj}, then put it in/on {recep}. "

    def run(self) -> None:
        g = self.goal
        name, receptacle = self.find(g.obj, why=self.plan_text())
        self.take(name, receptacle)
        if g.kind in APPLIANCES:
            self.transform(name)
        if g.kind == "examine":
            lamp, place = self.find(g.lamp, why=f"Now I need a {g.lamp} to look at the {name} under it. ")
            self.thought = f"I found {lamp}. I turn it on."
            self.act(f"use {lamp}")
            return
        target = self.destination()
        self.put(name, target, STATE_WORD.get(g.kind, ""))
        if g.kind == "puttwo":
            placed = frozenset(self.contents.get(target, []))
            why = f"One {g.obj} is {_where(target)}. Now I find another. "
            second, where = self.find(g.obj, placed, why=why)
            self.take(second, where)
            self.put(second, target)


def play_expert(env: AlfWorldEnv, task: TaskInstance) -> list[tuple[str | None, str]] | None:
    """Play ``task`` live through ``env``; the (thought, action) steps when the game was won, else None."""
    goal = Goal.from_params(task.task_type, read_goal_params(task))
    intro = env.reset(task)
    expert = _Expert(env, goal, intro, task.max_steps)
    try:
        expert.run()
    except _Won:
        return expert.steps
    except _Stuck:
        return None
    return expert.steps if env.won else None
