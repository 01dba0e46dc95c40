"""One WebShop session at a time, following the site's navigation rules in text mode.

The rules are WebShop's: ``search[...]`` works from any page and shows results page 1 (WebShop's
text env does not require the search bar); a click must name a button of the current page
(case-insensitive; the search page's own "Search" button is not clickable); anything else leaves the
page as it is and the step still counts. "< Prev" goes from a results page to the previous one, from
an item page back to its results page (dropping the selected options), from a sub page back to the
item. The reward is WebShop's purchase reward, given only when "Buy Now" ends the episode; reaching
the step limit first ends it with reward 0 (ETO's rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import eto_assets.envs.webshop.pages as pages
from eto_assets.envs.base import (
    INVALID_FORMAT_OBSERVATION,
    OBSERVATION_PREFIX,
    PAGE_OBSERVATION_PREFIX,
    StepResult,
    TaskInstance,
)
from eto_assets.envs.webshop.catalog import Catalog, Goal
from eto_assets.envs.webshop.reward import NounFn, RewardBreakdown, heuristic_nouns, purchase_reward
from eto_assets.envs.webshop.search import SearchEngine

SUCCESS_EPS = 1e-9


@dataclass
class WebShopWorld:
    """What every environment of one benchmark shares: the catalog, its search index, the noun finder."""

    catalog: Catalog
    engine: SearchEngine
    nouns: NounFn = heuristic_nouns
    nouns_backend: str = "heuristic"


@dataclass
class _Session:
    goal: Goal
    max_steps: int
    page: pages.Page
    steps: int = 0
    keywords: str = ""
    results: list[str] = field(default_factory=list)
    page_num: int = 1
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    done: bool = False
    reward: float = 0.0
    breakdown: RewardBreakdown | None = None


class WebShopEnv:
    """Plays one task at a time; cheap to create (the world is shared)."""

    def __init__(self, world: WebShopWorld) -> None:
        self.world = world
        self._s: _Session | None = None

    # -- protocol -------------------------------------------------------------------------------
    def reset(self, task: TaskInstance) -> str:
        goal = self.world.catalog.goals[int(task.payload["goal_index"])]
        self._s = _Session(goal=goal, max_steps=task.max_steps, page=pages.search_page(goal.instruction_text))
        return self._s.page.text

    def step(self, action: str) -> StepResult:
        s = self._session()
        if s.done:
            raise RuntimeError("step() after the episode ended; call reset() first")
        s.steps += 1
        if not action or not action.strip():
            observation, prefix = INVALID_FORMAT_OBSERVATION, OBSERVATION_PREFIX
        else:
            self._apply(s, action.strip())
            observation, prefix = s.page.text, PAGE_OBSERVATION_PREFIX
        if not s.done and s.steps >= s.max_steps:
            s.done, s.reward = True, 0.0
        success = s.breakdown is not None and s.reward >= 1.0 - SUCCESS_EPS
        return StepResult(observation, s.reward, s.done, success, prefix)

    def close(self) -> None:
        self._s = None

    # -- introspection (tests, oracle, analysis) ------------------------------------------------
    @property
    def goal(self) -> Goal:
        return self._session().goal

    @property
    def page(self) -> pages.Page:
        return self._session().page

    @property
    def selected_options(self) -> dict[str, str]:
        return dict(self._session().options)

    @property
    def reward_breakdown(self) -> RewardBreakdown | None:
        return self._session().breakdown

    def available_actions(self) -> dict[str, object]:
        return self.page.available_actions()

    # -- navigation -----------------------------------------------------------------------------
    def _session(self) -> _Session:
        if self._s is None:
            raise RuntimeError("call reset() first")
        return self._s

    def _apply(self, s: _Session, action: str) -> None:
        parsed = pages.parse_action(action)
        if parsed is None:
            return
        name, arg = parsed
        if name == "search":
            s.keywords = " ".join(arg.lower().split(" "))
            s.results = self.world.engine.search(s.keywords)
            self._show_results(s, 1)
            return
        button = arg.lower()
        if button not in s.page.clickables or button == pages.SEARCH_BUTTON.lower():
            return
        kind = s.page.kind
        if button == pages.BUY_NOW.lower():
            self._buy(s)
        elif button == pages.BACK_TO_SEARCH.lower():
            s.keywords, s.results, s.asin, s.options = "", [], None, {}
            s.page = pages.search_page(s.goal.instruction_text)
        elif button == pages.NEXT_PAGE.lower() and kind == "results":
            self._show_results(s, s.page_num + 1)
        elif button == pages.PREV_PAGE.lower():
            if kind == "results":
                self._show_results(s, s.page_num - 1)
            elif kind == "item":
                self._show_results(s, s.page_num)
            elif kind == "sub":
                self._show_item(s)
        elif kind == "item" and button in (p.lower() for p in pages.SUB_PAGES):
            which = next(p for p in pages.SUB_PAGES if p.lower() == button)
            s.page = pages.sub_page(s.goal.instruction_text, self.world.catalog.by_asin[s.asin or ""], which)
        elif kind == "results":
            s.asin = next(a for a in s.results if a.lower() == button)  # WebShop upper-cases the id
            self._show_item(s)
        elif kind == "item":
            group = [g for value, g in s.page.option_groups if value == button][-1]
            s.options[group] = button
            self._show_item(s)

    def _show_results(self, s: _Session, page_num: int) -> None:
        s.page_num, s.asin, s.options = page_num, None, {}
        start = (page_num - 1) * pages.PRODUCTS_PER_PAGE
        shown = [self.world.catalog.by_asin[a] for a in s.results[start : start + pages.PRODUCTS_PER_PAGE]]
        s.page = pages.results_page(s.goal.instruction_text, shown, page_num, len(s.results))

    def _show_item(self, s: _Session) -> None:
        s.page = pages.item_page(s.goal.instruction_text, self.world.catalog.by_asin[s.asin or ""])

    def _buy(self, s: _Session) -> None:
        catalog = self.world.catalog
        product = catalog.by_asin[s.asin or ""]
        s.breakdown = purchase_reward(
            product, s.goal, catalog.prices[product.asin], s.options, self.world.nouns
        )
        s.reward = s.breakdown.total
        s.done = True
        s.page = pages.done_page(product.asin, s.reward)
