"""Looks of the alarm screen with deterministic alarms, at 100×30 and 80×24."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from bptwin.screens.alarms import AlarmScreen
from tests.screens_harness import OPERATOR, ScreenHarness
from tests.test_screens_alarms import NOW, WARNING, do_low_engine


def alarm_app() -> ScreenHarness:
    engine = do_low_engine()
    engine.shelve(WARNING, OPERATOR, "probe recalibration", NOW + 1800, at=NOW)
    return ScreenHarness(lambda: AlarmScreen(engine, OPERATOR, reactor="R1", clock=lambda: NOW))


async def _settle(pilot: Pilot) -> None:
    await pilot.pause()


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_alarm_screen_snapshot(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(alarm_app(), terminal_size=size, run_before=_settle)
