"""WebShop as an ETO benchmark: catalogs, goal-index splits, the prompt, and the expert.

Catalogs: ``"generated"`` (default; written by :mod:`.generator` into ``catalog_dir``, else
``data_dir``, else ``$ETO_HOME/webshop_catalog``), ``"upstream"`` (WebShop's full catalog) and
``"upstream_1000"`` (its 1,000-product subset), both read from ``data_dir`` (default
``$ETO_DATA_DIR``; an ``ETO_DATA_DIR``-style root means its ``webshop/data/``; see :mod:`.catalog`
for the download). WebShop has train and test goals only: "unseen" holds the test goals and
"seen" a dev slice held out of train to choose the best iteration on (``dev_slice``; without
it, as in ETO, every train goal is trained on and "seen" is empty). On the full catalog the
splits are ETO's goal indices (``eto_splits/`` next to the data or under
``$ETO_DATA_DIR/webshop``); without them, WebShop's own convention (goals 0-499 test, 1500 on
train). Only the full catalog with ETO's splits and spaCy's tagger gives numbers
comparable with the paper; :attr:`WebShopBenchmark.comparable_with_paper` says so.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

from eto_assets.data.schemas import Trajectory
from eto_assets.envs.base import BenchmarkNotAvailable, PromptSpec, TaskInstance, replay_actions
from eto_assets.envs.webshop.catalog import load_catalog
from eto_assets.envs.webshop.env import WebShopEnv, WebShopWorld
from eto_assets.envs.webshop.generator import generate_catalog
from eto_assets.envs.webshop.oracle import plan_actions
from eto_assets.envs.webshop.reward import spacy_nouns
from eto_assets.envs.webshop.search import SearchEngine

CATALOGS = {"generated": "full", "upstream": "full", "upstream_1000": "1000"}
MAX_STEPS = 10  # ETO's WebShop step limit
TASK_TYPE = "webshop"
GENERATED_TEST_GOALS = 50
WEBSHOP_TEST_GOALS, WEBSHOP_TRAIN_START = 500, 1500  # WebShop's own goal-index convention
SUBSAMPLE_SEED = 20240305

INSTRUCTION = """You are shopping on WebShop, an online store shown as text. An instruction describes \
the product to buy: its kind, attributes, options (such as color or size) and a price limit. Find a \
product that matches and buy it with the right options.

Each observation is the current page, its parts separated by [SEP]:
- the search page, with a search box;
- a results page: "Back to Search", "< Prev" / "Next >" to turn pages, then 10 products, each as its \
product id, title and price;
- a product page: "Back to Search", "< Prev" (back to the results), the option groups with their \
values, the title, price and rating, and the buttons "Description", "Features", "Reviews" and "Buy Now".

Actions:
- search[keywords]: search the store for the keywords you choose
- click[button]: click a button of the current page, written as it appears there: a product id, \
"Next >", "< Prev", "Back to Search", an option value (this selects it), "Description", "Features", \
"Reviews", or "Buy Now"
An action that is not available on the current page does nothing. Clicking "Buy Now" buys the product \
with the selected options and ends the task; you are scored on how well the product, its options and \
its price match the instruction. You have at most 10 actions.

Answer every turn with exactly one line of the form
Action: <one action>
"""


DEV_FRACTION = 0.1  # of the train goals, held out to choose the best iteration (WebShop has no dev split)


def split_goals(train: list[int], test: list[int], dev_slice: bool = True) -> dict[str, list[int]]:
    """Goal indices per split. WebShop has only train and test; with ``dev_slice`` a deterministic
    :data:`DEV_FRACTION` of train is held out as ``seen`` (what the best iteration is chosen on) so
    that test (``unseen``) is never used to choose; without it (ETO's protocol, profile setting
    ``selection: final``) train keeps every goal and ``seen`` is empty."""
    dev: set[int] = set()
    if dev_slice and len(train) > 1:
        rng = random.Random(f"{SUBSAMPLE_SEED}-dev")
        dev = set(rng.sample(train, max(1, round(len(train) * DEV_FRACTION))))
    return {"train": [i for i in train if i not in dev], "seen": sorted(dev), "unseen": list(test)}


class WebShopBenchmark:
    name = "webshop"
    pure_python = True  # rollouts host its environments in worker processes

    def __init__(
        self,
        data_dir: Path | None = None,
        catalog: str = "generated",
        num_train: int | None = None,
        num_test: int | None = None,
        max_steps_cap: int | None = None,
        *,
        catalog_dir: Path | None = None,
        dev_slice: bool = True,
    ) -> None:
        """``data_dir``: the folder holding the catalog files, or an ``ETO_DATA_DIR``-style root
        (with ``webshop/data/``); ``catalog_dir``: where the generated catalog goes (wins over data_dir);
        ``dev_slice``: hold a slice of the train goals out as ``seen`` (see :func:`split_goals`)."""
        if catalog not in CATALOGS:
            raise ValueError(f"unknown WebShop catalog {catalog!r}; known: {sorted(CATALOGS)}")
        self.catalog_name = catalog
        given = Path(data_dir).expanduser() if data_dir is not None else None
        if catalog == "generated":
            if catalog_dir is not None:
                self.data_dir = Path(catalog_dir).expanduser()
            elif given is not None and not (given / "webshop").is_dir():
                self.data_dir = given
            else:
                raise ValueError(
                    "WebShop generated catalog: pass catalog_dir (the pipeline uses ETO_HOME/webshop/catalog)"
                )
        else:
            base = given
            if base is None:
                raise BenchmarkNotAvailable("WebShop upstream catalog: pass data_dir or set ETO_DATA_DIR")
            nested = base / "webshop" / "data"
            self.data_dir = nested if nested.is_dir() else base
        self.num_train, self.num_test = num_train, num_test
        self.dev_slice = dev_slice
        self.max_steps = min(MAX_STEPS, max_steps_cap) if max_steps_cap else MAX_STEPS
        self._max_steps_cap = max_steps_cap

    @property
    def key(self) -> str:
        """Identifies the configuration: environments are pooled per key."""
        return (
            f"webshop:{self.catalog_name}:{self.data_dir}:{self.num_train}:{self.num_test}:{self.max_steps}"
            + ("" if self.dev_slice else ":no-dev-slice")
        )

    def __reduce__(self):
        """Pickle as constructor arguments (worker processes rebuild the world; its search index
        does not pickle)."""
        args = (self.data_dir, self.catalog_name, self.num_train, self.num_test, self._max_steps_cap)
        return (functools.partial(WebShopBenchmark, dev_slice=self.dev_slice), args)

    # -- data -----------------------------------------------------------------------------------
    @functools.cached_property
    def world(self) -> WebShopWorld:
        """Catalog, goals and search index, built once per benchmark and shared by its environments."""
        if self.catalog_name == "generated":
            generate_catalog(self.data_dir)
        try:
            catalog = load_catalog(self.data_dir, CATALOGS[self.catalog_name])
        except FileNotFoundError as exc:
            raise BenchmarkNotAvailable(str(exc)) from exc
        nouns = None if catalog.generated else spacy_nouns()
        world = WebShopWorld(catalog=catalog, engine=SearchEngine(catalog.products))
        if nouns is not None:
            world.nouns, world.nouns_backend = nouns, "spacy"
        return world

    def _eto_splits(self) -> dict[str, list[int]] | None:
        for folder in [self.data_dir / "eto_splits", self.data_dir.parent / "eto_splits"]:
            train, test = folder / "train_indices.json", folder / "test_indices.json"
            if train.exists() and test.exists():
                return {
                    "train": list(dict.fromkeys(json.loads(train.read_text()))),
                    "test": list(dict.fromkeys(json.loads(test.read_text()))),
                }
        return None

    @functools.cached_property
    def _splits(self) -> tuple[str, dict[str, list[int]]]:
        num_goals = len(self.world.catalog.goals)
        if self.world.catalog.generated:
            test = min(GENERATED_TEST_GOALS, num_goals // 5)
            return "generated", split_goals(list(range(test, num_goals)), list(range(test)), self.dev_slice)
        splits = self._eto_splits() if self.catalog_name == "upstream" else None
        if splits and all(i < num_goals for ids in splits.values() for i in ids):
            return "eto", split_goals(splits["train"], splits["test"], self.dev_slice)
        if num_goals > WEBSHOP_TRAIN_START:
            train, test = list(range(WEBSHOP_TRAIN_START, num_goals)), list(range(WEBSHOP_TEST_GOALS))
        else:
            cut = max(1, num_goals // 5)
            train, test = list(range(cut, num_goals)), list(range(cut))
        return "webshop", split_goals(train, test, self.dev_slice)

    @property
    def split_indices(self) -> dict[str, list[int]]:
        """Goal indices per split, before subsampling."""
        return self._splits[1]

    @property
    def splits_source(self) -> str:
        """ "generated", "eto" (ETO's index files) or "webshop" (WebShop's own convention)."""
        return self._splits[0]

    @property
    def comparable_with_paper(self) -> bool:
        """True only for WebShop's full catalog with ETO's splits and spaCy's noun tagger."""
        if self.catalog_name != "upstream":
            return False
        world = self.world
        return (
            world.catalog.source == "upstream-full"
            and self.splits_source == "eto"
            and world.nouns_backend == "spacy"
        )

    # -- protocol -------------------------------------------------------------------------------
    def tasks(self, split: str) -> list[TaskInstance]:
        if split not in ("train", "seen", "unseen"):
            raise ValueError(f"unknown split {split!r}")
        indices = self.split_indices[split]
        limit = self.num_train if split == "train" else self.num_test
        if limit is not None and limit < len(indices):
            indices = sorted(random.Random(f"{SUBSAMPLE_SEED}-{split}").sample(indices, limit))
        goals = self.world.catalog.goals
        return [
            TaskInstance(
                task_id=f"{split}/{i}",
                task_type=TASK_TYPE,
                split=split,
                max_steps=self.max_steps,
                payload={"goal_index": i, "category": goals[i].category},
            )
            for i in indices
        ]

    def make_env(self) -> WebShopEnv:
        return WebShopEnv(self.world)

    def prompt_spec(self) -> PromptSpec:
        return PromptSpec(instruction=INSTRUCTION, with_thoughts=False)

    def expert_trajectory(self, env: WebShopEnv, task: TaskInstance) -> Trajectory | None:
        goal = self.world.catalog.goals[int(task.payload["goal_index"])]
        actions = plan_actions(env.world, goal, task.max_steps)
        if actions is None:
            return None
        trajectory = replay_actions(env, task, [(None, a) for a in actions])
        trajectory.metadata.update(
            catalog=self.world.catalog.source, comparable_with_paper=self.comparable_with_paper
        )
        return trajectory if trajectory.success else None
