"""Campaign figures: uptime of one 24 h batch from the embedded store's window counts."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bptwin.database.reading import Reading
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.campaign_figures import UPTIME_CHANNELS, batch_uptime

START = 1_770_000_000.0
HOURS = 24


def bench_uptime_24h_batch() -> list[dict]:
    """5 key channels at 1 Hz for 24 h with a 30 min gap (432 000 readings)."""
    with tempfile.TemporaryDirectory() as folder:
        store = EmbeddedStore(Path(folder) / "ts.sqlite")
        try:
            pending: list[Reading] = []
            for t in range(HOURS * 3600):
                if 30_000 <= t < 31_800:
                    continue
                pending += [Reading(START + t, "R1", c, 1.0, "") for c in UPTIME_CHANNELS]
                if len(pending) >= 50_000:
                    store.write(pending)
                    pending = []
            store.write(pending)
            store.flush()
            started = time.perf_counter()
            uptime = batch_uptime(store, "R1", START, START + HOURS * 3600)
            elapsed = time.perf_counter() - started
        finally:
            store.close()
    return [
        {
            "benchmark": "campaign uptime, one 24 h batch (embedded store)",
            "value": elapsed * 1000.0,
            "unit": "ms",
            "note": f"5 channels at 1 Hz, uptime {uptime.percent:.2f} % (expected 97.92 %)",
        }
    ]
