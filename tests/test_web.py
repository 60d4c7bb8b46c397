"""`bptwin web` in a real browser: the server started as a process, headless Chromium driven over
the DevTools protocol. The dashboard renders in the page, and a viewer's keystrokes cannot write
(threat: a browser viewer writes); a client outside [web] allowed_networks is turned away (threat:
an exposed port)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bptwin.eln.services import NotebookService
from bptwin.tui.settings import Settings
from tests.fixtures.servers import free_port
from tests.test_app_navigation import notebook_with_batch

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
if CHROMIUM is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError(
            "CI: Debian's chromium is needed for tests/test_web.py (apt-get install chromium)"
        )
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )

# Records every byte the page's websocket receives, so the test can read what the app drew
# (xterm.js draws on a canvas: the text is not in the DOM).
RECORD_WEBSOCKET = """
(() => {
  const Native = window.WebSocket;
  window.__bptwin = [];
  const decoder = new TextDecoder();
  window.WebSocket = function (url, protocols) {
    const socket = protocols === undefined ? new Native(url) : new Native(url, protocols);
    socket.addEventListener("message", (event) => {
      if (event.data instanceof ArrayBuffer) window.__bptwin.push(decoder.decode(event.data));
      else if (typeof event.data === "string") window.__bptwin.push(event.data);
    });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""

DEADLINE_S = 120.0  # a loaded machine: an app process per session takes seconds to start


def wait_for_port(port: int, process: subprocess.Popen, deadline_s: float = DEADLINE_S) -> None:
    import socket

    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        if process.poll() is not None:
            raise AssertionError(f"bptwin web exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing answered on port {port}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[int, Settings]]:
    """`bptwin web` on a free port, on a notebook with batch 17 running on R1."""
    settings = Settings()
    settings.station.data_dir = tmp_path / "data"
    notebook_with_batch(settings)
    port = free_port()
    config = tmp_path / "bptwin.toml"
    config.write_text(
        f'[station]\ndata_dir = "{settings.station.data_dir}"\n'
        '[acquisition]\nsource = "none"\n'
        f"[web]\nport = {port}\nallow_writes = false\n",
        encoding="utf-8",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "bptwin.tui.cli", "--config", str(config), "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, server)
        yield port, settings
    finally:
        stop(server)


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands on one page."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.next_id = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.socket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=DEADLINE_S)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def drawn(self) -> str:
        """Everything the app sent to this page so far."""
        return await self.evaluate("(window.__bptwin || []).join('')") or ""

    async def wait_drawn(self, text: str) -> str:
        until = time.monotonic() + DEADLINE_S
        while time.monotonic() < until:
            drawn = await self.drawn()
            if text in drawn:
                return drawn
            await asyncio.sleep(0.25)
        raise AssertionError(f"{text!r} never drawn; the end of what was: {drawn[-2000:]!r}")

    async def type_text(self, text: str) -> None:
        """Keystrokes into the terminal, as a person types them (letters and spaces)."""
        await self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        for char in text:
            code, key_code = (
                ("Space", 32) if char == " " else (f"Key{char.upper()}", ord(char.upper()))
            )
            key = {"key": char, "code": code, "windowsVirtualKeyCode": key_code}
            await self.send("Input.dispatchKeyEvent", type="keyDown", text=char, **key)
            await self.send("Input.dispatchKeyEvent", type="keyUp", **key)

    async def press_ctrl_s(self) -> None:
        """ctrl+s (the notes screen saves a note of several lines with it)."""
        key = {"key": "s", "code": "KeyS", "windowsVirtualKeyCode": 83, "modifiers": 2}
        await self.send("Input.dispatchKeyEvent", type="rawKeyDown", **key)
        await self.send("Input.dispatchKeyEvent", type="keyUp", **key)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    """Headless Chromium on about:blank, its page attached over the DevTools protocol."""
    port = free_port()
    chromium = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--remote-debugging-port={port}",
            "--window-size=1280,800",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with aiohttp.ClientSession() as http:
            target = await page_target(http, port, chromium)
            async with http.ws_connect(target, max_msg_size=0) as socket:
                tools = DevTools(socket)
                await tools.send("Page.enable")
                await tools.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD_WEBSOCKET)
                yield tools
    finally:
        stop(chromium)


async def page_target(http: aiohttp.ClientSession, port: int, chromium: subprocess.Popen) -> str:
    until = time.monotonic() + DEADLINE_S
    while time.monotonic() < until:
        if chromium.poll() is not None:
            raise AssertionError(f"chromium exited with {chromium.returncode}")
        try:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                pages = [t for t in await response.json() if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("chromium's DevTools never answered")


async def test_the_dashboard_renders_in_chromium_and_a_viewer_cannot_write(
    station: tuple[int, Settings], browser: DevTools, tmp_path: Path
) -> None:
    port, settings = station
    notebook = NotebookService.from_url(settings.notebook_url())
    notes_before = notebook.notes.list_notes(17)
    await browser.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
    # textual-serve's page, its terminal connected to a bptwin app process of its own.
    await browser.wait_drawn("Dashboard")
    page = await browser.evaluate("document.documentElement.outerHTML")
    assert "bptwin control room" in page and 'class="textual-terminal' in page
    assert "-first-byte" in await browser.evaluate("document.body.className")
    await browser.wait_drawn("read-only (web)")
    await browser.wait_drawn("batch 17")  # the notebook is open and the batch found
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


def not_blank(png: bytes) -> bool:
    """True when the screenshot shows a drawn terminal: many colours, much of it not background."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16)
    if colours is None:
        return True  # more than 65536 colours: certainly not blank
    background = max(colours)[0]
    drawn = image.width * image.height - background
    return len(colours) > 16 and drawn > image.width * image.height // 20


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
