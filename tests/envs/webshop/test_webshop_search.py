"""BM25 search: what it indexes, what it returns, and how fast it is."""

from __future__ import annotations

import random
import time

from eto_assets.envs.webshop.oracle import search_query
from eto_assets.envs.webshop.search import SEARCH_RETURN_N, SearchEngine, document_text


def test_document_text_is_what_webshop_indexes(make_product):
    product = make_product(bullet_points=["First bullet", "Second bullet"])
    assert document_text(product) == (
        "lumora running shoes for men, arch support non slip outsole for wet roads. first bullet "
        "color: heather grey, navy blue, and size: 9, 9.5, 10"
    )


def test_search_ranks_matching_products_first(make_product):
    products = [
        make_product(asin="B0TEST0001", title="Garden Hose", description="", options={}, bullet_points=[]),
        make_product(asin="B0TEST0002", title="Running Shoes", description="", options={}, bullet_points=[]),
        make_product(
            asin="B0TEST0003", title="Running Shoes Rack", description="", options={}, bullet_points=[]
        ),
    ]
    engine = SearchEngine(products)
    # stemming ("shoe" ~ "shoes"), stop words and case are handled; no-match documents are not hits
    assert engine.search("The RUNNING shoe") == ["B0TEST0002", "B0TEST0003"]
    assert engine.search("the of and") == []
    assert engine.search("zzzz") == []


def test_ties_keep_catalog_order(make_product):
    products = [make_product(asin=f"B0TEST{i:04d}", options={}) for i in range(60)]
    engine = SearchEngine(products)
    assert engine.search("running shoes") == [p.asin for p in products[:SEARCH_RETURN_N]]


def test_search_finds_goal_products(bench):
    world = bench.world
    ranks = []
    for goal in world.catalog.goals:
        results = world.engine.search(search_query(goal.instruction_text))
        assert len(results) <= SEARCH_RETURN_N
        ranks.append(results.index(goal.asin) if goal.asin in results else SEARCH_RETURN_N)
    assert sum(r < 10 for r in ranks) / len(ranks) > 0.8  # first page for most goals
    assert (
        sum(r < SEARCH_RETURN_N for r in ranks) / len(ranks) > 0.95
    )  # the expert searches the name otherwise


def test_search_speed(bench):
    """Uncached searches per minute on the generated catalog (thousands are needed; far more are had)."""
    world = bench.world
    rng = random.Random(0)
    queries = []
    for goal in world.catalog.goals:
        words = search_query(goal.instruction_text).split()
        queries += [" ".join(rng.sample(words, max(1, len(words) // 2))) for _ in range(4)]
    engine = SearchEngine(world.catalog.products, cache_size=0)
    start = time.perf_counter()
    for query in queries:
        engine.search(query)
    per_minute = len(queries) / (time.perf_counter() - start) * 60
    print(f"\nwebshop search: {per_minute:,.0f} searches/minute over {len(world.catalog.products)} products")
    assert per_minute > 5_000
