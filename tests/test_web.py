"""`bptwin web` in a real browser: the server started as a process, headless Chromium driven over
the DevTools protocol. The dashboard renders in the page, and a viewer's keystrokes cannot write
(threat: a browser viewer writes); a client outside [web] allowed_networks is turned away (threat:
an exposed port)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bptwin.eln.services import NotebookService
from bptwin.tui.settings import Settings
from tests.browser import (
    DevTools,
    chromium_or_skip,
    chromium_page,
    not_blank,
    start_web,
    stop,
    watch_script,
    write_web_config,
)
from tests.fixtures.servers import free_port
from tests.test_app_navigation import notebook_with_batch

chromium_or_skip("tests/test_web.py")


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[int, Settings]]:
    """`bptwin web` on a free port, on a notebook with batch 17 running on R1."""
    settings = Settings()
    settings.station.data_dir = tmp_path / "data"
    notebook_with_batch(settings)
    port = free_port()
    config = write_web_config(tmp_path / "bptwin.toml", settings.station.data_dir, port)
    server = start_web(config, port)
    try:
        yield port, settings
    finally:
        stop(server)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    """Headless Chromium on about:blank, its page attached over the DevTools protocol."""
    async with chromium_page(tmp_path / "chromium") as page:
        yield page


async def test_the_dashboard_renders_in_chromium_and_a_viewer_cannot_write(
    station: tuple[int, Settings], browser: DevTools, tmp_path: Path
) -> None:
    port, settings = station
    notebook = NotebookService.from_url(settings.notebook_url())
    notes_before = notebook.notes.list_notes(17)
    await browser.send("Page.addScriptToEvaluateOnNewDocument", source=watch_script(["R1"]))
    await browser.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
    # textual-serve's page, its terminal connected to a bptwin app process of its own.
    await browser.wait_drawn("Dashboard")
    # The terminal's own screen (what benchmarks/bench_web.py times) shows the reactor.
    assert (await browser.wait_painted(["R1"]))["R1"] > 0
    page = await browser.evaluate("document.documentElement.outerHTML")
    assert "bptwin control room" in page and 'class="textual-terminal' in page
    assert "-first-byte" in await browser.evaluate("document.body.className")
    await browser.wait_drawn("read-only (web)")
    await browser.wait_drawn("batch 17")  # the notebook is open and the batch found
    # The session kept its compiled modules in the data folder, for the sessions after it.
    assert any((settings.data_dir / "web-bytecode").rglob("*.pyc"))
    shot = await browser.send("Page.captureScreenshot", format="png")
    png = base64.b64decode(shot["data"])
    (tmp_path / "dashboard.png").write_bytes(png)
    assert not_blank(png)
    # The viewer opens the notes (o), types a note and saves it (ctrl+s): the notebook refuses.
    await browser.type_text("o")
    await browser.wait_drawn("Write a note")
    await browser.type_text("from the office browser")
    await browser.press_ctrl_s()
    await browser.wait_drawn("read-only web session")
    assert notebook.notes.list_notes(17) == notes_before


async def test_a_client_outside_the_allowed_networks_is_turned_away(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from bptwin.tui.commands.web import build_server
    from bptwin.tui.web_config import WebSettings

    server = build_server(
        WebSettings(allowed_networks=["10.9.0.0/16"]), "true", "127.0.0.1", free_port()
    )
    async with TestClient(TestServer(await server._make_app())) as client:
        response = await client.get("/")
        assert response.status == 403
        assert "allowed_networks" in await response.text()
    allowed = build_server(WebSettings(), "true", "127.0.0.1", free_port())
    async with TestClient(TestServer(await allowed._make_app())) as client:
        response = await client.get("/")
        assert response.status == 200
        assert "textual-terminal" in await response.text()
