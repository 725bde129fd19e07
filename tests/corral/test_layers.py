"""The layers hold: corral on agents on knowledge on beads on workspace.

import-linter checks the contract in pyproject.toml; an import tucked into a
function would hide a dependency from a reader (and a cycle from the layers),
so the project's own packages are imported at module level only, except in an
AppConfig.ready(), the one place Django wants them late.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("corral", "corral_client", "agents", "knowledge", "beads", "workspace")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_the_import_linter_contracts_are_kept():
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(f"lint-imports failed:\n{done.stdout}{done.stderr}", pytrace=False)


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                yield path


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(node, path):
    """The absolute names an Import or ImportFrom node brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        return [node.module]
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - (node.level - 1)]
    return [".".join([*base, node.module] if node.module else base)]


def is_ours(name):
    return name.split(".")[0] in PACKAGES


def late_imports(path):
    """(line, names) of each import of our packages not at module level, outside ready()."""
    found = []

    def visit(node, scopes):
        if isinstance(node, ast.Import | ast.ImportFrom) and scopes:
            names = [name for name in imported(node, path) if is_ours(name)]
            if names and not in_ready(scopes):
                found.append((node.lineno, names))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            scopes = [*scopes, node]
        for child in ast.iter_child_nodes(node):
            visit(child, scopes)

    def in_ready(scopes):
        return (
            path.name == "apps.py"
            and len(scopes) >= 2
            and isinstance(scopes[0], ast.ClassDef)
            and isinstance(scopes[1], ast.FunctionDef)
            and scopes[1].name == "ready"
        )

    visit(ast.parse(path.read_text(), str(path)), [])
    return found


def test_the_packages_are_imported_at_module_level_except_in_app_ready():
    late = [
        f"{path.relative_to(ROOT)}:{line}: {', '.join(names)}"
        for path in modules()
        for line, names in late_imports(path)
    ]
    assert not late, "imports of Corral's packages inside a function or class:\n" + "\n".join(late)


def test_the_check_sees_a_late_import_and_spares_ready(tmp_path):
    apps = tmp_path / "apps.py"
    apps.write_text(
        "from django.apps import AppConfig\n"
        "class C(AppConfig):\n"
        "    def ready(self):\n"
        "        from beads.models import Bead\n"
        "    def other(self):\n"
        "        import agents.moves.outcomes\n"
        "def f():\n"
        "    from workspace import config\n"
        "    import json\n"
    )
    assert late_imports(apps) == [(6, ["agents.moves.outcomes"]), (8, ["workspace"])]


def test_the_client_runs_without_django_or_corrals_apps():
    """`corral` runs on an agent's machine with plain Python: importing the CLI
    and asking for its help loads nothing of Django or of Corral's apps."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['corral', '--help']\n"
        "try:\n"
        "    runpy.run_module('corral_client.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "ours = {'django', 'ninja', 'corral', 'agents', 'knowledge', 'beads', 'workspace'}\n"
        "print(sorted(loaded & ours))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "usage: corral" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
