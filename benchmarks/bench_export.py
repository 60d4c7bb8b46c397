"""Export benchmark: `bptwin export` of a simulated 24 h batch from the embedded store.

The batch (campaign batch 16 run to 24 h: 1.6 million readings, 2 880 windows of derived series
and predictions, 8 samples) is recorded once into a SQLite notebook and an embedded store the way
the station records it; only the exports are timed: the dataset with the HTML report, and the
dataset with all three report formats.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

HOURS = 24.0


def _recorded_station(root: Path) -> tuple[object, object, int]:
    from bptwin.database.migrate import upgrade
    from bptwin.database.timeseries.embedded import EmbeddedStore
    from bptwin.eln.services import NotebookService
    from bptwin.tui.export.simulated import ensure_people, record_simulated_batch
    from bptwin.twin.campaign import simulate_campaign_batch
    from bptwin.twin.predictor import Predictor
    from bptwin.twin.registry import ModelError, load_model

    url = f"sqlite:///{root / 'notebook.sqlite'}"
    upgrade(url)
    notebook = NotebookService.from_url(url)
    ensure_people(notebook)
    store = EmbeddedStore(root / "timeseries.sqlite")
    record = simulate_campaign_batch(16, 7, hours=HOURS)
    try:
        predictor = Predictor(load_model())
    except ModelError:
        predictor = None  # no shipped model: the export then has no prediction series
    recorded = record_simulated_batch(notebook, store, record, predictor=predictor)
    return notebook, store, recorded.readings


PHASES = (
    ("reading batch", "notebook"),
    ("reading ", "store reads, 1 s grid, windows, dropout"),
    ("evaluating", "acceptance evaluation"),
    ("writing the dataset", "dataset (Parquet)"),
    ("drawing", "plots"),
    ("writing the report", "report"),
    ("composing the PDF", "report"),
    ("moving", "moving into place"),
)


def _phase_seconds(begin: float, marks: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds per phase, from the time each progress text first appeared."""
    seconds: dict[str, float] = {}
    previous_at, previous = begin, "notebook"
    for at, text in marks:
        phase = next((name for prefix, name in PHASES if text.startswith(prefix)), None)
        if phase is None:
            phase = previous if not text.startswith("batch ") else "moving into place"
        seconds[previous] = seconds.get(previous, 0.0) + (at - previous_at)
        previous_at, previous = at, phase
    return seconds


def bench_export() -> list[dict]:
    from bptwin.tui.export import export_from

    results = []
    with tempfile.TemporaryDirectory(prefix="bptwin-bench-export-") as folder:
        root = Path(folder)
        begin = time.perf_counter()
        notebook, store, readings = _recorded_station(root)
        setup_s = time.perf_counter() - begin
        note = f"{HOURS:g} h batch, {readings:,} readings, embedded store + SQLite notebook"
        phases: dict[str, float] = {}
        for formats in (("html",), ("html", "md", "pdf")):
            marks: list[tuple[float, str]] = []
            cpu_begin = time.process_time()
            begin = time.perf_counter()
            result = export_from(
                notebook,  # type: ignore[arg-type]
                store,  # type: ignore[arg-type]
                16,
                root / "out",
                formats,
                progress=lambda _f, text, marks=marks: marks.append((time.perf_counter(), text)),
            )
            elapsed = time.perf_counter() - begin
            cpu = time.process_time() - cpu_begin
            if formats == ("html",):
                phases = _phase_seconds(begin, marks)
            size_mb = sum(f.size for f in result.files) / 1e6
            results.append(
                {
                    "benchmark": f"export 24 h batch: dataset + {'+'.join(formats)}",
                    "value": round(elapsed, 2),
                    "unit": "s",
                    "note": f"{note}; {size_mb:.1f} MB written",
                }
            )
            results.append(
                {
                    "benchmark": f"export 24 h batch: dataset + {'+'.join(formats)}, CPU time",
                    "value": round(cpu, 2),
                    "unit": "s",
                    # On a shared, loaded machine the wall time is mostly waiting for a core.
                    "note": "process CPU seconds of the same export (all threads)",
                }
            )
        results.append(
            {
                "benchmark": "export 24 h batch: readings per second (dataset + html)",
                "value": round(readings / results[0]["value"]),
                "unit": "readings/s",
                "note": f"read, grid, windows, Parquet, plots, report; setup {setup_s:.0f} s",
            }
        )
        for phase, seconds in phases.items():
            results.append(
                {
                    "benchmark": f"export 24 h batch (dataset + html): {phase}",
                    "value": round(seconds, 2),
                    "unit": "s",
                    "note": "from the export's own progress reports",
                }
            )
        results.append(
            {
                "benchmark": "export 24 h batch: peak resident memory of the process",
                "value": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "unit": "MB",
                "note": "includes the simulation and recording of the batch before the exports",
            }
        )
        store.close()  # type: ignore[attr-defined]
    return results


if __name__ == "__main__":
    for row in bench_export():
        print(row)
