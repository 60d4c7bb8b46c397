"""The export dialog (Pilot): the real export of a recorded batch runs in its worker with a
progress bar, files appear, errors are shown in plain words and a cancel writes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import ProgressBar, Static

from bptwin.database.migrate import upgrade
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.services import NotebookService
from bptwin.screens.export import ExportScreen
from bptwin.tui.export import ExportedFile, ExportError, ExportResult, export_batch
from bptwin.tui.settings import Settings
from tests.export_batches import BATCH, record_batch
from tests.screens_harness import ScreenHarness


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings on a data folder holding a recorded batch (SQLite + embedded store)."""
    data_dir = tmp_path_factory.mktemp("export_screen")
    settings = Settings(station={"data_dir": data_dir})
    upgrade(settings.notebook_url())
    notebook = NotebookService.from_url(settings.notebook_url())
    with EmbeddedStore(settings.timeseries_path()) as store:
        record_batch(notebook, store)
    notebook.engine.dispose()
    return settings


async def settle(pilot: Pilot, screen: ExportScreen, timeout: float = 120.0) -> None:
    """Let the app run (the UI stays live) until the export finished or failed."""
    deadline = time.monotonic() + timeout
    while screen.running and time.monotonic() < deadline:
        await pilot.pause(0.1)
    await pilot.pause()
    assert not screen.running, "export did not finish in time"


def outcome(screen: ExportScreen) -> str:
    return str(screen.query_one("#export-outcome", Static).content)


async def test_the_real_export_runs_in_a_worker_and_writes_the_files(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    reported: list[float] = []  # what the export told the screen, in the worker's thread

    def run(progress: Callable[[float, str], None]) -> object:
        def told(fraction: float, text: str) -> None:
            reported.append(fraction)
            progress(fraction, text)

        return export_batch(settings, BATCH, out, ("html", "md"), progress=told)

    screen = ExportScreen(f"Export batch {BATCH}", run)
    app = ScreenHarness(lambda: screen)
    async with app.run_test() as pilot:
        await pilot.pause()
        deadline = time.monotonic() + 120
        while screen.running and time.monotonic() < deadline:
            await pilot.pause(0.05)  # the UI thread keeps answering while the worker exports
        await settle(pilot, screen)
        # The bar was moved step by step (how many steps the UI drew depends on the machine's
        # load: a fast export may finish between two frames).
        assert len(set(reported)) >= 2 and reported == sorted(reported)
        assert screen.query_one(ProgressBar).percentage == 1.0
        assert "Exported" in outcome(screen) and f"batch {BATCH}" in outcome(screen)
        assert (out / f"batch_{BATCH:02d}_report.html").is_file()
        assert (out / f"batch_{BATCH:02d}_report.md").is_file()
        assert (out / "dataset" / "manifest.json").is_file()
        assert (out / "export.json").is_file()
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen
    assert screen.result is not None and screen.result.out_dir == out


async def test_a_failing_export_is_shown_plainly_and_the_app_keeps_running(
    settings: Settings, tmp_path: Path
) -> None:
    run = partial(export_batch, settings, 99, tmp_path / "out", ("html",))
    screen = ExportScreen("Export batch 99", run)
    app = ScreenHarness(lambda: screen)
    async with app.run_test() as pilot:
        await settle(pilot, screen)
        assert "Export failed" in outcome(screen)
        assert "there is no batch 99" in outcome(screen)
        assert "Traceback" not in outcome(screen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not screen and app.is_running
    assert screen.result is None
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


async def test_cancel_stops_the_export_and_writes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    started = threading.Event()

    def run(progress: object) -> object:
        started.set()
        return export_batch(settings, BATCH, out, ("html", "pdf"), progress)  # type: ignore[arg-type]

    screen = ExportScreen(f"Export batch {BATCH}", run)
    app = ScreenHarness(lambda: screen)
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("escape")  # while it runs: cancel, not close
        await settle(pilot, screen)
        assert app.screen is screen
        assert "Cancelled" in outcome(screen)
        await pilot.press("escape")  # now it closes
        await pilot.pause()
        assert app.screen is not screen
    assert started.is_set()
    assert not (out / f"batch_{BATCH:02d}_report.html").exists()
    assert not [p for p in out.rglob("*") if p.is_file()]


def finished_export(_progress: object) -> ExportResult:
    """A fixed result (the real export is exercised above): the snapshot must not change."""
    out = Path("/data/exports/batch_16")
    report = ExportedFile(out / "batch_16_report.html", 740_002, "0" * 64, "report-html")
    return ExportResult(16, out, [report], verdict="pass", seconds=12.3, rows=84_706)


def failing_export(_progress: object) -> ExportResult:
    raise ExportError("notebook.url: cannot reach the database at 127.0.0.1:5432")


async def _until_done(pilot: Pilot) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, ExportScreen)
    await settle(pilot, screen, timeout=10.0)


@pytest.mark.parametrize("run", [finished_export, failing_export], ids=["done", "failed"])
def test_export_screen_snapshot(snap_compare, run: object) -> None:
    app = ScreenHarness(lambda: ExportScreen("Export batch 16", run))  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=(80, 24), run_before=_until_done)
