"""WebShop's purchase reward, with the components and weights of the paper's code (re-derived).

    total = r_type * (n_attribute_matches + n_option_matches + r_price) / (n_attributes + n_options + 1)

* r_type: is it the right kind of product? 1.0 when the title nouns overlap the goal's by more than
  20% or the scrape query or two category-path levels agree; 0.5 when the nouns overlap but nothing
  else agrees; 0.1 below 10% noun overlap; 0.0 with none.
* attributes: a goal attribute counts when a product attribute fuzzy-matches it (token-set ratio
  above 85) or it appears verbatim in the title, features or description.
* options: a goal option counts when some selected option fuzzy-matches it (token-set ratio above
  85, every option group alike), colours reduced to their base colour first. Only the goal's options
  are matched, as in ETO's copy of WebShop (``envs/webshop/src/webshop/web_agent_site/engine/goal.py``
  ``get_option_reward``): a selected value that merely appears in the product text earns nothing, so
  an agent cannot score options by picking any value the page mentions. Each goal option counts at
  most once, which keeps the total in [0, 1] without a cap.
* r_price: 1 when the price paid is at most the goal's bound.

WebShop finds title nouns with spaCy's tagger. spaCy's English models are not on PyPI, so when no
model is installed a lexical stand-in is used: on title-cased product names the tagger marks nearly
every content word NOUN/PROPN, so the stand-in keeps alphabetic words that are not function words.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.utils import default_process

from eto_assets.envs.webshop.catalog import Goal, Product

FUZZY_THRESHOLD = 85
CATEGORY_SEP = "›"

NounFn = Callable[[str], Sequence[str]]


def _words(text: str) -> list[str]:
    return text.split()


# Base colours an option value is reduced to (longest first, so "navy blue" wins over "blue").
_COLORS = _words(
    """black white grey gray silver gold red maroon burgundy wine pink fuchsia purple lavender violet
blue navy teal turquoise aqua green olive mint khaki beige tan camel brown coffee chocolate orange coral
peach yellow mustard cream ivory clear multicolor charcoal"""
)
_TWO_WORD_COLORS = _words(
    "rose_gold navy_blue royal_blue sky_blue light_blue dark_blue army_green dark_green dark_brown"
)
COLOR_NAMES = tuple(
    sorted({c.replace("_", " ") for c in _COLORS + _TWO_WORD_COLORS}, key=lambda c: (-len(c), c))
)

_FUNCTION_WORDS = frozenset(
    _words(
        """a an the this that these those each every either neither some any no all both half several many
    much more most few less least other another such what which whose i me my mine you your yours he him
    his she her hers it its we us our ours they them their theirs who whom one ones about above across
    after against along among around as at before behind below beneath beside besides between beyond by
    despite down during except for from in inside into like near of off on onto out outside over past per
    since than through till to toward towards under until up upon via with within without and or but nor
    so yet if because while although though whether unless am is are was were be been being have has had
    do does did will would shall should can could may might must not very too also just only even ever
    never always again then there here now"""
    )
)


def normalize_color(value: str) -> str:
    """The base colour named in ``value`` (e.g. "heather grey" -> "grey"), else ``value`` itself."""
    for color in COLOR_NAMES:
        if re.search(rf"\b{re.escape(color)}\b", value):
            return color
    return value


def heuristic_nouns(text: str) -> list[str]:
    """Lower-cased alphabetic words of two or more letters that are not function words."""
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 1 and w not in _FUNCTION_WORDS]


@functools.cache
def spacy_nouns() -> NounFn | None:
    """WebShop's noun finder (spaCy NOUN/PROPN tags) when spaCy and an English model are installed."""
    models = [m for m in ("en_core_web_lg", "en_core_web_sm") if importlib.util.find_spec(m) is not None]
    if not models or importlib.util.find_spec("spacy") is None:
        return None  # checked first: importing spaCy alone takes seconds
    import spacy

    for model in models:
        try:
            nlp = spacy.load(model, disable=["parser", "ner", "lemmatizer"])
        except OSError:
            continue

        @functools.lru_cache(maxsize=65536)
        def nouns(text: str, _nlp=nlp) -> tuple[str, ...]:
            return tuple(t.text.lower() for t in _nlp(text) if t.pos_ in ("NOUN", "PROPN"))

        return nouns
    return None


def fuzzy_match(a: str, b: str) -> bool:
    """WebShop's fuzzy test: token-set ratio (lower-cased, punctuation stripped), rounded, above 85."""
    return round(fuzz.token_set_ratio(a, b, processor=default_process)) > FUZZY_THRESHOLD


def _product_text(product: Product) -> tuple[str, str, str]:
    return product.title.lower(), " ".join(product.bullet_points).lower(), product.description.lower()


@dataclass(frozen=True)
class TypeMatch:
    r_type: float
    query_match: bool
    category_match: bool
    title_score: float


def type_reward(product: Product, goal: Goal, nouns: NounFn = heuristic_nouns) -> TypeMatch:
    query_match = product.query == goal.query
    bought_path = {x.strip() for x in product.product_category.split(CATEGORY_SEP)}
    goal_path = {x.strip() for x in goal.product_category.split(CATEGORY_SEP)}
    category_match = len(bought_path & goal_path) >= 2
    desired = list(nouns(goal.name))
    bought = set(nouns(product.title))
    title_score = 0.2 if not desired else len(bought & set(desired)) / len(desired)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return TypeMatch(r_type, query_match, category_match, title_score)


def attribute_reward(product: Product, goal: Goal) -> tuple[float | None, int]:
    """(fraction of goal attributes the product has, how many); None when the goal names none."""
    texts = _product_text(product)
    matches = 0
    for wanted in goal.attributes:
        if any(fuzzy_match(have, wanted) for have in product.attributes) or any(
            wanted.lower() in t for t in texts
        ):
            matches += 1
    return (matches / len(goal.attributes) if goal.attributes else None), matches


def option_reward(goal_options: Sequence[str], selected: dict[str, str]) -> tuple[float | None, int]:
    """(fraction of goal options hit by the selected options, how many); None without goal options.

    ETO's rule: for each goal option, is there a selected option that fuzzy-matches it? The product
    is not consulted, because the options are what the agent chose, not what the page lists.
    """
    wanted = [normalize_color(o.lower()) for o in goal_options]
    chosen = [normalize_color(v.lower()) for v in selected.values()]
    matches = sum(1 for w in wanted if any(fuzzy_match(c, w) for c in chosen))
    return (matches / len(wanted) if wanted else None), matches


def price_reward(price: float, price_upper: float) -> float:
    return 1.0 if price <= price_upper else 0.0


def total_reward(
    attribute_matches: int,
    option_matches: int,
    r_price: float,
    num_attributes: int,
    num_options: int,
    r_type: float,
) -> float:
    """Matches plus the price term over the number of goal terms, scaled by the type reward."""
    return (attribute_matches + option_matches + r_price) / (num_attributes + num_options + 1) * r_type


@dataclass(frozen=True)
class RewardBreakdown:
    total: float
    r_type: float
    r_att: float | None
    r_option: float | None
    r_price: float
    type_match: TypeMatch


def purchase_reward(
    product: Product, goal: Goal, price: float, selected: dict[str, str], nouns: NounFn = heuristic_nouns
) -> RewardBreakdown:
    """The reward for buying ``product`` at ``price`` with options ``selected`` (group -> value)."""
    kind = type_reward(product, goal, nouns)
    r_att, n_att = attribute_reward(product, goal)
    goal_options = goal.option_values
    r_option, n_opt = option_reward(goal_options, selected)
    r_price = price_reward(price, goal.price_upper)
    total = total_reward(n_att, n_opt, r_price, len(goal.attributes), len(goal_options), kind.r_type)
    return RewardBreakdown(total, kind.r_type, r_att, r_option, r_price, kind)
