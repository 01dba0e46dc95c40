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

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENVS = REPO / "eto_assets" / "envs"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports (anywhere in ``source``), with the
    packages whose ``__init__`` those imports run first."""
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    out = set(targets)
    for target in targets:
        bits = target.split(".")
        for depth in range(1, len(bits)):
            parent = ".".join(bits[:depth])
            if name != parent and not name.startswith(parent + "."):
                out.add(parent)
    return (out & known) - {name}


def envs_import_graph(overrides: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Module -> the modules under ``eto_assets/envs`` it imports; ``overrides`` replaces the source of
    a module (by dotted name) to test the checker itself."""
    paths = {module_name(p): p for p in sorted(ENVS.rglob("*.py"))}
    known = set(paths)
    sources = {name: path.read_text() for name, path in paths.items()} | (overrides or {})
    return {
        name: imported_modules(sources[name], name, paths[name].name == "__init__.py", known)
        for name in paths
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored

    def visit(node: str, path: list[str]) -> list[str] | None:
        if state.get(node) == "open":
            return [*path[path.index(node) :], node]
        if state.get(node) == "done":
            return None
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, [*path, node])
            if cycle:
                return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        cycle = visit(node, [])
        if cycle:
            return cycle
    return None


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
