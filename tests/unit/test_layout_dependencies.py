"""Every package of the workspace declares, in its own pyproject.toml, each third-party module it
imports (issue 14: installing one service installs what it needs and no other service).

Reads the source with ``ast`` (imports anywhere in a module, including under ``TYPE_CHECKING``
and inside functions) and maps modules to distributions with ``importlib.metadata``; the
dependency between our own packages is checked by import-linter (pyproject.toml)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    ROOT / "shared",
    ROOT / "adapters",
    ROOT / "cli",
    *sorted(p for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists()),
]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(package: Path) -> set[str]:
    """The distributions ``package`` declares, and itself."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0] for spec in project["dependencies"]}
    return {_normal(name) for name in names | {project["name"]}}


def _imported(package: Path) -> set[str]:
    found: set[str] = set()
    for path in (package / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names}


@cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> distributions: the installed ones, and ours (installed editable, so
    ``importlib.metadata`` does not list their modules)."""
    found = dict(packages_distributions())
    for package in PACKAGES:
        name = tomllib.loads((package / "pyproject.toml").read_text())["project"]["name"]
        for module in (package / "src").iterdir():
            if module.is_dir() and module.name.startswith("orchestrator_"):
                found[module.name] = [name]
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_each_imported_distribution_is_declared(package: Path) -> None:
    distributions = _distributions()
    declared = _declared(package)
    missing = []
    for module in sorted(_imported(package)):
        names = distributions.get(module, [])
        assert names, f"{package.name}: no installed distribution provides {module!r}"
        if not {_normal(name) for name in names} & declared:
            missing.append(f"{module} ({', '.join(names)})")
    assert not missing, f"{package.name}/pyproject.toml does not declare: {', '.join(missing)}"


def test_every_workspace_package_is_checked() -> None:
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    expected = {
        p.parent for pattern in members["members"] for p in ROOT.glob(f"{pattern}/pyproject.toml")
    }
    assert expected == set(PACKAGES)
