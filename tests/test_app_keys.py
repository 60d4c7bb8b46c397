"""Every key of the quickstart's key table, pressed on every screen of the real app.

The table in docs/quickstart.md is read here, so a key documented and not working (shadowed by
a screen's own binding, say) fails, and so does a key added to the table without a check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.screen import Screen

from bptwin.screens.acceptance import AcceptanceScreen
from bptwin.screens.alarms import AlarmHistoryScreen, AlarmScreen
from bptwin.screens.batch import BatchSetupScreen
from bptwin.screens.calibration import CalibrationHistoryScreen, CalibrationMenuScreen
from bptwin.screens.campaign import CampaignScreen
from bptwin.screens.dashboard import DashboardScreen
from bptwin.screens.deviations import DeviationFormScreen, DeviationsScreen
from bptwin.screens.notes import NotesScreen
from bptwin.screens.samples import SampleEntryScreen
from bptwin.tui.app import DESTINATIONS, BptwinApp
from tests.test_app_navigation import app_with_batch, wait_for

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")

QUICKSTART = Path(__file__).resolve().parent.parent / "docs" / "quickstart.md"

SCREEN_OF: dict[str, type[Screen]] = {
    "dashboard": DashboardScreen,
    "batch": BatchSetupScreen,
    "calibration": CalibrationMenuScreen,
    "alarms": AlarmScreen,
    "samples": SampleEntryScreen,
    "deviations": DeviationsScreen,
    "notes": NotesScreen,
    "acceptance": AcceptanceScreen,
    "campaign": CampaignScreen,
}
# Screens opened from another one: (destination, key pressed there, screen type).
SUB_SCREENS: dict[str, tuple[str, str, type[Screen]]] = {
    "alarm history": ("alarms", "h", AlarmHistoryScreen),
    "calibration history": ("calibration", "h", CalibrationHistoryScreen),
    "deviation form": ("deviations", "n", DeviationFormScreen),
}
# What the app does for the keys that do not open a screen (the action is recorded).
RECORDED_ACTIONS = {"e": "export_batch", "c": "confirm_control", "x": "stop_control", "q": "quit"}


def documented_keys() -> list[str]:
    """The keys of the first table under "## Keys" in docs/quickstart.md."""
    text = QUICKSTART.read_text(encoding="utf-8")
    section = text.split("## Keys", 1)[1]
    keys: list[str] = []
    in_table = False
    for line in section.splitlines():
        if line.startswith("| key"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("| ---"):
            first_cell = line.split("|")[1]
            keys += re.findall(r"`([^`]+)`", first_cell)
    return keys


def test_the_key_table_is_what_the_app_binds() -> None:
    keys = documented_keys()
    destinations = {d.key: d.name for d in DESTINATIONS}
    assert set(destinations) <= set(keys), "a screen key missing from docs/quickstart.md"
    checked = set(destinations) | set(RECORDED_ACTIONS) | {"ctrl+t", "ctrl+p", "escape"}
    assert set(keys) == checked, "a documented key this test does not check, or the reverse"


async def open_screen(app: BptwinApp, pilot, name: str) -> Screen:
    """Go to ``name`` (a destination or a sub-screen) and leave no field focused."""
    if name in SUB_SCREENS:
        parent, key, kind = SUB_SCREENS[name]
        await open_screen(app, pilot, parent)
        await pilot.press(key)
        await wait_for(pilot, lambda: isinstance(app.screen, kind), 200)
    else:  # going to a screen replaces the one shown (the dashboard stays below)
        await app.action_go(name)
        await wait_for(pilot, lambda: isinstance(app.screen, SCREEN_OF[name]), 200)
    await pilot.pause()  # the screen's on_mount focuses its first field: then take it away
    app.screen.set_focus(None)  # keys typed into a field go to the field, by design
    await pilot.pause()
    return app.screen


def expected_after_escape(name: str) -> type[Screen]:
    """A sub-screen goes back to the screen that opened it; the others to the dashboard."""
    return SCREEN_OF[SUB_SCREENS[name][0]] if name in SUB_SCREENS else DashboardScreen


@pytest.mark.slow
@pytest.mark.parametrize("screen_name", [*SCREEN_OF, *SUB_SCREENS])
async def test_every_documented_key_works_on_every_screen(screen_name: str, tmp_path: Path) -> None:
    app, _ = app_with_batch(tmp_path)
    recorded: list[str] = []

    def recorder(action: str) -> Callable[[], None]:
        def record() -> None:
            recorded.append(action)

        return record

    for action in RECORDED_ACTIONS.values():
        setattr(app, f"action_{action}", recorder(action))
    destinations = {d.key: d.name for d in DESTINATIONS}
    failures: list[str] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.batches.get("R1") == 17 and app.station is not None, 400)
        for key in documented_keys():
            await open_screen(app, pilot, screen_name)
            before = app.screen
            theme = app.theme
            recorded.clear()
            await pilot.press(key)
            await pilot.pause()
            if key in destinations:
                wanted = SCREEN_OF[destinations[key]]
                ok = await reached(pilot, lambda w=wanted: isinstance(app.screen, w))
                if ok and wanted is not DashboardScreen and before is not app.dashboard:
                    ok = app.screen is not before  # a new screen, not the one pressed on
            elif key in RECORDED_ACTIONS:
                ok = await reached(pilot, lambda k=key: recorded == [RECORDED_ACTIONS[k]])
            elif key == "ctrl+t":
                ok = app.theme != theme
            elif key == "ctrl+p":
                ok = await reached(pilot, lambda: isinstance(app.screen, CommandPalette))
                if ok:
                    await pilot.press("escape")
                    await pilot.pause()
            else:  # escape
                wanted_back = expected_after_escape(screen_name)
                ok = await reached(pilot, lambda w=wanted_back: isinstance(app.screen, w))
            if not ok:
                failures.append(f"{key!r} on {screen_name}: now {type(app.screen).__name__}")
        app.action_quit = BptwinApp.action_quit.__get__(app)  # the real quit, to stop cleanly
        await app.action_quit()
    assert not failures, failures


async def reached(pilot, condition: Callable[[], bool]) -> bool:
    try:
        await wait_for(pilot, condition, 100)
    except AssertionError:
        return False
    return True
