"""The expert: a shopper who knows the goal (its product and options) and plays it through the site.

It searches with the instruction (without the price clause), pages through the results to the goal
product, opens it, picks the option value that best matches each goal option, and buys. When the
instruction's results do not hold the product within the step budget it searches the product's
name instead. The plan is made with the same search engine the site uses and then played through
the environment, so every observation in the expert data is real.
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from eto_assets.envs.webshop.catalog import Goal, Product
from eto_assets.envs.webshop.env import WebShopWorld
from eto_assets.envs.webshop.pages import BUY_NOW, NEXT_PAGE, PRODUCTS_PER_PAGE
from eto_assets.envs.webshop.reward import FUZZY_THRESHOLD

_PRICE_CLAUSE = re.compile(r",?\s*and price lower than [\d.,]+ dollars\s*$")


def search_query(instruction_text: str) -> str:
    """The instruction without WebShop's trailing price clause."""
    return _PRICE_CLAUSE.sub("", instruction_text).strip()


def choose_options(product: Product, goal_options: list[str]) -> list[str]:
    """For each goal option, the product's closest option value (one per group, fuzzy ratio > 85)."""
    chosen: list[str] = []
    used_groups: set[str] = set()
    for wanted in goal_options:
        best: tuple[float, str, str] | None = None
        for group, values in product.options.items():
            if group in used_groups:
                continue
            for value in values:
                score = (
                    101.0
                    if value == wanted.lower()
                    else fuzz.token_set_ratio(wanted, value, processor=default_process)
                )
                if best is None or score > best[0]:
                    best = (score, group, value)
        if best is not None and best[0] > FUZZY_THRESHOLD:
            used_groups.add(best[1])
            chosen.append(best[2])
    return chosen


def plan_actions(world: WebShopWorld, goal: Goal, max_steps: int) -> list[str] | None:
    """The expert's actions for ``goal``, or None when the product cannot be reached in ``max_steps``."""
    product = world.catalog.by_asin.get(goal.asin)
    if product is None:
        return None
    options = choose_options(product, goal.option_values)
    for query in (search_query(goal.instruction_text), goal.name.lower()):
        results = world.engine.search(query)
        if goal.asin not in results:
            continue
        pages_to_turn = results.index(goal.asin) // PRODUCTS_PER_PAGE
        actions = [f"search[{query}]", *[f"click[{NEXT_PAGE}]"] * pages_to_turn, f"click[{goal.asin}]"]
        actions += [f"click[{value}]" for value in options] + [f"click[{BUY_NOW}]"]
        if len(actions) <= max_steps:
            return actions
    return None
