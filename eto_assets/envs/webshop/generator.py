"""A small deterministic WebShop catalog, written in exactly the upstream file schema.

WebShop's data cannot be downloaded everywhere (CI, offline machines), so this writes a stand-in
catalog with the same files and fields (``items_shuffle.json``, ``items_ins_v2.json``,
``items_human_ins.json``, ``reviews.json``) that the upstream loaders in :mod:`.catalog` read. Results
on it exercise the whole pipeline but are NOT comparable with the paper's WebShop numbers.
A ``GENERATED.json`` marker records the generator version and parameters; a folder whose marker
matches is reused as is.
"""

from __future__ import annotations

import json
import os
import random
import string
from pathlib import Path
from typing import Any

from eto_assets.envs.webshop.catalog import GENERATED_MARKER, HUMAN_INS_FILE, REVIEWS_FILE, UPSTREAM_FILES
from eto_assets.envs.webshop.vocab import (
    BRAND_HEADS,
    BRAND_TAILS,
    INSTRUCTION_TEMPLATES,
    OPTION_PHRASES,
    PRODUCT_TYPES,
    REVIEW_BODIES,
    REVIEW_TITLES,
    ProductType,
)

GENERATOR_VERSION = 1
DEFAULT_NUM_PRODUCTS = 400
DEFAULT_NUM_GOALS = 250  # 200 train + 50 test
DEFAULT_SEED = 20240305
ITEMS_FILE, ATTRS_FILE = UPSTREAM_FILES["full"]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _asin(rng: random.Random, used: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))
        if asin not in used:
            used.add(asin)
            return asin


def _price(rng: random.Random, low: float, high: float) -> str:
    first = round(rng.uniform(low, high)) - 0.01
    if rng.random() < 0.75:
        return f"${first:.2f}"
    return f"${first:.2f} - ${first + rng.choice((3, 5, 8, 12)):.2f}"


def _product(
    rng: random.Random, kind: ProductType, asin: str, brands: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """One items_shuffle record and its attributes (each named in the title, description or features)."""
    brand = rng.choice(brands)
    noun = rng.choice(kind.nouns)
    attrs = rng.sample(kind.attributes, rng.randint(3, 4))
    in_title = [a.title() for a in attrs[: rng.randint(1, 2)]]
    options = {}
    for name, pool in kind.options.items():
        if rng.random() < 0.15:  # as on Amazon, not every listing offers every choice
            continue
        keep = sorted(rng.sample(range(len(pool)), rng.randint(2, len(pool))))
        options[name] = [pool[i] for i in keep]
    if "color" in options and rng.random() < 0.5:
        in_title.append(options["color"][0].title())
    audience = " for Women" if "women's" in kind.query else " for Men" if "men's" in kind.query else ""
    bullets = [f"{a.capitalize()}: designed for everyday use" for a in attrs[1:]]
    bullets.append(f"{brand} quality guarantee with hassle-free returns")
    record = {
        "asin": asin,
        "name": f"{brand} {noun}{audience}, {', '.join(in_title)}",
        "brand": brand,
        "category": kind.category,
        "query": kind.query,
        "product_category": kind.product_category,
        "full_description": (
            f"The {brand} {noun.lower()} offers {_join(attrs[:2])}. "
            f"Made for daily use and backed by {brand} customer support."
        ),
        "small_description": bullets,
        "pricing": _price(rng, *kind.price),
        "customization_options": {
            name: [{"value": v, "image": None} for v in values] for name, values in options.items()
        }
        or None,
        "images": [f"https://example.com/webshop-generated/{asin}.jpg"],
    }
    return record, attrs


def _instruction(rng: random.Random, kind: ProductType, product: dict[str, Any], attrs: list[str]) -> dict:
    """An ``items_human_ins`` record naming 1-3 of the product's attributes and most of its options."""
    chosen = rng.sample(attrs, min(len(attrs), rng.choice((1, 2, 2, 3))))
    picked: list[str] = []
    phrases: list[str] = []
    for name, contents in (product["customization_options"] or {}).items():
        if rng.random() < 0.8:
            value = rng.choice(contents)["value"]
            picked.append(value)
            phrases.append(OPTION_PHRASES.get(name, "{v} " + name).format(v=value))
    opts = f", in {_join(phrases)}" if phrases else ""
    text = rng.choice(INSTRUCTION_TEMPLATES).format(ask=kind.ask, attrs=_join(chosen), opts=opts)
    return {
        "asin": product["asin"],
        "instruction": text,
        "instruction_attributes": chosen,
        "instruction_options": picked,
    }


def generate_catalog(
    out_dir: Path,
    num_products: int = DEFAULT_NUM_PRODUCTS,
    num_goals: int = DEFAULT_NUM_GOALS,
    seed: int = DEFAULT_SEED,
) -> Path:
    """Write the catalog files into ``out_dir`` (same inputs -> byte-identical files); return it."""
    if num_goals > num_products:
        raise ValueError("num_goals must not exceed num_products (one instruction per product)")
    params = {"version": GENERATOR_VERSION, "products": num_products, "goals": num_goals, "seed": seed}
    marker = out_dir / GENERATED_MARKER
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")).get("params") == params:
        return out_dir
    rng = random.Random(seed)
    brands = [h + t for h in BRAND_HEADS for t in BRAND_TAILS]
    used: set[str] = set()
    kinds = [PRODUCT_TYPES[i % len(PRODUCT_TYPES)] for i in range(num_products)]
    rng.shuffle(kinds)
    products, attributes, reviews, human = [], {}, [], {}
    for kind in kinds:
        product, attrs = _product(rng, kind, _asin(rng, used), brands)
        products.append(product)
        attributes[product["asin"]] = {
            "attributes": attrs,
            "instruction": f"Find me {kind.ask} with {_join(attrs[:2])}",
            "instruction_attributes": attrs[:2],
        }
        stars = [rng.randint(3, 5) for _ in range(rng.randint(0, 3))]
        reviews.append(
            {
                "asin": product["asin"],
                "reviews": [
                    {"title": rng.choice(REVIEW_TITLES), "stars": s, "review": rng.choice(REVIEW_BODIES)}
                    for s in stars
                ],
                "average_rating": round(sum(stars) / len(stars), 1) if stars else None,
            }
        )
    for index in sorted(rng.sample(range(num_products), num_goals)):
        product = products[index]
        kind = next(k for k in PRODUCT_TYPES if k.query == product["query"])
        record = _instruction(rng, kind, product, attributes[product["asin"]]["attributes"])
        record.update(assignment_id=f"generated-{index:05d}", worker_id="generator")
        human[product["asin"]] = [record]
    note = "Generated stand-in for WebShop's catalog; results on it are not comparable with the paper."
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in (
        (ITEMS_FILE, products),
        (ATTRS_FILE, attributes),
        (REVIEWS_FILE, reviews),
        (HUMAN_INS_FILE, human),
        (GENERATED_MARKER, {"params": params, "note": note}),  # last: marks the folder complete
    ):
        # per-process temp names: concurrent writers produce identical files and each rename is atomic
        tmp = out_dir / f"{name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
        tmp.replace(out_dir / name)
    return out_dir
