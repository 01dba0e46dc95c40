"""Loaders on upstream-schema records (real ones where the shared data has them) and the generator."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from eto_assets.envs.webshop.catalog import (
    GENERATED_MARKER,
    GOAL_SHUFFLE_SEED,
    HUMAN_INS_FILE,
    NO_PRICE_BOUND,
    Goal,
    build_human_goals,
    load_attributes,
    load_catalog,
    load_human_goal_texts,
    normalize_product,
    parse_pricing,
    price_bound,
)
from eto_assets.envs.webshop.generator import ATTRS_FILE, ITEMS_FILE, generate_catalog
from eto_assets.envs.webshop.oracle import search_query

UPSTREAM_ITEM_KEYS = {
    "asin", "name", "category", "query", "product_category", "full_description", "small_description",
    "pricing", "customization_options", "images",
}  # fmt: skip


def test_parse_pricing():
    assert parse_pricing(None) == ([100.0], "$100.0")
    assert parse_pricing("") == ([100.0], "$100.0")
    assert parse_pricing("$12.99") == ([12.99], "$12.99")
    assert parse_pricing("$10.99 - $14.99") == ([10.99, 14.99], "$10.99 to $14.99")
    assert parse_pricing("$1,299.00") == ([1299.0], "$1299.0")
    assert parse_pricing([5, "$6.5"]) == ([5.0, 6.5], "$5.0 to $6.5")


def test_normalize_product_follows_webshop_rules():
    raw = {
        "asin": "B0TEST0001",
        "name": "Lumora Shoes",
        "query": " Men's Running Shoes ",
        "small_description": "One bullet",
        "customization_options": {"Color": [{"value": " Black/White ", "image": None}], "Size": None},
        "pricing": "$20.00",
    }
    product = normalize_product(raw, {"B0TEST0001": {"attributes": ["arch support"]}})
    assert product is not None
    assert product.options == {"color": ["black | white"]}  # lower-cased, "/" -> " | ", empty groups dropped
    assert product.query == "men's running shoes"
    assert product.bullet_points == ["One bullet"]
    assert product.attributes == ["arch support"]
    assert product.rating == "N.A."
    assert normalize_product({**raw, "asin": "B0TEST0002"}, {}).attributes == ["DUMMY_ATTR"]
    assert normalize_product({**raw, "asin": "nan"}, {}) is None
    assert normalize_product({**raw, "asin": "TOO-LONG-ASIN"}, {}) is None


def test_price_bound_takes_the_larger_of_two_of_four_steps():
    rng = random.Random(0)
    bounds = {price_bound(23.5, rng) for _ in range(200)}
    assert bounds == {40.0, 50.0, 60.0}  # steps 30, 40, 50, 60; the larger of two is never 30
    assert price_bound(985.0, rng) == NO_PRICE_BOUND  # fewer than two steps left


def test_build_human_goals_order_and_shuffle(make_product):
    products = [make_product(asin=f"B0TEST000{i}") for i in range(4)]
    human = {
        "B0TEST0000": [
            {"instruction": "first.", "instruction_attributes": ["a"], "instruction_options": ["x"]}
        ],
        "B0TEST0001": [{"instruction": "skipped", "instruction_attributes": [], "instruction_options": []}],
        "B0TEST0002": [
            {"instruction": "second", "instruction_attributes": ["b"], "instruction_options": []},
            {"instruction": "third", "instruction_attributes": ["c"], "instruction_options": []},
        ],
    }
    goals = build_human_goals(products, {p.asin: 5.0 for p in products}, human, seed=1)
    order = ["first", "second", "third"]
    random.Random(GOAL_SHUFFLE_SEED).shuffle(order)
    assert [g.instruction_text.split(",")[0] for g in goals] == order
    assert all(
        g.instruction_text.endswith(f", and price lower than {g.price_upper:.2f} dollars") for g in goals
    )
    assert all(g.price_upper in (20.0, 30.0, 40.0) for g in goals)


def test_generator_is_deterministic(tmp_path: Path, catalog_dir: Path):
    other = generate_catalog(tmp_path / "again")
    for name in (ITEMS_FILE, ATTRS_FILE, HUMAN_INS_FILE, "reviews.json", GENERATED_MARKER):
        assert (other / name).read_bytes() == (catalog_dir / name).read_bytes(), name
    before = (other / ITEMS_FILE).stat().st_mtime_ns
    generate_catalog(other)  # same parameters: reused, not rewritten
    assert (other / ITEMS_FILE).stat().st_mtime_ns == before


def test_generated_files_use_the_upstream_schema(catalog_dir: Path):
    items = json.loads((catalog_dir / ITEMS_FILE).read_text(encoding="utf-8"))
    assert len(items) == 400 and all(set(item) >= UPSTREAM_ITEM_KEYS for item in items)
    assert len({item["category"] for item in items}) == 5
    attrs = json.loads((catalog_dir / ATTRS_FILE).read_text(encoding="utf-8"))
    assert set(attrs) == {item["asin"] for item in items}
    assert all(set(r) == {"attributes", "instruction", "instruction_attributes"} for r in attrs.values())
    human = json.loads((catalog_dir / HUMAN_INS_FILE).read_text(encoding="utf-8"))
    records = [r for rs in human.values() for r in rs]
    assert len(records) == 250
    keys = {"asin", "instruction", "instruction_attributes", "instruction_options"}
    assert all(keys <= set(r) for r in records)


def test_generated_goals_are_solvable(bench):
    catalog = bench.world.catalog
    assert catalog.source == "generated" and len(catalog.goals) == 250
    with_options = 0
    for goal in catalog.goals:
        product = catalog.by_asin[goal.asin]
        values = {v for vs in product.options.values() for v in vs}
        assert set(goal.option_values) <= values
        assert set(goal.attributes) <= set(product.attributes)
        assert catalog.prices[goal.asin] <= goal.price_upper
        assert goal.instruction_text == goal.instruction_text.lower()
        with_options += bool(goal.option_values)
    assert with_options > 150
    assert len({len(p.options) for p in catalog.products}) >= 3  # 0..2 option groups


def test_load_catalog_reports_missing_files(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="items_shuffle.json"):
        load_catalog(tmp_path)
    with pytest.raises(ValueError):
        load_catalog(tmp_path, variant="huge")


# -- real upstream records (skipped without the shared data) ------------------------------------
def test_load_attributes_on_upstream_file(eto_data_dir: Path, catalog_dir: Path):
    path = eto_data_dir / "webshop" / "data" / "items_ins_v2_1000.json"
    if not path.exists():
        pytest.skip(f"{path} missing")
    attrs = load_attributes(path)
    assert len(attrs) == 1000
    assert all(isinstance(r["attributes"], list) for r in attrs.values())
    record = attrs["B07DJJXGB5"]
    assert "tea tree" in record["attributes"] and set(record["instruction_attributes"]) <= set(
        record["attributes"]
    )
    upstream_keys = {k for r in attrs.values() for k in r}
    generated = load_attributes(catalog_dir / ATTRS_FILE)
    assert {k for r in generated.values() for k in r} <= upstream_keys
    product = normalize_product({"asin": "B07DJJXGB5", "name": "Tea Tree Body Scrub"}, attrs)
    assert product is not None and product.attributes == record["attributes"]


def test_load_human_goal_texts_on_upstream_file(eto_data_dir: Path, bench):
    path = eto_data_dir / "webshop" / "baseline_models" / "data" / "human_goals.json"
    if not path.exists():
        pytest.skip(f"{path} missing")
    texts = load_human_goal_texts(path)
    assert len(texts) == 12087
    assert all(search_query(t) == t.strip() for t in texts[:500])  # no price clause in this file
    engine = bench.world.engine
    for text in texts[:200]:  # real instructions as queries on the generated catalog
        assert len(engine.search(text)) <= 50


def test_goal_records_from_webshop_logs(eto_data_dir: Path):
    logs = sorted((eto_data_dir / "webshop" / "all_trajs").glob("*.jsonl"))
    if not logs:
        pytest.skip("no WebShop session logs in the shared data")
    for path in logs:
        record = json.loads(path.read_text(encoding="utf-8").splitlines()[0])["goal"]
        goal = Goal.from_record(record)
        assert goal.asin == record["asin"] and goal.option_values == record["goal_options"]
        assert goal.price_upper < NO_PRICE_BOUND
        assert search_query(
            goal.instruction_text
        ) + f", and price lower than {goal.price_upper:.2f} dollars" == (goal.instruction_text)
