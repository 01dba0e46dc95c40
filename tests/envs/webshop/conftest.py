"""Shared fixtures: one generated catalog per test session, record factories, upstream data lookup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from eto_assets.envs.webshop.benchmark import WebShopBenchmark
from eto_assets.envs.webshop.catalog import Goal, Product
from eto_assets.envs.webshop.generator import generate_catalog

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def catalog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_catalog(tmp_path_factory.mktemp("webshop_catalog"))


@pytest.fixture(scope="session")
def bench(catalog_dir: Path) -> WebShopBenchmark:
    return WebShopBenchmark(data_dir=catalog_dir)


@pytest.fixture
def env(bench: WebShopBenchmark):
    environment = bench.make_env()
    yield environment
    environment.close()


@pytest.fixture(scope="session")
def eto_data_dir() -> Path:
    """``$ETO_DATA_DIR`` (or the ``shared/data`` folder beside the repo); skips when absent."""
    value = os.environ.get("ETO_DATA_DIR")
    path = Path(value) if value else REPO_ROOT.parent / "shared" / "data"
    if not (path / "webshop").is_dir():
        pytest.skip(f"WebShop upstream data not found (ETO_DATA_DIR unset and {path} missing)")
    return path


def _product(**overrides: Any) -> Product:
    fields: dict[str, Any] = {
        "asin": "B0TEST0001",
        "title": "Lumora Running Shoes for Men, Arch Support",
        "category": "fashion",
        "query": "men's running shoes",
        "product_category": "Clothing, Shoes & Jewelry › Men › Shoes › Athletic › Running",
        "description": "Non slip outsole for wet roads.",
        "bullet_points": ["Lightweight: designed for everyday use"],
        "price_tag": "$49.99",
        "pricing": [49.99],
        "options": {"color": ["heather grey", "navy blue"], "size": ["9", "9.5", "10"]},
        "attributes": ["arch support", "rubber sole", "memory foam insole"],
    }
    fields.update(overrides)
    return Product(**fields)


def _goal(**overrides: Any) -> Goal:
    fields: dict[str, Any] = {
        "asin": "B0TEST0001",
        "category": "fashion",
        "query": "men's running shoes",
        "name": "Lumora Running Shoes for Men, Arch Support",
        "product_category": "Clothing, Shoes & Jewelry › Men › Shoes › Athletic › Running",
        "instruction_text": "i need running shoes with arch support, and price lower than 60.00 dollars",
        "attributes": ["arch support"],
        "price_upper": 60.0,
        "goal_options": ["grey", "9"],
    }
    fields.update(overrides)
    return Goal(**fields)


@pytest.fixture
def make_product():
    return _product


@pytest.fixture
def make_goal():
    return _goal
