"""`bptwin web` in a browser: time to the first painted frame, and memory per browser session.

The station is `bptwin web` on the embedded defaults (SQLite notebook, simulated acquisition)
with batch 17 running on the simulated reactor, started as a process as an operator would start it.

First paint: headless Chromium (Debian's ``chromium``, driven as tests/test_web.py drives it,
cache disabled so every run is a first visit) navigates to the page; the times are from the
start of the navigation to the first frame xterm.js renders that shows the dashboard (its
channel table), and to the first that shows the notebook's running batch ("batch 17": the session
has opened the notebook and found the batch). ``BPTWIN_BENCH_WEB_RUNS`` runs (default 5),
median and worst.

Memory: textual-serve starts one app process per browser session. 1, 2 and 4 websocket
clients connect at once (the page's protocol without a browser, so the browser's own memory
is not counted), each session is held ``BPTWIN_BENCH_WEB_MEMORY_S`` seconds (default 15) after it
shows batch 17, then the proportional set size (PSS: shared pages split between the
processes that share them) and the resident set size of every session's process tree are
read from /proc.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from tests.browser import (
    DEADLINE_S,
    chromium_binary,
    chromium_page,
    start_web,
    stop,
    watch_script,
    write_web_config,
)
from tests.fixtures.servers import free_port

SIMULATED_REACTOR = "sim-R1"  # the simulated run acquires "sim-R1" for R1 (the default prefix)
DASHBOARD = "Broth temperature"  # a row of the dashboard's channel table
BATCH = "batch 17"  # the notebook is open and its running batch found


@contextmanager
def web_station() -> Iterator[tuple[int, int]]:
    """`bptwin web` with a simulated batch 17 on sim-R1: (port, server pid)."""
    from bptwin.tui.settings import Settings
    from tests.test_app_navigation import notebook_with_batch

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings()
        settings.station.data_dir = Path(folder) / "data"
        notebook_with_batch(settings, SIMULATED_REACTOR)
        port = free_port()
        config = write_web_config(
            Path(folder) / "bptwin.toml", settings.station.data_dir, port, source="simulated"
        )
        server = start_web(config, port)
        try:
            yield port, server.pid
        finally:
            stop(server)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue  # the task ended
    return found


def process_tree(pid: int) -> list[int]:
    tree = [pid]
    for child in children(pid):
        tree += process_tree(child)
    return tree


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB; (0, 0) if it has ended."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    pss = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return pss, rss


def tree_memory_mib(pid: int) -> tuple[float, float]:
    """(PSS, RSS) of a process and all its descendants, in MiB."""
    sizes = [memory_kib(member) for member in process_tree(pid)]
    return sum(p for p, _ in sizes) / 1024, sum(r for _, r in sizes) / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its descendants have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def session_cpu_s(server_pid: int) -> float:
    """CPU seconds the server's session processes have used (read within ~0.1 s of a paint)."""
    return sum(tree_cpu_s(session) for session in children(server_pid))


def wait_sessions(server_pid: int, count: int) -> list[int]:
    """The server's session processes once there are ``count`` of them (0: all ended)."""
    until = time.monotonic() + DEADLINE_S
    while time.monotonic() < until:
        sessions = children(server_pid)
        if len(sessions) == count:
            return sessions
        time.sleep(0.1)
    raise AssertionError(f"expected {count} session processes, have {children(server_pid)}")


async def paint_times(port: int, server_pid: int, runs: int) -> list[dict[str, float]]:
    """Per run: milliseconds from navigation to the dashboard and to the batch painted."""
    results = []
    with tempfile.TemporaryDirectory() as profile:
        async with chromium_page(Path(profile)) as page:
            await page.send("Network.enable")
            await page.send("Network.setCacheDisabled", cacheDisabled=True)
            await page.send(
                "Page.addScriptToEvaluateOnNewDocument", source=watch_script([DASHBOARD, BATCH])
            )
            for _ in range(runs):
                await page.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
                await page.wait_painted([DASHBOARD])
                cpu_dashboard = session_cpu_s(server_pid)
                painted = await page.wait_painted([DASHBOARD, BATCH])
                cpu = session_cpu_s(server_pid)
                times = await page.evaluate("window.__bptwinTimes")
                load = await page.evaluate(
                    "performance.getEntriesByType('navigation')[0].loadEventEnd"
                )
                results.append(
                    {**painted, **times, "load": load, "cpu": cpu, "cpu_dashboard": cpu_dashboard}
                )
                # Leaving the page closes its websocket, and textual-serve ends the session.
                await page.send("Page.navigate", url="about:blank")
                await asyncio.to_thread(wait_sessions, server_pid, 0)
    return results


def bench_web_first_paint() -> list[dict]:
    if chromium_binary() is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    runs = int(os.environ.get("BPTWIN_BENCH_WEB_RUNS", "5"))
    with web_station() as (port, server_pid):
        results = asyncio.run(paint_times(port, server_pid, runs))
    dashboard = [r[DASHBOARD] / 1000 for r in results]
    batch = [r[BATCH] / 1000 for r in results]
    cpu = [r["cpu"] for r in results]
    cpu_dashboard = [r["cpu_dashboard"] for r in results]
    socket_open = statistics.median(r["websocketOpen"] / 1000 for r in results)
    first_bytes = statistics.median(r["firstMessage"] / 1000 for r in results)
    page_loaded = statistics.median(r["load"] / 1000 for r in results)
    return [
        {
            "benchmark": "web.first paint: dashboard, median",
            "value": statistics.median(dashboard),
            "unit": "s",
            "note": "navigation to the first frame showing the channel table; "
            f"{runs} runs, headless Chromium; "
            f"page loaded {page_loaded:.2f} s, websocket open {socket_open:.2f} s, "
            f"first bytes {first_bytes:.2f} s (medians)",
        },
        {
            "benchmark": "web.first paint: dashboard, worst",
            "value": max(dashboard),
            "unit": "s",
            "note": "runs: " + ", ".join(f"{t:.2f}" for t in dashboard) + "; the session had "
            f"used {statistics.median(cpu_dashboard):.1f} s of CPU by then (median)",
        },
        {
            "benchmark": "web.first paint: notebook+batch, median",
            "value": statistics.median(batch),
            "unit": "s",
            "note": "navigation to the first frame showing batch 17 (notebook open, batch "
            f"found); the session had used {statistics.median(cpu):.1f} s of CPU by then (median)",
        },
        {
            "benchmark": "web.first paint: notebook+batch, worst",
            "value": max(batch),
            "unit": "s",
            "note": "runs: " + ", ".join(f"{t:.2f}" for t in batch),
        },
    ]


async def hold_sessions(
    port: int, count: int, server_pid: int, hold_s: float
) -> list[tuple[float, float]]:
    """``count`` sessions at once, each until it shows batch 17 and ``hold_s`` more: then the
    (PSS, RSS) in MiB of each session's process tree."""

    async def session(http: aiohttp.ClientSession, shown: asyncio.Event) -> None:
        async with http.ws_connect(f"http://127.0.0.1:{port}/ws?width=160&height=48") as ws:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            drawn = ""
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    drawn = (drawn + decoder.decode(message.data))[-20000:]
                    if BATCH in drawn:
                        shown.set()
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break

    async with aiohttp.ClientSession() as http:
        events = [asyncio.Event() for _ in range(count)]
        tasks = [asyncio.create_task(session(http, shown)) for shown in events]
        try:
            await asyncio.wait_for(asyncio.gather(*(shown.wait() for shown in events)), DEADLINE_S)
            await asyncio.sleep(hold_s)  # the sessions run their simulated batch meanwhile
            sessions = children(server_pid)
            assert len(sessions) == count, sessions
            return [tree_memory_mib(pid) for pid in sessions]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def bench_web_memory_per_session() -> list[dict]:
    hold_s = float(os.environ.get("BPTWIN_BENCH_WEB_MEMORY_S", "15"))
    rows = []
    totals: dict[int, float] = {}
    with web_station() as (port, server_pid):
        for count in (1, 2, 4):
            sizes = asyncio.run(hold_sessions(port, count, server_pid, hold_s))
            pss = [p for p, _ in sizes]
            rss = [r for _, r in sizes]
            server_pss, _ = memory_kib(server_pid)
            totals[count] = sum(pss)
            wait_sessions(server_pid, 0)
            rows.append(
                {
                    "benchmark": f"web.sessions PSS, {count} at once",
                    "value": sum(pss),
                    "unit": "MiB",
                    "note": f"per session {sum(pss) / count:.0f} MiB PSS, "
                    f"{statistics.median(rss):.0f} MiB RSS; the server itself "
                    f"{server_pss / 1024:.0f} MiB PSS",
                }
            )
    rows.append(
        {
            "benchmark": "web.memory per extra session",
            "value": (totals[4] - totals[1]) / 3,
            "unit": "MiB",
            "note": f"PSS, (4 sessions - 1) / 3; each held {hold_s:.0f} s with its simulated "
            "batch running",
        }
    )
    return rows
