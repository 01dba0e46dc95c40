"""No import cycle among the modules of ``eto_assets.envs``, counting imports inside functions too.

A function-level import only postpones a circle to the first call, so every ``import`` in a module
counts, wherever it stands. Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` first, so
those count as imported too, except the packages the importing module is itself inside (Python has
started them before the module runs). ``from a.b import x`` looks ``x`` up in ``a.b``'s namespace
first, so it imports ``a.b`` itself, and ``a.b.x`` as well when that is a module: a submodule that
reaches a sibling through its own package this way needs the package ``__init__``, and is in a circle
as soon as that ``__init__`` imports it back.
"""

from __future__ import annotations

from tests.import_graph import REPO, find_cycle, import_graph, imported_modules

ENVS = REPO / "eto_assets" / "envs"


def envs_import_graph(overrides: dict[str, str] | None = None) -> dict[str, set[str]]:
    return import_graph([ENVS], overrides)


def test_no_import_cycle_among_envs_modules():
    cycle = find_cycle(envs_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_alfworld_imports_run_engine_expert_benchmark():
    graph = envs_import_graph()
    pkg = "eto_assets.envs.alfworld"
    assert f"{pkg}.engine" in graph[f"{pkg}.expert"]
    assert {f"{pkg}.engine", f"{pkg}.expert"} <= graph[f"{pkg}.benchmark"]
    assert not graph[f"{pkg}.engine"] & {pkg, f"{pkg}.expert", f"{pkg}.benchmark"}
    assert not graph[f"{pkg}.expert"] & {pkg, f"{pkg}.benchmark"}
    # registry imports the benchmark inside a function: function-level imports are in the graph
    assert f"{pkg}.benchmark" in graph["eto_assets.envs.registry"]
    assert pkg in graph["eto_assets.envs.registry"]  # and so is the package whose __init__ runs first


def test_checker_finds_a_circle_through_a_function_level_import():
    engine = "eto_assets.envs.alfworld.engine"
    lazy = "def later():\n    from eto_assets.envs.alfworld.expert import play_expert\n"
    cycle = find_cycle(envs_import_graph({engine: (ENVS / "alfworld" / "engine.py").read_text() + lazy}))
    assert cycle is not None and engine in cycle and "eto_assets.envs.alfworld.expert" in cycle


def test_checker_finds_a_circle_through_a_package_init():
    known = {"p", "p.a", "p.b"}
    # p/__init__ re-exports from p.a; p.a reaches its sibling through the package's namespace
    assert imported_modules("from p.a import A", "p", True, known) == {"p.a"}
    assert imported_modules("from p import b", "p.a", False, known) == {"p", "p.b"}
    assert imported_modules("from . import b", "p.a", False, known) == {"p", "p.b"}
    # a plain import of a sibling does not need the package it is inside
    assert imported_modules("import p.b as b", "p.a", False, known) == {"p.b"}
    assert imported_modules("from .b import B", "p.a", False, known) == {"p.b"}
    assert find_cycle({"p": {"p.a"}, "p.a": {"p", "p.b"}, "p.b": set()}) == ["p", "p.a", "p"]
