"""WebShop's catalog: the product and goal records, loaders for WebShop's own data files, goal building.

Getting the upstream data (WebShop, Yao et al. 2022). WebShop's ``setup.sh`` fetches its files from
Google Drive with ``gdown``; do the same into one folder (``$ETO_DATA_DIR/webshop/data`` is where
this project looks by default)::

    pip install gdown
    mkdir -p "$ETO_DATA_DIR/webshop/data" && cd "$ETO_DATA_DIR/webshop/data"
    # the full catalog (about 1.18M products), as in the paper and in ETO:
    gdown https://drive.google.com/uc?id=1A2whVgOO0euk5O13n2iYDM0bQRkkRduB   # items_shuffle.json
    gdown https://drive.google.com/uc?id=1s2j6NgHljiZzQNL3veZaAiyW_qDEgBNi   # items_ins_v2.json
    # or the 1,000-product subset (it holds only a handful of human goals):
    gdown https://drive.google.com/uc?id=1EgHdxQ_YxqIQlvvq5iKlCrkEKR6-j0Ib   # items_shuffle_1000.json
    gdown https://drive.google.com/uc?id=1IduG0xl544V_A_jv3tHXC0kyFi7PnyBu   # items_ins_v2_1000.json
    # the human-written instructions (needed with either size):
    gdown https://drive.google.com/uc?id=14Kb5SPBk_jfdLZ_CDBNitW98QLDlKR5O   # items_human_ins.json

ETO's goal-index splits (``train_indices.json``, ``test_indices.json`` from the ETO repository's
``eval_agent/data/webshop/``) go to ``$ETO_DATA_DIR/webshop/eto_splits/``. An optional
``reviews.json`` next to the items (WebShop's review dump) fills the Reviews pages and ratings.

Goals are built the way WebShop builds its human goals: one goal per human instruction that names
at least one attribute, in catalog order, with a price bound drawn from the four multiples of $10
above the product's price, then shuffled with seed 233 so goal indices (ETO's splits) line up.
WebShop draws prices and bounds from an unseeded global RNG; here they come from ``seed`` so a
catalog always yields the same goals.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

UPSTREAM_FILES: dict[str, tuple[str, str]] = {
    "full": ("items_shuffle.json", "items_ins_v2.json"),
    "1000": ("items_shuffle_1000.json", "items_ins_v2_1000.json"),
}
HUMAN_INS_FILE = "items_human_ins.json"
REVIEWS_FILE = "reviews.json"
GENERATED_MARKER = "GENERATED.json"  # written by the generator; never present in upstream data

PRICE_STEPS = [10.0 * i for i in range(1, 100)]  # candidate price bounds, as WebShop's goal builder
NO_PRICE_BOUND = 1_000_000.0
GOAL_SHUFFLE_SEED = 233  # WebShop's seed for the goal order that session indices refer to
DEFAULT_PRICE = 100.0


@dataclass(frozen=True)
class Review:
    title: str
    score: str
    body: str


@dataclass
class Product:
    """A product as the site shows it (WebShop's normalised record)."""

    asin: str
    title: str
    category: str
    query: str
    product_category: str
    description: str
    bullet_points: list[str]
    price_tag: str
    pricing: list[float]
    options: dict[str, list[str]]
    attributes: list[str]
    rating: str = "N.A."
    reviews: list[Review] = field(default_factory=list)


@dataclass
class Goal:
    """What the shopper wants; ``goal_options`` is a list (human goals) or name -> value (synthetic)."""

    asin: str
    category: str
    query: str
    name: str
    product_category: str
    instruction_text: str
    attributes: list[str]
    price_upper: float
    goal_options: list[str] | dict[str, str]
    weight: float = 1.0

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Goal:
        """A goal dict as WebShop stores it (e.g. in its session logs)."""
        return cls(
            asin=str(record["asin"]),
            category=str(record.get("category", "")),
            query=str(record.get("query", "")),
            name=str(record.get("name", "")),
            product_category=str(record.get("product_category", "")),
            instruction_text=str(record["instruction_text"]),
            attributes=list(record.get("attributes") or []),
            price_upper=float(record.get("price_upper", NO_PRICE_BOUND)),
            goal_options=record.get("goal_options") or [],
            weight=float(record.get("weight", 1.0)),
        )

    @property
    def option_values(self) -> list[str]:
        if isinstance(self.goal_options, dict):
            return list(self.goal_options.values())
        return list(self.goal_options)


@dataclass
class Catalog:
    """Products, the price each sells at, and the goal list that task indices point into."""

    products: list[Product]
    prices: dict[str, float]
    goals: list[Goal]
    source: str  # "generated", "upstream-full" or "upstream-1000"
    data_dir: Path | None = None
    by_asin: dict[str, Product] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_asin = {p.asin: p for p in self.products}

    @property
    def generated(self) -> bool:
        return self.source == "generated"


def _dollar_values(text: str) -> list[float]:
    values = []
    for piece in text.split("$")[1:]:
        try:
            values.append(float(Decimal(re.sub(r"[^\d.]", "", piece))))
        except InvalidOperation:
            continue
    return values


def parse_pricing(raw: Any) -> tuple[list[float], str]:
    """WebShop's price rule: "$a" -> one price, "$a ... $b" -> a range, nothing -> $100."""
    values: list[float] = []
    if isinstance(raw, str):
        values = _dollar_values(raw)
    elif isinstance(raw, list | tuple):
        for piece in raw:
            if isinstance(piece, int | float):
                values.append(float(piece))
            elif isinstance(piece, str):
                values.extend(_dollar_values(piece if "$" in piece else "$" + piece))
    if not values:
        return [DEFAULT_PRICE], f"${DEFAULT_PRICE}"
    if len(values) == 1:
        return values, f"${values[0]}"
    return values[:2], f"${values[0]} to ${values[1]}"


def _options(raw: Any) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    if not isinstance(raw, dict):
        return options
    for name, contents in raw.items():
        if not contents:
            continue
        values = []
        for content in contents:
            value = content.get("value", "") if isinstance(content, dict) else str(content)
            values.append(value.strip().replace("/", " | ").lower())
        options[name.lower()] = values
    return options


def _reviews(raw: Any) -> list[Review]:
    out = []
    for r in raw or []:
        score = r.get("score", r.get("stars", ""))
        out.append(Review(str(r.get("title", "")), str(score), str(r.get("body", r.get("review", "")))))
    return out


def normalize_product(
    raw: dict[str, Any],
    attributes: dict[str, dict[str, Any]],
    reviews: dict[str, tuple[list[Review], str]] | None = None,
) -> Product | None:
    """One ``items_shuffle`` record -> :class:`Product`; None for records WebShop skips (bad asin)."""
    asin = str(raw.get("asin", ""))
    if not asin or asin == "nan" or len(asin) > 10:
        return None
    pricing, price_tag = parse_pricing(raw.get("pricing"))
    bullets = raw.get("small_description") or []
    bullets = bullets if isinstance(bullets, list) else [bullets]
    attrs = attributes.get(asin, {}).get("attributes")
    product_reviews, rating = (reviews or {}).get(asin, (_reviews(raw.get("reviews")), "N.A."))
    return Product(
        asin=asin,
        title=str(raw.get("name", "")),
        category=str(raw.get("category", "")),
        query=str(raw.get("query", "")).lower().strip(),
        product_category=str(raw.get("product_category", "")),
        description=str(raw.get("full_description") or ""),
        bullet_points=[str(b) for b in bullets],
        price_tag=price_tag,
        pricing=pricing,
        options=_options(raw.get("customization_options")),
        attributes=list(attrs) if attrs is not None else ["DUMMY_ATTR"],
        rating=rating,
        reviews=product_reviews,
    )


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def load_attributes(path: Path) -> dict[str, dict[str, Any]]:
    """``items_ins_v2*.json``: asin -> {attributes, instruction?, instruction_attributes?}."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object keyed by asin")
    return data


def load_human_instructions(path: Path) -> dict[str, list[dict[str, Any]]]:
    """``items_human_ins.json``: asin -> [{instruction, instruction_attributes, instruction_options}]."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object keyed by asin")
    return data


def load_human_goal_texts(path: Path) -> list[str]:
    """``baseline_models/data/human_goals.json``: the human instructions, in goal order, no price text."""
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise ValueError(f"{path}: expected a list of instruction strings")
    return data


def load_reviews(path: Path) -> dict[str, tuple[list[Review], str]]:
    """WebShop's ``reviews.json``: [{asin, reviews: [{title, stars, review}], average_rating}]."""
    out = {}
    for record in _read_json(path):
        rating = record.get("average_rating")
        rating_text = "N.A." if rating is None else str(rating)
        out[str(record["asin"])] = (_reviews(record.get("reviews")), rating_text)
    return out


def load_products(
    items_path: Path, attrs_path: Path, reviews_path: Path | None = None, num_products: int | None = None
) -> list[Product]:
    """Products in file order, first record per asin kept, as WebShop's loader does."""
    raw_products = _read_json(items_path)
    if num_products is not None:
        raw_products = raw_products[:num_products]
    attributes = load_attributes(attrs_path)
    reviews = load_reviews(reviews_path) if reviews_path and reviews_path.exists() else None
    seen: set[str] = set()
    products = []
    for raw in raw_products:
        product = normalize_product(raw, attributes, reviews)
        if product is None or product.asin in seen:
            continue
        seen.add(product.asin)
        products.append(product)
    return products


def selling_prices(products: list[Product], seed: int = 0) -> dict[str, float]:
    """The price each product sells at: its price, or a point in its range (seeded per product)."""
    prices = {}
    for p in products:
        if len(p.pricing) == 1:
            prices[p.asin] = p.pricing[0]
        else:
            prices[p.asin] = random.Random(f"{seed}:{p.asin}").uniform(*p.pricing[:2])
    return prices


def price_bound(price: float, rng: random.Random) -> float:
    """The larger of two steps drawn from the four $10 steps above ``price`` (none: no bound)."""
    steps = [p for p in PRICE_STEPS if p > price][:4]
    if len(steps) < 2:
        return NO_PRICE_BOUND
    return max(rng.sample(steps, 2))


def price_text(bound: float) -> str:
    return "" if bound >= NO_PRICE_BOUND else f", and price lower than {bound:.2f} dollars"


def build_human_goals(
    products: list[Product],
    prices: dict[str, float],
    human_instructions: dict[str, list[dict[str, Any]]],
    seed: int = 0,
) -> list[Goal]:
    """Human goals in WebShop's order (see the module docstring)."""
    rng = random.Random(seed)
    goals = []
    for product in products:
        for ins in human_instructions.get(product.asin, []):
            attributes = list(ins.get("instruction_attributes") or [])
            if not attributes:
                continue
            bound = price_bound(prices[product.asin], rng)
            goals.append(
                Goal(
                    asin=product.asin,
                    category=product.category,
                    query=product.query,
                    name=product.title,
                    product_category=product.product_category,
                    instruction_text=str(ins["instruction"]).strip(".") + price_text(bound),
                    attributes=attributes,
                    price_upper=bound,
                    goal_options=ins.get("instruction_options") or [],
                )
            )
    random.Random(GOAL_SHUFFLE_SEED).shuffle(goals)
    return goals


def load_catalog(data_dir: Path, variant: str = "full", seed: int = 0) -> Catalog:
    """Load an upstream-layout folder (WebShop's files, or the generator's output) into a Catalog."""
    if variant not in UPSTREAM_FILES:
        raise ValueError(f"unknown catalog variant {variant!r}; known: {sorted(UPSTREAM_FILES)}")
    items_name, attrs_name = UPSTREAM_FILES[variant]
    paths = [data_dir / items_name, data_dir / attrs_name, data_dir / HUMAN_INS_FILE]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"WebShop data missing: {', '.join(missing)} (see the download step above)")
    products = load_products(paths[0], paths[1], data_dir / REVIEWS_FILE)
    prices = selling_prices(products, seed)
    goals = build_human_goals(products, prices, load_human_instructions(paths[2]), seed)
    source = "generated" if (data_dir / GENERATED_MARKER).exists() else f"upstream-{variant}"
    return Catalog(products=products, prices=prices, goals=goals, source=source, data_dir=data_dir)
