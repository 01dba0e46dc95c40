"""ALFWorld as an ETO benchmark: the game files of each split, the prompt, and expert trajectories.

Splits: "train" = the train game files present, "seen" = valid_seen, "unseen" = valid_unseen,
each sorted by path. Environments come from :mod:`.engine`, expert actions from :mod:`.expert`; this
module sits on top of both, and neither imports it.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

from eto_assets.data.schemas import Trajectory
from eto_assets.envs.alfworld.engine import MAX_STEPS, AlfWorldEnv
from eto_assets.envs.alfworld.expert import play_expert
from eto_assets.envs.base import SPLITS, BenchmarkNotAvailable, PromptSpec, TaskInstance, replay_actions

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


# -- game files ----------------------------------------------------------------------------------
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
        steps = play_expert(env, task)
        if steps is None:
            return None
        trajectory = replay_actions(env, task, steps)
        return trajectory if trajectory.success else None
