"""Acceptance and CSV export on a 24 h batch in the embedded store.

* sensor dropout of every catalogue channel over 24 h (what ``bptwin accept`` computes), with
  the store's own 24 h ``read_range`` of one channel as the floor to compare with;
* the five criteria evaluated from a SQLite notebook (8 samples, a few deviations);
* CSV export of 24 h of one channel (long layout), rows/s against the bare ``read_range``.
"""

from __future__ import annotations

import io
import math
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bptwin.database.channels import CHANNELS
from bptwin.database.migrate import upgrade
from bptwin.database.reading import Reading
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.acceptance_service import evaluate_acceptance
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import MANDATORY_CALIBRATIONS, NotebookService
from bptwin.tui.export.csv_export import write_channels_csv
from bptwin.twin.dropout import sensor_dropout_pct

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
HOURS = 24


def _fill(store: EmbeddedStore) -> int:
    start = T0.timestamp()
    count = 0
    for channel in CHANNELS:
        step = int(channel.period_s)
        batch = [
            Reading(start + second, "R1", channel.name, 1.0 + second * 1e-5, channel.unit)
            for second in range(0, HOURS * 3600, step)
        ]
        store.write(batch)
        count += len(batch)
    store.flush()
    return count


def _best(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return min(times)


def bench_dropout_and_csv() -> list[dict]:
    start, end = T0.timestamp(), T0.timestamp() + HOURS * 3600
    rows = 0
    with (
        tempfile.TemporaryDirectory(prefix="bench_acceptance_") as folder,
        EmbeddedStore(Path(folder) / "ts.sqlite") as store,
    ):
        points = _fill(store)
        dropout_s = _best(lambda: sensor_dropout_pct(store, "R1", start, end))
        floor_s = _best(lambda: store.read_range("R1", "do", start, end))

        def export() -> None:
            nonlocal rows
            rows = write_channels_csv(io.StringIO(), store, "R1", ["do"], start, end)

        csv_s = _best(export)
    return [
        {
            "benchmark": f"sensor dropout, {len(CHANNELS)} channels x 24 h (embedded)",
            "value": dropout_s * 1000,
            "unit": "ms",
            "note": f"{points:,} points stored; floor: read_range of 1 channel x 24 h "
            f"= {floor_s * 1000:.0f} ms",
        },
        {
            "benchmark": "CSV export (long), 1 channel x 24 h (embedded)",
            "value": rows / csv_s,
            "unit": "rows/s",
            "note": f"{rows:,} rows in {csv_s:.2f} s; bare read_range {rows / floor_s:,.0f} "
            f"rows/s ({csv_s / floor_s:.1f}x)",
        },
    ]


def bench_evaluate() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench_acceptance_") as folder:
        url = f"sqlite:///{Path(folder) / 'notebook.sqlite'}"
        upgrade(url)
        notebook = NotebookService.from_url(url)
        notebook.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321")
        notebook.batches.create_batch("sam", 7, "B")
        for channel in MANDATORY_CALIBRATIONS:
            notebook.calibrations.record_calibration(
                "sam", channel=channel, kind="check", measured={}, results={}, passed=True
            )
        notebook.preparation.record_inoculum(
            "sam", 7, od600_raw=0.4, dilution=10, volume_ml=100, microscopy_clean=True
        )
        notebook.batches.start_batch("sam", 7, inoculated_at=T0)
        for hours in (0, 2, 4, 6, 8, 12, 16, 20):
            od = 0.4 * math.exp(0.2 * hours)
            notebook.samples.add_sample(
                "sam",
                7,
                taken_at=T0 + timedelta(hours=hours),
                od_raw=od / 10,
                dilution=10,
                dcw_g_per_l=0.3 * od,
                microscopy_clean=True,
            )
        for level in (1, 1, 2):
            notebook.deviations.log_deviation("sam", 7, level=level, category="do", title="DO low")
        notebook.batches.end_batch("sam", 7, ended_at=T0 + timedelta(hours=22))
        notebook.batches.close_batch("sam", 7, outcome="complete", depletion_time_h=20.0)
        dropout = {channel.name: 0.1 for channel in CHANNELS}
        seconds = _best(
            lambda: evaluate_acceptance(notebook, 7, sensor_dropout_pct=dropout), repeats=20
        )
        notebook.engine.dispose()
    return [
        {
            "benchmark": "evaluate_acceptance, 8 samples, 3 deviations (SQLite)",
            "value": seconds * 1000,
            "unit": "ms",
            "note": "read of the batch's records plus the five criteria",
        }
    ]
