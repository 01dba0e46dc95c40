"""Layers, checked on every module of the project, imports inside functions included:

``definitions`` -> ``assets`` (the Dagster layer: the stage table, the wrapper, checks, tracking,
locks, errors, meters) -> ``stages`` -> the core (``config`` -> ``data`` -> ``envs`` -> ``agent`` ->
``training`` -> ``models``). Nothing below the Dagster layer imports dagster, mlflow, ``resources`` or
``jobs``; ``resources`` hold settings and core objects only; ``jobs`` import the asset layer, never the
reverse; and no module is in an import circle."""

import subprocess
import sys

import pytest

from tests.import_graph import REPO, external_imports, find_cycle, import_graph, module_name

CORE = ["config", "data", "envs", "agent", "training", "models", "stages"]  # the order data flows in
FRAMEWORKS = {"dagster", "dagster_webserver", "mlflow"}
FOLDERS = [REPO / "eto_assets", REPO / "resources", REPO / "jobs"]


def layer(module: str) -> str:
    bits = module.split(".")
    if bits[0] == "eto_assets":
        return bits[1] if len(bits) > 1 else "eto_assets"
    return bits[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(FOLDERS)


def project_modules() -> dict[str, object]:
    return {module_name(p): p for folder in FOLDERS for p in sorted(folder.rglob("*.py"))}


def test_no_import_circle_anywhere(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_core_imports_in_one_direction(graph):
    for module, imported in graph.items():
        if layer(module) not in CORE:
            continue
        allowed = set(CORE[: CORE.index(layer(module)) + 1]) | {"eto_assets"}
        wrong = sorted(m for m in imported if layer(m) not in allowed)
        assert not wrong, f"{module} imports {wrong}"


def test_nothing_below_the_dagster_layer_imports_dagster_or_mlflow():
    for module, path in project_modules().items():
        if layer(module) in CORE or module == "eto_assets":
            heavy = {name for name in external_imports(path) if name.split(".")[0] in FRAMEWORKS}
            assert not heavy, f"{module} imports {sorted(heavy)}"


def test_resources_hold_settings_and_core_objects_only(graph):
    for module, imported in graph.items():
        if layer(module) == "resources":
            wrong = sorted(m for m in imported if layer(m) in {"assets", "definitions", "jobs"})
            assert not wrong, f"{module} imports {wrong}"


def test_the_asset_layer_never_imports_jobs_or_the_definitions(graph):
    for module, imported in graph.items():
        if layer(module) == "assets":
            wrong = sorted(m for m in imported if layer(m) in {"jobs", "definitions"})
            assert not wrong, f"{module} imports {wrong}"


def test_jobs_sit_below_the_definitions(graph):
    for module, imported in graph.items():
        if layer(module) == "jobs":
            assert not [m for m in imported if layer(m) == "definitions"], module


def test_a_broken_rule_is_caught():
    """The checkers see a function-level import that crosses a layer or closes a circle."""
    sneaky = "def later():\n    from jobs.run import main\n"
    table = "eto_assets.assets.table"
    path = REPO / "eto_assets" / "assets" / "table.py"
    graph = import_graph(FOLDERS, {table: path.read_text() + sneaky})
    assert "jobs.run" in graph[table]
    assert find_cycle(graph) is not None  # jobs.run -> ... -> assets.table -> jobs.run


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return out.stdout.strip()


def test_loading_a_profile_imports_nothing_heavy():
    code = (
        "import sys; from eto_assets.config.profile import load_profile; load_profile('tiny'); "
        "from eto_assets.config import settings; "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'dagster', 'mlflow') if m in sys.modules]; "
        "ours = [m for m in sys.modules if m.startswith('eto_assets.') and 'config' not in m]; "
        "print(heavy, ours)"
    )
    assert run_python(code) == "[] []"


def test_the_stages_run_without_dagster_or_mlflow():
    code = (
        "import sys, eto_assets.stages; "
        "print([m for m in ('dagster', 'mlflow', 'resources', 'jobs') if m in sys.modules])"
    )
    assert run_python(code) == "[]"
