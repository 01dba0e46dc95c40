"""The project's import graph, read from the source with ``ast`` (no module is imported).

A function-level import only postpones a circle to the first call, so every ``import`` in a module
counts, wherever it stands. Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` first, so
those count as imported too, except the packages the importing module is itself inside (Python has
started them before the module runs). ``from a.b import x`` looks ``x`` up in ``a.b``'s namespace
first, so it imports ``a.b`` itself, and ``a.b.x`` as well when that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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


def import_graph(folders: list[Path], overrides: dict[str, str] | None = None) -> dict[str, set[str]]:
    """Module -> the modules under ``folders`` it imports; ``overrides`` replaces the source of a
    module (by dotted name) to test the checker itself."""
    paths = {module_name(p): p for folder in folders for p in sorted(folder.rglob("*.py"))}
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


def external_imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (anywhere in it): ``dagster``, ``mlflow`` ..."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out
