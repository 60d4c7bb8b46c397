"""The import arrows of docs/architecture.md: the import-linter contracts of pyproject.toml
(``make lint`` runs them too), and at import time in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("drivers", "twin", "eln", "database")


def fresh_import(script: str) -> dict[str, list[str]]:
    """Run ``script`` in a new interpreter; it prints one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_import_contracts_hold() -> None:
    """Layers, no textual in the core, no SQL or concrete notebook in the screens."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_core_imports_without_textual() -> None:
    """Import every core module in a fresh interpreter: textual must not come along."""
    report = fresh_import(f"""
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
""")
    assert "bptwin.database.reading" in report["imported"]
    assert report["ui"] == []


def test_the_app_shell_and_every_screen_import_without_sql() -> None:
    """The first frame never waits on SQLAlchemy: the screens see the notebook only through
    its protocol, and the notebook itself is opened in a worker."""
    report = fresh_import("""
import importlib, json, pkgutil, sys
import bptwin.screens
import bptwin.tui.app
names = ["bptwin.tui.app"]
for info in pkgutil.walk_packages(bptwin.screens.__path__, "bptwin.screens."):
    importlib.import_module(info.name)
    names.append(info.name)
sql = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "sqlmodel", "psycopg2"))
print(json.dumps({"imported": names, "sql": sql}))
""")
    assert "bptwin.screens.batch" in report["imported"]
    assert report["sql"] == []
