"""The core's subpackages import each other in one direction only, and ``config`` is a leaf:
loading a profile must not pull in torch, transformers or any other part of the project."""

import ast
import subprocess
import sys
from collections import defaultdict

from tests.conftest import REPO

CORE = REPO / "eto_assets"
# The order data flows in: a subpackage may import only from those before it.
LAYERS = ["config", "data", "envs", "agent", "training", "stages"]


def subpackage_imports() -> dict[str, set[str]]:
    """Subpackage -> subpackages it imports (module level and inside functions)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in CORE.rglob("*.py"):
        parts = path.relative_to(CORE).parts
        if len(parts) < 2 or parts[0] not in LAYERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                bits = name.split(".")
                if bits[0] == "eto_assets" and len(bits) > 1 and bits[1] != parts[0]:
                    graph[parts[0]].add(bits[1])
    return graph


def test_core_subpackages_import_in_one_direction():
    graph = subpackage_imports()
    for package, imported in graph.items():
        allowed = set(LAYERS[: LAYERS.index(package)])
        assert imported <= allowed, f"{package} imports {sorted(imported - allowed)}"
    assert "config" not in graph  # a leaf


def test_no_import_cycle_among_core_subpackages():
    graph = subpackage_imports()
    visiting, done = set(), set()

    def visit(node, path):
        assert node not in visiting, f"import cycle: {' -> '.join([*path, node])}"
        if node in done:
            return
        visiting.add(node)
        for nxt in graph.get(node, ()):
            visit(nxt, [*path, node])
        visiting.discard(node)
        done.add(node)

    for node in list(graph):
        visit(node, [])


def test_loading_a_profile_imports_nothing_heavy():
    code = (
        "import sys; from eto_assets.config.profile import load_profile; load_profile('tiny'); "
        "from eto_assets.config import settings; "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'dagster', 'mlflow') if m in sys.modules]; "
        "ours = [m for m in sys.modules if m.startswith('eto_assets.') and 'config' not in m]; "
        "print(heavy, ours)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[] []"
