"""`bptwin web` as a process and headless Chromium driven over the DevTools protocol.

Shared by the browser tests (tests/test_web.py, tests/test_web_nginx.py) and the browser
benchmark (benchmarks/bench_web.py), so they drive the same page the same way.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.fixtures.servers import free_port

DEADLINE_S = 120.0  # a loaded machine: an app process per session takes seconds to start


def chromium_binary() -> str | None:
    """Debian's chromium, if installed."""
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def chromium_or_skip(module: str) -> str:
    """Chromium for a test module: skipped without it locally, an error under CI."""
    import pytest

    found = chromium_binary()
    if found is not None:
        return found
    if os.environ.get("CI") == "true":
        raise RuntimeError(
            f"CI: Debian's chromium is needed for {module} (apt-get install chromium)"
        )
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )
    raise AssertionError("unreachable")  # pytest.skip raises


# Runs in the page before textual.js. It records every byte the page's websocket receives (so a
# test can read what the app sent), and it catches the xterm.js Terminal textual.js creates
# (``this.terminal = new Terminal(...)``) to note when each watched phrase is first on the
# screen after a render: xterm.js draws on a canvas, so the text is not in the DOM, and its
# onRender event fires once the rows are drawn. Times are performance.now(): milliseconds since
# the navigation started.
RECORD_PAGE = """
(() => {
  const Native = window.WebSocket;
  window.__bptwin = [];
  window.__bptwinTimes = {};
  window.__bptwinWatch = window.__bptwinWatch || [];
  window.__bptwinPainted = {};
  const decoder = new TextDecoder();
  window.WebSocket = function (url, protocols) {
    const socket = protocols === undefined ? new Native(url) : new Native(url, protocols);
    window.__bptwinTimes.websocketCreated = performance.now();
    socket.addEventListener("open", () => {
      window.__bptwinTimes.websocketOpen = performance.now();
    });
    socket.addEventListener("message", (event) => {
      if (window.__bptwinTimes.firstMessage === undefined) {
        window.__bptwinTimes.firstMessage = performance.now();
      }
      if (event.data instanceof ArrayBuffer) window.__bptwin.push(decoder.decode(event.data));
      else if (typeof event.data === "string") window.__bptwin.push(event.data);
    });
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });

  const screenText = (terminal) => {
    const buffer = terminal.buffer.active;
    const rows = [];
    for (let y = 0; y < terminal.rows; y++) {
      const line = buffer.getLine(buffer.viewportY + y);
      rows.push(line ? line.translateToString(true) : "");
    }
    return rows.join("\\n");
  };
  Object.defineProperty(Object.prototype, "terminal", {
    configurable: true,
    set(value) {
      Object.defineProperty(this, "terminal", {
        value, writable: true, configurable: true, enumerable: true,
      });
      if (value && typeof value.onRender === "function" && value.buffer) {
        window.__bptwinTerminal = value;
        value.onRender(() => {
          const pending = window.__bptwinWatch.filter((p) => !(p in window.__bptwinPainted));
          if (!pending.length) return;
          const now = performance.now();
          const text = screenText(value);
          for (const phrase of pending) {
            if (text.includes(phrase)) window.__bptwinPainted[phrase] = now;
          }
        });
      }
    },
  });
})();
"""


def watch_script(phrases: Sequence[str]) -> str:
    """An init script naming the phrases whose first painted frame RECORD_PAGE times."""
    return f"window.__bptwinWatch = {json.dumps(list(phrases))};"


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
        drawn = ""
        while time.monotonic() < until:
            drawn = await self.drawn()
            if text in drawn:
                return drawn
            await asyncio.sleep(0.25)
        raise AssertionError(f"{text!r} never drawn; the end of what was: {drawn[-2000:]!r}")

    async def wait_painted(self, phrases: Sequence[str]) -> dict[str, float]:
        """Milliseconds from navigation to the first rendered frame showing each phrase.

        The phrases must have been named with ``watch_script`` before the navigation.
        """
        until = time.monotonic() + DEADLINE_S
        painted: dict[str, float] = {}
        while time.monotonic() < until:
            painted = await self.evaluate("window.__bptwinPainted || {}") or {}
            if all(phrase in painted for phrase in phrases):
                return {phrase: float(painted[phrase]) for phrase in phrases}
            await asyncio.sleep(0.05)
        raise AssertionError(f"never painted: {[p for p in phrases if p not in painted]}")

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


@asynccontextmanager
async def chromium_page(profile: Path, *extra_args: str) -> AsyncIterator[DevTools]:
    """Headless Chromium on about:blank, its page attached over the DevTools protocol."""
    chromium = chromium_binary()
    if chromium is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    port = free_port()
    process = subprocess.Popen(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "--window-size=1280,800",
            *extra_args,
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with aiohttp.ClientSession() as http:
            target = await page_target(http, port, process)
            async with http.ws_connect(target, max_msg_size=0) as socket:
                tools = DevTools(socket)
                await tools.send("Page.enable")
                await tools.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD_PAGE)
                yield tools
    finally:
        stop(process)


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


def write_web_config(
    path: Path, data_dir: Path, port: int, *, source: str = "none", web: str = ""
) -> Path:
    """A settings file for `bptwin web` on ``port``; ``web`` adds lines to its [web] section."""
    path.write_text(
        f'[station]\ndata_dir = "{data_dir}"\n'
        f'[acquisition]\nsource = "{source}"\n'
        f"[web]\nport = {port}\nallow_writes = false\n{web}",
        encoding="utf-8",
    )
    return path


def start_web(config: Path, port: int) -> subprocess.Popen:
    """`bptwin --config CONFIG web` in a process group of its own, once its port answers."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bptwin.tui.cli", "--config", str(config), "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, server, "bptwin web")
    except BaseException:
        stop(server)
        raise
    return server


def wait_for_port(
    port: int, process: subprocess.Popen, name: str, deadline_s: float = DEADLINE_S
) -> None:
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        if process.poll() is not None:
            said = process.stdout.read().decode(errors="replace")[-2000:] if process.stdout else ""
            raise AssertionError(f"{name} exited with {process.returncode}: {said}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"{name}: nothing answered on port {port}")


def stop(process: subprocess.Popen) -> None:
    """End a process started in a session of its own, and everything it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
