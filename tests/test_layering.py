"""The import arrows of docs/architecture.md, checked on the source and at import time."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDER = {"tui": "bptwin_tui"}  # installed name under bptwin. -> source folder, where they differ
OURS = {"tui", "screens", "drivers", "twin", "eln", "database"}
CORE = ("drivers", "twin", "eln", "database")

# package -> the packages of ours it may import
ALLOWED: dict[str, set[str]] = {
    "database": set(),
    "eln": {"database"},
    "twin": {"database"},
    "drivers": {"twin", "database"},
    "screens": {"eln", "twin", "database"},
    "tui": OURS,
}
# third-party modules a package must never import
FORBIDDEN: dict[str, set[str]] = {
    "database": {"textual"},
    "eln": {"textual"},
    "twin": {"textual"},
    "drivers": {"textual"},
    "screens": {"sqlalchemy", "sqlmodel", "psycopg2", "serial", "paho"},
}


def package_root(module: str) -> str:
    """``bptwin.twin.features`` -> ``twin``; a third-party module -> its top-level name."""
    parts = module.split(".")
    return parts[1] if parts[0] == "bptwin" and len(parts) > 1 else parts[0]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(package_root(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(package_root(node.module))
    return roots


def source_files(package: str) -> list[Path]:
    return sorted((ROOT / FOLDER.get(package, package)).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_follow_the_arrows(package: str) -> None:
    files = source_files(package)
    assert files, f"{package} has no source files"
    violations = []
    for path in files:
        roots = imported_roots(path)
        for root in sorted((roots & OURS) - ALLOWED[package] - {package}):
            violations.append(f"{path.relative_to(ROOT)} imports {root}")
        for root in sorted(roots & FORBIDDEN.get(package, set())):
            violations.append(f"{path.relative_to(ROOT)} imports {root}")
    assert not violations, "\n".join(violations)


def test_core_imports_without_textual() -> None:
    """Import every core module in a fresh interpreter: textual must not come along."""
    script = f"""
import importlib, json, pkgutil, sys
names = []
for package in {tuple("bptwin." + name for name in CORE)!r}:
    module = importlib.import_module(package)
    names.append(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if ".migrations." in info.name:
            continue
        importlib.import_module(info.name)
        names.append(info.name)
ui = sorted(m for m in sys.modules if m.split(".")[0] == "textual")
print(json.dumps({{"imported": names, "ui": ui}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "bptwin.database.reading" in report["imported"]
    assert report["ui"] == []
