"""Round trip through the real servers: a simulated batch recorded in Postgres and InfluxDB
is exported, the dataset read back gives the simulator's numbers, and the report rendered
from those servers holds the sections, the values and the embedded plots."""

from __future__ import annotations

import base64
import contextlib
import re
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bptwin.database.timeseries.base import TimeSeriesStore
from bptwin.eln.services import NotebookService
from bptwin.tui.export import ExportResult, export_from
from bptwin.tui.export.dataset_export import ExportedBatch, read_exported_batch
from bptwin.tui.export.simulated import RecordedBatch
from tests.export_batches import BATCH, DEVIATION_TITLE, record_batch, simulated_batch
from tests.fixtures.postgres import create_database, drop_database

pytestmark = [pytest.mark.postgres, pytest.mark.influx]


@dataclass
class RoundTrip:
    notebook: NotebookService
    store: TimeSeriesStore
    recorded: RecordedBatch
    result: ExportResult
    exported: ExportedBatch
    notebook_url: str
    influx_url: str
    influx_database: str


@pytest.fixture(scope="module")
def round_trip(influx_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoundTrip]:
    """The batch recorded once in a fresh Postgres notebook and a fresh InfluxDB database."""
    from bptwin.database.migrate import upgrade
    from bptwin.database.timeseries.influx import InfluxStore
    from bptwin.database.timeseries.influx_common import InfluxConfig

    root = tmp_path_factory.mktemp("export_round_trip")
    url = create_database("bptwin_test_export")
    database = f"bptwin_test_export_{uuid.uuid4().hex[:8]}"
    store = InfluxStore(
        InfluxConfig(url=influx_url, database=database),
        root / "spool.sqlite",
        flush_interval=0.05,
        retry_initial=0.05,
        retry_max=0.5,
    )
    notebook = NotebookService.from_url(url)
    try:
        upgrade(url)
        recorded = record_batch(notebook, store)
        result = export_from(
            notebook, store, BATCH, root / "out", ("html", "md"), model_version="od600-rt"
        )
        exported = read_exported_batch(result.out_dir / "dataset")
        yield RoundTrip(notebook, store, recorded, result, exported, url, influx_url, database)
    finally:
        store.close()
        notebook.engine.dispose()
        drop_database(url)
        query = urllib.parse.urlencode({"q": f'DROP DATABASE "{database}"'})
        with contextlib.suppress(OSError):
            urllib.request.urlopen(
                urllib.request.Request(f"{influx_url}/query?{query}", method="POST"), timeout=10
            ).close()


def test_dataset_read_back_gives_the_simulated_numbers(round_trip: RoundTrip) -> None:
    source = simulated_batch()
    record = round_trip.exported.record
    assert round_trip.notebook.engine.dialect.name == "postgresql"
    assert round_trip.store.name != "embedded"
    assert record.start_timestamp == source.start_timestamp
    assert record.rows == source.rows and record.duration_s == source.duration_s
    sensors, expected = record.sensors, source.readings()
    assert sensors is not None
    assert np.array_equal(sensors["timestamp"].to_numpy(), expected["timestamp"].to_numpy())
    for channel in source.channels:
        # The file keeps float32 (docs/dataset.md); InfluxDB kept every digit on the way.
        assert np.array_equal(
            sensors[channel].to_numpy(),
            expected[channel].to_numpy(dtype=np.float32),
            equal_nan=True,
        ), channel
    samples, expected_samples = record.samples, source.samples
    assert samples is not None and len(samples) == len(expected_samples)
    for column in ("time_s", "od600", "dcw_g_l", "glycerol_g_l"):
        assert samples[column].to_numpy() == pytest.approx(
            expected_samples[column].to_numpy(), rel=1e-9, abs=1e-6
        ), column


def test_windows_and_predictions_are_those_influxdb_holds(round_trip: RoundTrip) -> None:
    record, store = round_trip.exported.record, round_trip.store
    start = record.start_timestamp
    end = start + record.duration_s + 1
    table = round_trip.exported.windows.set_index("window_start")
    for channel in ("do", "offgas_co2"):
        windows = store.read_windows("R1", channel, start, end)
        assert len(windows) >= 89
        for window in windows:
            row = table.loc[window.window_start]
            assert row[f"{channel}_mean"] == pytest.approx(window.mean, rel=1e-9)
            assert row[f"{channel}_count"] == window.count
            assert (row[f"{channel}_min"], row[f"{channel}_max"]) == (window.min, window.max)
    predictions = round_trip.exported.predictions
    assert len(predictions) == round_trip.recorded.predictions > 80
    stored = store.read_range("R1", "od600_pred_upper", start, end + 31)
    assert predictions["od600_pred_upper"].tolist() == [r.value for r in stored]
    assert round_trip.exported.windows["cer"].notna().sum() == round_trip.recorded.windows


def test_report_from_the_servers_has_sections_values_and_plots(round_trip: RoundTrip) -> None:
    path = round_trip.result.path_of("report-html")
    assert path is not None
    html = path.read_text(encoding="utf-8")
    for title in (
        "Batch",
        "Calibrations",
        "Offline samples",
        "Trends of every channel",
        "Measured vs predicted OD600",
        "CER, OUR and RQ",
        "Alarms and their handling",
        "Deviations",
        "Acceptance for training",
        "Audit summary",
    ):
        assert f"<h2>{title}</h2>" in html, title
    assert "od600-rt" in html and DEVIATION_TITLE in html
    assert f"{round_trip.store.name}</td>" in html  # the store the series came from
    first = round_trip.notebook.samples.list_samples(BATCH)[0]
    assert f"<td>{first.od600:.4g}</td>" in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 7
    assert all(len(base64.b64decode(image)) > 10_000 for image in images)  # real figures
    markdown = round_trip.result.path_of("report-md")
    assert markdown is not None and "![Measured vs predicted OD600]" in markdown.read_text()


def test_export_batch_reads_the_configured_servers_without_touching_the_spool(
    round_trip: RoundTrip, tmp_path: Path
) -> None:
    from bptwin.tui.export import export_job
    from bptwin.tui.settings import Settings

    settings = Settings(
        station={"data_dir": tmp_path / "data"},
        notebook={"url": round_trip.notebook_url},
        timeseries={
            "backend": "influxdb",
            "url": round_trip.influx_url,
            "database": round_trip.influx_database,
        },
    )
    steps: list[str] = []
    job = export_job(settings, BATCH, ("md",), tmp_path / "out")
    result = job(lambda _fraction, text: steps.append(text))
    assert result.rows == round_trip.exported.record.rows
    again = read_exported_batch(tmp_path / "out" / "dataset")
    assert again.record.sensors is not None and round_trip.exported.record.sensors is not None
    assert again.record.sensors.equals(round_trip.exported.record.sensors)
    assert any(text.startswith("reading do") for text in steps)
    # The export never writes: no spool of its own in the station's data folder.
    assert not (tmp_path / "data" / "spool").exists()
