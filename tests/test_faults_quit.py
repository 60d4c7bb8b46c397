"""Quit never freezes the control room, even with a time-series server that does not answer.

The station stops in a worker: the screen says "Stopping…" and keeps taking keys while the
store gives up on a server that accepts connections but never replies (a black hole).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Static
from textual.worker import WorkerState

from bptwin.tui.app import BptwinApp
from bptwin.tui.settings import Settings


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port whose kernel accepts connections that nobody ever reads or answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


async def test_quit_with_a_store_that_does_not_answer_keeps_the_ui_responsive(
    tmp_path: Path, black_hole: int
) -> None:
    settings = Settings()
    settings.station.data_dir = tmp_path
    settings.acquisition.speed = 60.0
    settings.timeseries.backend = "influxdb"
    settings.timeseries.url = f"http://127.0.0.1:{black_hole}"
    settings.timeseries.api_version = "1"
    settings.ui.refresh_s = 0.2
    app = BptwinApp(settings)
    async with app.run_test(size=(120, 34)) as pilot:
        for _ in range(300):  # the station's start waits for the silent server's ping
            if app.station is not None and app.station.snapshot().readings_total > 50:
                break
            await pilot.pause(0.1)
        assert app.station is not None
        await pilot.press("q")
        assert app.stopping
        stopping = [worker for worker in app.workers if worker.name == "stopping"]
        assert stopping and stopping[0].state in (WorkerState.PENDING, WorkerState.RUNNING)
        # The UI still takes keys and draws while the store waits for its server.
        theme = app.theme
        await pilot.press("ctrl+t")
        assert app.theme != theme
        assert stopping[0].state in (WorkerState.PENDING, WorkerState.RUNNING)
        strip = app.screen.query_one("#status-strip", Static)
        assert "Stopping…" in str(strip.content)
        await pilot.press("q")  # a second quit while stopping does nothing twice
        for _ in range(600):
            if stopping[0].is_finished:
                break
            await pilot.pause(0.1)
        assert stopping[0].is_finished  # it asked the app to exit: it ends as the app does
        await pilot.pause(0.1)
    assert app.return_value == 0
    # Nothing lost: what the server never took waits in the store's spool on disk.
    assert (tmp_path / "spool" / "influx.sqlite").exists()
