"""One installed namespace: a wheel of bptwin holds bptwin/ and nothing else at the top level.

The source folders keep their names (bptwin_tui/, screens/, drivers/, twin/, eln/, database/) and
are installed as bptwin.tui, bptwin.screens, ... A top-level ``database`` package from bptwin would
collide with any other wheel that ships one; these tests keep that from coming back.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALLED_AS = {
    "bptwin_tui": "bptwin/tui",
    "screens": "bptwin/screens",
    "drivers": "bptwin/drivers",
    "twin": "bptwin/twin",
    "eln": "bptwin/eln",
    "database": "bptwin/database",
}
CODE_FOLDERS = (*INSTALLED_AS, "tests", "benchmarks")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (path,) = out.glob("bptwin-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.slow
def test_wheel_installs_nothing_but_bptwin_at_the_top_level(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert tops - dist_info == {"bptwin"}
    assert not any(name == "bptwin/__init__.py" for name in wheel.namelist()), (
        "bptwin is a namespace: an __init__.py at its root would make it a regular package"
    )


@pytest.mark.slow
def test_wheel_holds_every_source_module_and_resource(wheel: zipfile.ZipFile) -> None:
    """A package folder missing from pyproject's list would silently drop out of the wheel."""
    names = set(wheel.namelist())
    missing = []
    for folder, installed in INSTALLED_AS.items():
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".tcss", ".mako"} or "__pycache__" in path.parts:
                continue
            target = f"{installed}/{path.relative_to(ROOT / folder).as_posix()}"
            if target not in names:
                missing.append(target)
    assert not missing, f"not in the wheel: {missing}"


def test_no_code_imports_a_source_folder_by_its_folder_name() -> None:
    """``import screens`` would load a second copy of the module beside ``bptwin.screens``."""
    stray = []
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    if module.split(".")[0] in INSTALLED_AS:
                        stray.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert not stray, "\n".join(stray)


def test_the_console_script_points_into_the_namespace() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'bptwin = "bptwin.tui.cli:main"' in pyproject


def test_the_repository_cites_no_file_outside_it() -> None:
    """Design notes outside the repository are not shipped: code and docs point into docs/."""
    # Spelled in parts, so that this guard does not itself name the notes it keeps out.
    notes = ("DOM" + "AIN", "DES" + "IGN", "PERFOR" + "MANCE", "STY" + "LE")
    outside = (*(f"{name}.md" for name in notes), "sha" + "red/")
    found = []
    for path in sorted(ROOT.rglob("*")):
        if path.suffix not in {".py", ".md", ".toml"} or not path.is_file():
            continue
        if {".venv", "build", ".git", "__snapshots__"} & set(path.relative_to(ROOT).parts):
            continue
        if path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(ROOT)} cites {name}" for name in outside if name in text]
    assert not found, "\n".join(found)


def test_every_notebook_module_imports_first_in_a_fresh_interpreter() -> None:
    """The notebook's modules import one another (models -> audit trail -> verification ->
    services): each must load when a program imports it before any other (``import
    bptwin.eln.audit`` alone once failed on a circular import that the suite's own import
    order hid)."""
    from concurrent.futures import ThreadPoolExecutor

    root = Path(__file__).resolve().parent.parent
    modules = sorted(f"bptwin.eln.{p.stem}" for p in (root / "eln").glob("*.py"))

    def load(module: str) -> tuple[str, int, str]:
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        return (
            module,
            done.returncode,
            done.stderr.strip().splitlines()[-1:][0] if done.stderr else "",
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [(m, err) for m, code, err in pool.map(load, modules) if code != 0]
    assert len(modules) > 30
    assert failed == []
