"""WebShop's pages as its text mode shows them, and the buttons each page offers.

WebShop's "text" observation is the page's visible strings joined with `` [SEP] ``; its clickable
set is every button, product link and option value on the page, lower-cased (an action's argument
is lower-cased before matching). Rendering straight to that form gives the same observations
without a web server or an HTML parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eto_assets.envs.webshop.catalog import Product

SEP = " [SEP] "
BUY_NOW = "Buy Now"
NEXT_PAGE = "Next >"
PREV_PAGE = "< Prev"
BACK_TO_SEARCH = "Back to Search"
SEARCH_BUTTON = "Search"
SUB_PAGES = ("Description", "Features", "Reviews")
PRODUCTS_PER_PAGE = 10

_ACTION = re.compile(r"^\s*(search|click)\[(.+)\]\s*$", re.DOTALL)


@dataclass(frozen=True)
class Page:
    """One rendered page: ``kind`` is search | results | item | sub | done."""

    kind: str
    text: str
    clickables: tuple[str, ...]  # lower-cased, in page order
    has_search_bar: bool = False
    option_groups: tuple[tuple[str, str], ...] = ()  # (value, group) per option button, page order

    def available_actions(self) -> dict[str, object]:
        return {"has_search_bar": self.has_search_bar, "clickables": list(self.clickables)}


def parse_action(action: str) -> tuple[str, str] | None:
    """``search[...]`` / ``click[...]`` -> (name, argument); anything else -> None."""
    match = _ACTION.match(action or "")
    if not match or not match.group(2).strip():
        return None
    return match.group(1), match.group(2)


def _instruction(instruction: str) -> list[str]:
    return ["Instruction:", instruction]


def search_page(instruction: str) -> Page:
    text = SEP.join(["WebShop", *_instruction(instruction), SEARCH_BUTTON])
    return Page("search", text, (SEARCH_BUTTON.lower(),), has_search_bar=True)


def results_page(instruction: str, products: list[Product], page: int, total: int) -> Page:
    """Page ``page`` (1-based) of a search; like WebShop, "Next >" is always offered."""
    parts = [*_instruction(instruction), BACK_TO_SEARCH, f"Page {page} (Total results: {total})"]
    buttons = [BACK_TO_SEARCH]
    if page > 1:
        parts.append(PREV_PAGE)
        buttons.append(PREV_PAGE)
    parts.append(NEXT_PAGE)
    buttons.append(NEXT_PAGE)
    for product in products:
        parts += [product.asin, product.title, product.price_tag]
    clickables = [b.lower() for b in buttons] + [p.asin.lower() for p in products]
    return Page("results", SEP.join(parts), tuple(clickables))


def item_page(instruction: str, product: Product) -> Page:
    parts = [*_instruction(instruction), BACK_TO_SEARCH, PREV_PAGE]
    option_groups = []
    for group, values in product.options.items():
        parts.append(group)
        parts += values
        option_groups += [(value, group) for value in values]
    parts += [product.title, f"Price: {product.price_tag}", f"Rating: {product.rating}", *SUB_PAGES, BUY_NOW]
    buttons = [BACK_TO_SEARCH, PREV_PAGE, *SUB_PAGES, BUY_NOW]
    clickables = [b.lower() for b in buttons] + [value for value, _ in option_groups]
    text = SEP.join(p for p in parts if p)
    return Page("item", text, tuple(clickables), option_groups=tuple(option_groups))


def sub_page(instruction: str, product: Product, which: str) -> Page:
    """The Description, Features or Reviews page of a product."""
    body: list[str]
    if which == "Description":
        body = [product.description]
    elif which == "Features":
        body = list(product.bullet_points)
    else:
        body = [s for r in product.reviews for s in (f'"{r.title}"', r.score, r.body)]
    parts = [*_instruction(instruction), BACK_TO_SEARCH, PREV_PAGE, *(b.strip() for b in body)]
    return Page("sub", SEP.join(p for p in parts if p), (BACK_TO_SEARCH.lower(), PREV_PAGE.lower()))


def done_page(asin: str, reward: float) -> Page:
    parts = ["Thank you for shopping with us!", "Purchased", asin, "Your score (min 0.0, max 1.0)"]
    return Page("done", SEP.join([*parts, str(reward)]), ())
