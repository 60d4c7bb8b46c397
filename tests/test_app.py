"""The control room starts, shows live values, and quits (Textual Pilot, real embedded stores)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Footer, Header, Static

from bptwin.screens.dashboard import DashboardScreen
from bptwin.screens.value_table import ValueTable
from bptwin.tui.app import BptwinApp
from bptwin.tui.settings import Settings


def embedded_settings(data_dir: Path, source: str = "none", speed: float = 0.0) -> Settings:
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.acquisition.source = source  # type: ignore[assignment]
    settings.acquisition.speed = speed
    settings.ui.refresh_s = 0.2
    return settings


async def test_app_starts_with_header_footer_and_dashboard_then_quits(tmp_path: Path) -> None:
    app = BptwinApp(embedded_settings(tmp_path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert app.screen.query_one(Header) is not None
        assert app.screen.query_one(Footer) is not None
        assert "reactor R1" in app.screen.sub_title
        table = app.screen.query_one("#current-values", ValueTable)
        assert table.row_count >= 19
        await pilot.press("q")
        for _ in range(100):  # the station stops in a worker, then the app exits
            if app.return_value is not None:
                break
            await pilot.pause(0.1)
    assert app.return_value == 0
    assert (tmp_path / "notebook.sqlite").exists()


@pytest.mark.slow
async def test_dashboard_shows_values_from_a_fast_simulated_batch(tmp_path: Path) -> None:
    app = BptwinApp(embedded_settings(tmp_path, source="simulated", speed=600.0))
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one("#current-values", ValueTable)
        for _ in range(50):
            await pilot.pause(0.2)
            if table.cell("ph", "value") != "—":
                break
        value = table.cell("ph", "value")
        assert value != "—"
        assert 3.0 < float(value) < 8.0
        # The shadow's windows and the shipped model's prediction reach the process panel.
        panel = app.screen.query_one("#process", Static)
        for _ in range(100):
            if "OD600 predicted" in str(panel.content):
                break
            await pilot.pause(0.2)
        text = str(panel.content)
        assert "OD600 predicted" in text and "model od600-" in text
        assert "OUR" in text and "CER" in text
        await pilot.press("q")
