"""One table of settings: the README's settings table and ``config/settings.py`` list the same variables
with the same defaults, no other module reads the environment, and importing changes none of it."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from eto_assets.config.settings import LAUNCHER_VARIABLES, OFFLINE_ENVIRONMENT, SETTINGS
from tests.conftest import REPO

SETTINGS_MODULE = "eto_assets/config/settings.py"
SCANNED = ("eto_assets", "resources", "jobs", "benchmarks")
# Where accelerate/torchrun's per-process variables are read (the one documented exception).
LAUNCHER_MODULES = {"eto_assets/training/common.py", "eto_assets/training/launch.py"}
# (file, function) that copies the whole environment into a child process's ``env=`` (a subprocess
# must inherit PATH and the rest); only whole-environment copies are allowed there.
CHILD_ENVIRONMENTS: dict[tuple[str, str], str] = {}
# (file, function) whose owner has not yet moved it onto the settings readers, still reading or writing
# os.environ. Each entry carries a "TODO(<file>): remove once ..." comment and goes with the code
# (test_allow_lists_hold_no_stale_entries fails on a stale one). Empty since jobs/run.py uses
# settings.dagster_home(home) and settings.use_dagster_home(path).
OWNED_ELSEWHERE: dict[tuple[str, str], str] = {}
# Modules that call offline_environment() when imported: entry points only, never a library module.
CHANGES_ENVIRONMENT_AT_IMPORT: dict[str, str] = {
    # Dagster imports the code location as its main: the offline variables must be set before this
    # module's imports load transformers and MLflow (huggingface_hub reads HF_HUB_OFFLINE at import).
    "eto_assets/definitions.py": "the code location's entry point",
}
ENV_ATTRIBUTES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
WRITES = {"setdefault", "pop", "popitem", "update", "clear", "__setitem__", "__delitem__"}
COPIES = {"copy", "items", "keys", "values", "__iter__"}


# ------------------------------------------------------------------ the README table


def readme_table() -> list[tuple[str, str]]:
    """(variable, default cell) of every row of the README's ``## Settings`` table, in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return [
        (name, default.strip())
        for name, default in re.findall(r"^\| `([A-Z_][A-Z0-9_]*)` \| ([^|]+) \|", section, re.MULTILINE)
    ]


def readme_defaults() -> dict[str, str]:
    return dict(readme_table())


def test_readme_lists_each_variable_once():
    names = [name for name, _ in readme_table()]
    assert len(names) == len(set(names)), f"listed twice: {sorted({n for n in names if names.count(n) > 1})}"


def test_every_setting_is_documented_with_its_default():
    documented = readme_defaults()
    for name, setting in SETTINGS.items():
        assert name in documented, f"{name} is missing from the README's settings table"
        if setting.default is None:
            assert documented[name].startswith("unset"), f"{name}: the README gives a default, SETTINGS none"
        else:
            assert documented[name] == f"`{setting.default}`", name


def test_every_documented_variable_is_a_setting_with_that_default():
    for name, default in readme_table():
        assert name in SETTINGS, f"the README documents {name}, which config/settings.py does not read"
        if default.startswith("unset"):
            assert SETTINGS[name].default is None, f"{name}: the README says unset, SETTINGS has a default"
        else:
            assert default == f"`{SETTINGS[name].default}`", name


# ------------------------------------------------------------------ who reads the environment


@dataclass(frozen=True)
class EnvUse:
    path: str  # relative to the repository
    line: int
    scope: str  # enclosing function ("Class.method"), "<module>" or "<main>" (an ``if __name__`` block)
    kind: str  # read | write | copy
    key: str | None  # the variable, when a constant names it


def _os_names(tree: ast.Module) -> tuple[set[str], dict[str, str]]:
    """Names bound to the ``os`` module, and names bound to ``os.environ``/``os.getenv``/... ."""
    modules, members = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            members |= {a.asname or a.name: a.name for a in node.names if a.name in ENV_ATTRIBUTES}
    return modules, members


def _constant(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _classify(node: ast.AST, member: str, parents: dict[ast.AST, ast.AST]) -> tuple[str, str | None]:
    """What the code does with ``os.<member>`` at ``node``: read, write or copy, and which variable."""
    parent = parents.get(node)
    if member in ("putenv", "unsetenv"):
        return "write", _constant(parent.args[0]) if isinstance(parent, ast.Call) and parent.args else None
    if member in ("getenv", "getenvb"):
        return "read", _constant(parent.args[0]) if isinstance(parent, ast.Call) and parent.args else None
    if isinstance(parent, ast.Attribute):  # os.environ.<method>(...)
        call = parents.get(parent)
        key = _constant(call.args[0]) if isinstance(call, ast.Call) and call.args else None
        if parent.attr in WRITES:
            return "write", key
        if parent.attr in COPIES:
            return "copy", None
        return "read", key
    if isinstance(parent, ast.Subscript):
        return ("read" if isinstance(parent.ctx, ast.Load) else "write"), _constant(parent.slice)
    if isinstance(parent, ast.Compare):
        return "read", _constant(parent.left)
    if isinstance(parent, ast.Dict) or (
        isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "dict"
    ):
        return "copy", None  # {**os.environ, ...} or dict(os.environ)
    return "read", None  # handed on whole: whoever gets it reads any variable


def _is_main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``: runs only when the file is the entry point, never on import."""
    test = getattr(node, "test", None)
    return (
        isinstance(node, ast.If)
        and isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and [_constant(c) for c in test.comparators] == ["__main__"]
    )


def _scopes(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node's enclosing scope: a function's qualified name, ``<main>`` or ``<module>``."""
    scope_of: dict[ast.AST, str] = {}

    def visit(node: ast.AST, scope: str, names: tuple[str, ...]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # decorators, defaults and annotations run where the function is defined; the body when called
            inner = ".".join(names)
            for child in ast.iter_child_nodes(node):
                in_body = child in node.body
                scope_of[child] = inner if in_body else scope
                visit(child, inner if in_body else scope, names if in_body else names[:-1])
            return
        for child in ast.iter_child_nodes(node):
            child_scope, child_names = scope, names
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                child_names = (*names, child.name)  # a class body runs at definition: same scope
            elif scope == "<module>" and _is_main_block(child):
                child_scope = "<main>"
            scope_of[child] = child_scope
            visit(child, child_scope, child_names)

    visit(tree, "<module>", ())
    return scope_of


def environment_uses(path: Path, root: Path = REPO) -> list[EnvUse]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules, members = _os_names(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    scopes = _scopes(tree)
    rel = path.relative_to(root).as_posix()
    uses = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENV_ATTRIBUTES
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            member = node.attr
        elif isinstance(node, ast.Name) and node.id in members:
            member = members[node.id]
        else:
            continue
        kind, key = _classify(node, member, parents)
        uses.append(EnvUse(rel, node.lineno, scopes.get(node, "<module>"), kind, key))
    return uses


def offline_calls_at_import(path: Path) -> list[int]:
    """Lines calling ``offline_environment()`` that run when the module is imported."""
    tree = ast.parse(path.read_text(), filename=str(path))
    scopes = _scopes(tree)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", None)) == "offline_environment"
        and scopes.get(node) == "<module>"
    ]


def scanned_files() -> list[Path]:
    return sorted(p for top in SCANNED for p in (REPO / top).rglob("*.py"))


def violations(use: EnvUse) -> str | None:
    """Why ``use`` is not allowed (None when it is)."""
    where = f"{use.path}:{use.line} ({use.scope})"
    if use.kind == "write" and use.scope == "<module>":
        return f"{where} changes os.environ[{use.key!r}] at import"
    if use.path == SETTINGS_MODULE:
        return None
    if use.path in LAUNCHER_MODULES and use.kind == "read" and use.key in LAUNCHER_VARIABLES:
        return None
    if use.kind == "copy" and (use.path, use.scope) in CHILD_ENVIRONMENTS:
        return None
    if (use.path, use.scope) in OWNED_ELSEWHERE:
        return None
    what = f"os.environ[{use.key!r}]" if use.key else "os.environ"
    return f"{where} {use.kind}s {what}: read it through {SETTINGS_MODULE} (a typed reader)"


def test_only_the_settings_module_reads_the_environment():
    found = [v for f in scanned_files() for v in map(violations, environment_uses(f)) if v]
    assert not found, "\n".join(found)


def test_allow_lists_hold_no_stale_entries():
    """An entry outlives its code only by mistake: every allow-listed place still needs it."""
    uses = {(u.path, u.scope) for f in scanned_files() for u in environment_uses(f)}
    stale = [
        f"{path} ({scope})"
        for path, scope in {*CHILD_ENVIRONMENTS, *OWNED_ELSEWHERE}
        if (path, scope) not in uses
    ]
    stale += [
        path
        for path in CHANGES_ENVIRONMENT_AT_IMPORT
        if not (REPO / path).is_file() or not offline_calls_at_import(REPO / path)
    ]
    assert not stale, f"allow-list entries no longer needed, remove them: {stale}"


def test_no_module_changes_the_environment_when_imported():
    found = [
        f"{rel}:{line} calls offline_environment() at import: call it from main / `if __name__ == '__main__'`"
        for f in scanned_files()
        if (rel := f.relative_to(REPO).as_posix()) not in CHANGES_ENVIRONMENT_AT_IMPORT
        for line in offline_calls_at_import(f)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\nx = os.environ.get('HOME')", ("read", "HOME", "<module>")),
        ("from os import getenv as g\ndef f():\n    return g('X')", ("read", "X", "f")),
        ("import os as o\nclass C:\n    def m(self):\n        o.environ['Y'] = '1'", ("write", "Y", "C.m")),
        (
            "import os\nif __name__ == '__main__':\n    os.environ.setdefault('Z', '1')",
            ("write", "Z", "<main>"),
        ),
        ("import os\ndef f():\n    return {**os.environ, 'A': '1'}", ("copy", None, "f")),
        ("import os\n@d(os.getenv('D'))\ndef f(x=1):\n    return x", ("read", "D", "<module>")),
        ("import os\nclass C:\n    x = os.environ['C']", ("read", "C", "<module>")),
    ],
)
def test_the_scan_sees_every_form(tmp_path, source, expected):
    """The scanner itself: each way of touching the environment is found, classified and placed
    (a decorator or a class body runs at import, a function body when called)."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    (use,) = environment_uses(path, tmp_path)
    assert (use.kind, use.key, use.scope) == expected


# ------------------------------------------------------------------ importing changes nothing

PROBE = """
import importlib, json, os, sys
before = dict(os.environ)
for name in sys.argv[1:]:
    if name == "--offline":
        from eto_assets.config.settings import offline_environment
        offline_environment()
    else:
        importlib.import_module(name)
after = dict(os.environ)
print(json.dumps(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))))
"""


def changed_by_importing(*modules: str) -> list[str]:
    """Names (never values) of the variables that importing ``modules`` in a fresh interpreter changed.
    The offline variables are removed first, so setting one is seen (this test process has them)."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENVIRONMENT}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [sys.executable, "-c", PROBE, *modules]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_settings_the_real_model_and_the_backends_changes_no_environment():
    modules = ("eto_assets.config.settings", "eto_assets.models.real_model", "eto_assets.agent.backends")
    assert changed_by_importing(*modules) == []


def test_the_import_probe_sees_a_change():
    assert changed_by_importing("eto_assets.config.settings", "--offline") == sorted(OFFLINE_ENVIRONMENT)
