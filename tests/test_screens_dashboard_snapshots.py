"""Looks of the dashboard with a deterministic 12 h batch, at 80×24 and 160×45."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from types import MappingProxyType

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


def test_dashboard_snapshot_values_with_drift_at_80_columns(snap_compare) -> None:
    """The narrow dashboard's values view: the prediction panel's model line in drift, the
    three largest contributions under it, readable in 80 columns."""
    app, screen, history = dashboard_app(("R1",))

    async def fill(pilot: Pilot) -> None:
        await pilot.pause()
        screen.show_status(True)
        snapshot = snapshot_at(HOURS, ("R1",))
        drifted = replace(
            snapshot.predictions["R1"],
            drift="a sample is 18 % off the model (limit 4 %)",
            samples_used=1,
        )
        screen.show_snapshot(replace(snapshot, predictions=MappingProxyType({"R1": drifted})))
        screen.attach_history(history)
        await settled(pilot, screen)
        await pilot.press("t")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=fill)
