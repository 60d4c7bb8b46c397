"""Start-up cost: import time of the app shell (docs/performance.md: imports dominate start-up)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time_import(module: str, repeats: int = 3) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_import_time() -> list[dict[str, object]]:
    floor = _time_import("textual.app")
    app = _time_import("bptwin.tui.app")
    return [
        {
            "benchmark": "import textual.app (floor)",
            "value": floor * 1000,
            "unit": "ms",
            "note": "median of 3 fresh interpreters",
        },
        {
            "benchmark": "import bptwin.tui.app",
            "value": app * 1000,
            "unit": "ms",
            "note": f"{app / floor:.2f}x the textual floor",
        },
    ]
