"""The campaign screen (screens/campaign.py): the figures per phase against their targets and
the batches behind them, drawn from what the app's loader computed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from bptwin.eln.campaign_figures import UPTIME_CHANNELS, CampaignFigures, Uptime, summarise_campaign
from bptwin.eln.errors import NotebookError
from bptwin.screens.campaign import CampaignScreen
from tests.screens_harness import ScreenHarness, settle
from tests.test_campaign_figures import view as batch_view

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def figures() -> CampaignFigures:
    batches = [batch_view(1, "A"), batch_view(2, "A"), batch_view(3, "A")]
    batches += [batch_view(n, "B") for n in range(4, 9)] + [batch_view(9, "B", "running")]
    decisions = {1: "reject", 2: "accept", 3: "accept", 4: "accept", 5: "accept", 6: "reject"}
    decisions |= {7: "accept", 8: "accept"}
    day = 86_400.0
    uptimes = {n: Uptime(day * 0.99, day, UPTIME_CHANNELS) for n in range(1, 9)}
    uptimes[5] = Uptime(day * 0.70, day, UPTIME_CHANNELS, longest_gap_s=5400.0, gaps=2)
    return summarise_campaign(batches, decisions, uptimes, computed_at=T0 + timedelta(days=20))


def campaign_app(load=figures) -> ScreenHarness:
    return ScreenHarness(lambda: CampaignScreen(load))


async def test_phases_with_their_figures_and_the_batches_behind_them() -> None:
    app = campaign_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["A", "B", "all"]
        a_row = [str(cell) for cell in table.get_row_at(0)]
        assert a_row[1] == "3" and "66.7 % (2/3)" in a_row[2] and "BELOW TARGET" in a_row[2]
        b_row = [str(cell) for cell in table.get_row_at(1)]
        # B: 4 of 5 decided accepted = 80 % (met); uptime (4×99 % + 70 %) / 5 = 93.2 % (below).
        assert "80.0 % (4/5) met" in b_row[2] and "93.2 %" in b_row[3]
        detail = app.screen.query_one("#campaign-detail", Static)
        assert "Phase A" in str(detail.content) and "rejected: 1" in str(detail.content)
        await pilot.press("down")
        await pilot.pause()
        text = str(detail.content)
        assert "accepted: 4, 5, 7, 8" in text and "not ended: 9" in text
        assert "5 70.0 % (longest gap 90 min)" in text


async def test_a_notebook_error_is_said_on_the_status_line() -> None:
    def broken() -> CampaignFigures:
        raise NotebookError("notebook database unreachable")

    app = campaign_app(broken)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        status = app.screen.query_one("#campaign-status", Static)
        assert "unreachable" in str(status.content) and status.has_class("-error")


async def _settle(pilot: Pilot) -> None:
    await settle(pilot)


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_campaign_screen_snapshot(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(campaign_app(), terminal_size=size, run_before=_settle)
