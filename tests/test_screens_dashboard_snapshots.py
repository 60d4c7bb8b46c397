"""Looks of the dashboard with a deterministic 12 h batch, at 80×24 and 160×45."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot

from tests.dashboard_batch import snapshot_at
from tests.test_screens_dashboard import HOURS, dashboard_app, settled


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clock times in the status strip are local: pin the zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("size", [(160, 45), (80, 24)], ids=["160x45", "80x24"])
def test_dashboard_snapshot(snap_compare, size: tuple[int, int]) -> None:
    app, screen, history = dashboard_app(("R1", "R2"))

    async def fill(pilot: Pilot) -> None:
        await pilot.pause()
        screen.show_status(True)
        screen.show_snapshot(snapshot_at(HOURS, ("R1", "R2")))
        screen.attach_history(history)
        await settled(pilot, screen)

    assert snap_compare(app, terminal_size=size, run_before=fill)
