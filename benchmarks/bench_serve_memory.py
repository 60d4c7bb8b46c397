"""Resident memory of a headless station (what `bptwin serve` runs) per simulated reactor.

Each measurement is a fresh process: a Station without trend history (as serve builds it), N
simulated reactors at 1 Hz on the embedded stores and the in-process bus, run for
``BPTWIN_SERVE_MEMORY_S`` seconds (default 60). Reported: resident memory with 1 and with 32
reactors, the cost of each reactor beyond the first, and the CPU share of one core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = textwrap.dedent(
    """
    import json, sys, tempfile, time
    from pathlib import Path
    from bptwin.tui.runtime.station import Station
    from bptwin.tui.settings import Settings

    def rss_mib():
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    count, seconds = int(sys.argv[1]), float(sys.argv[2])
    reactors = [f"R{i + 1}" for i in range(count)]
    settings = Settings.model_validate({
        "station": {"data_dir": tempfile.mkdtemp(), "reactors": reactors},
        "acquisition": {"sources": [
            {"name": "sim", "kind": "simulated", "reactors": reactors, "speed": 1}
        ]},
        "bus": {"backend": "local"},
    })
    station = Station(settings, keep_trends=False)
    station.start()
    cpu_start, wall_start = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu = (time.process_time() - cpu_start) / (time.monotonic() - wall_start)
    rss = rss_mib()
    readings = station.snapshot().readings_total
    station.stop()
    print(json.dumps({"rss_mib": rss, "cpu": cpu, "readings": readings}))
    """
)


def _measure(count: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, str(count), str(seconds)],
            capture_output=True,
            text=True,
            cwd=folder,
            timeout=seconds + 600,
            check=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_serve_memory_per_reactor() -> list[dict]:
    seconds = float(os.environ.get("BPTWIN_SERVE_MEMORY_S", "60"))
    one = _measure(1, seconds)
    many = _measure(32, seconds)
    per_reactor = (many["rss_mib"] - one["rss_mib"]) / 31
    return [
        {
            "benchmark": "serve.rss, 1 reactor",
            "value": one["rss_mib"],
            "unit": "MiB",
            "note": f"headless station, simulated at 1 Hz for {seconds:.0f} s",
        },
        {
            "benchmark": "serve.rss, 32 reactors",
            "value": many["rss_mib"],
            "unit": "MiB",
            "note": f"{many['readings']:.0f} readings, {many['cpu'] * 100:.0f} % of one core",
        },
        {
            "benchmark": "serve.rss per reactor",
            "value": per_reactor,
            "unit": "MiB",
            "note": "beyond the first; goal <= 10 MB (no trend history without a screen)",
        },
    ]
