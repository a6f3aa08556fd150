"""The import contract (pyproject.toml, [tool.importlinter]): layers only point down, bottom up
plan | config <- store <- activities <- workflows <- runtime <- starter (worker.py above them
all); the application never imports tests/ or bench/; and no two modules of a package import each
other, not even at function level or for type checking.

Like the replay gate (tests/test_replay.py), the contract is shown to bite: each mutant adds one
import to a copy of the tree, and the contract must fail on it, naming the import."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the tree at `root`, with only that tree on the path (no cache written)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contract_holds() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_worker_script_only_calls_the_runtime() -> None:
    """worker.py (a module, outside the contract's packages) is a thin script over runtime/."""
    tree = ast.parse((ROOT / "worker.py").read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == {"runtime.worker"}


def test_importing_the_plan_reads_no_file() -> None:
    """plan/spec.py reads the shipped plan when asked (shipped()), not when imported."""
    code = (
        "import plan.models, plan.rules, plan.incident, plan.records, plan.spec as spec\n"
        "import workflows.incident\n"
        "assert spec.shipped.cache_info().currsize == 0, 'the plan file was read at import'\n"
        "assert spec.shipped().version\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )


def _copy_tree(dest: Path) -> Path:
    """The contract's packages (Python files only) and pyproject.toml, copied to `dest`."""
    only_python = shutil.ignore_patterns("__pycache__", "*.html", "*.toml", "*.json", "static")
    for package in CONFIG["root_packages"]:
        shutil.copytree(ROOT / package, dest / package, ignore=only_python)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


# (module file, line added at its end, contract that must break, what the report must name)
MUTANTS = {
    "store imports starter (upward)": (
        "store/db.py",
        "from starter import incidents  # noqa",
        "Layers point down",
        "store.db -> starter.incidents",
    ),
    "workflows import the runtime (upward)": (
        "workflows/incident.py",
        "import runtime.client  # noqa",
        "Layers point down",
        "workflows.incident -> runtime.client",
    ),
    "plan imports config (siblings stand apart)": (
        "plan/rules.py",
        "from config.settings import get_settings  # noqa",
        "Layers point down",
        "plan.rules -> config.settings",
    ),
    "runtime imports starter (upward)": (
        "runtime/client.py",
        "def _late() -> None:\n    from starter.web import app  # noqa",
        "Layers point down",
        "runtime.client -> starter.web.app",
    ),
    "starter/web/pages.py imports app.py again (a cycle)": (
        "starter/web/pages.py",
        "def _late() -> None:\n    from starter.web.app import create_app  # noqa",
        "No import cycles",
        "starter.web",
    ),
    "the application imports the tests": (
        "starter/cli.py",
        "from tests import helpers  # noqa",
        "never imports the tests",
        "starter.cli -> tests.helpers",
    ),
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_tree(tmp_path_factory.mktemp("layers"))


def test_the_unmutated_copy_passes(tree: Path) -> None:
    """The copy the mutants start from keeps the contract, so a mutant's failure is its own."""
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_contract_fails_on_the_mutant(tree: Path, mutant: str) -> None:
    path, line, contract, named = MUTANTS[mutant]
    target = tree / path
    original = target.read_text()
    target.write_text(original + "\n\n" + line + "\n")
    try:
        result = lint_imports(tree)
    finally:
        target.write_text(original)
    assert result.returncode != 0, f"{mutant}: the contract passed\n{result.stdout}"
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert named in broken, result.stdout
