"""CSV export: channel ranges round-trip through the embedded store and the real InfluxDB, and
the notebook tables are written with every column (SQLite and Postgres)."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bptwin.database.reading import Quality, Reading
from bptwin.database.timeseries.base import TimeSeriesStore
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.tui.cli import main
from bptwin.tui.export.csv_export import (
    TABLES,
    CsvExportError,
    format_time,
    format_times,
    parse_time,
    read_channels_csv,
    table_columns,
    write_channels_csv,
    write_table_csv,
    write_tables,
)

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc).timestamp()


def sample_readings(reactor: str = "R1") -> list[Reading]:
    """Two channels over 10 min at 1 Hz, with a dropout (NaN), an uncertain value and a
    sub-second timestamp, values that need every digit to come back equal."""
    readings = []
    for second in range(600):
        t = START + second
        do = 95.0 - second / 7.0
        if second == 17:  # a dropout: no value, quality bad (as the store keeps it)
            readings.append(Reading(t, reactor, "do", math.nan, "%sat", Quality.BAD))
        else:
            readings.append(Reading(t, reactor, "do", do, "%sat"))
        quality = Quality.UNCERTAIN if second == 42 else Quality.GOOD
        readings.append(Reading(t + 0.25, reactor, "ph", 5.0 + second * 1e-4 / 3, "pH", quality))
    readings.append(Reading(START + 5, "R2", "do", 50.0, "%sat"))  # another reactor: left out
    return readings


def normalised(readings: list[Reading]) -> list[tuple]:
    return sorted(
        (
            r.channel,
            round(r.timestamp * 1000),
            None if math.isnan(r.value) else r.value,
            r.unit,
            r.quality,
        )
        for r in readings
    )


def stored(store: TimeSeriesStore, end: float) -> list[Reading]:
    return [r for c in ("do", "ph") for r in store.read_range("R1", c, START, end)]


def test_time_helpers() -> None:
    assert format_time(START + 0.25) == "2026-03-02T08:00:00.250Z"
    instants = [START, START + 0.25, START + 17.9995, 0.001]
    assert format_times(instants) == [format_time(t) for t in instants]
    assert parse_time("2026-03-02T08:00:00Z") == START
    assert parse_time("2026-03-02 08:00") == START  # no zone: UTC
    assert parse_time(str(START)) == START
    with pytest.raises(CsvExportError, match="not a time"):
        parse_time("tuesday")


def test_long_csv_round_trips_the_embedded_store(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "ts.sqlite") as store:
        store.write(sample_readings())
        store.flush()
        buffer = io.StringIO()
        rows = write_channels_csv(buffer, store, "R1", ["do", "ph"], START, START + 600)
        expected = stored(store, START + 600)
    assert rows == 1200 == len(expected)
    text = buffer.getvalue()
    assert text.splitlines()[0] == "time,unix_s,reactor,channel,value,unit,quality"
    assert "2026-03-02T08:00:17.000Z,1772438417.000,R1,do,,%sat,bad" in text
    back = read_channels_csv(io.StringIO(text))
    assert normalised(back) == normalised(expected)
    assert any(r.quality is Quality.UNCERTAIN for r in back)


def test_wide_csv_has_one_column_per_channel(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "ts.sqlite") as store:
        store.write(sample_readings())
        store.flush()
        buffer = io.StringIO()
        rows = write_channels_csv(
            buffer, store, "R1", ["do", "ph"], START, START + 10, layout="wide"
        )
    table = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert rows == len(table) == 20  # do on whole seconds, ph a quarter second later
    assert list(table[0]) == ["time", "unix_s", "do", "ph"]
    assert table[0]["do"] == repr(95.0) and table[0]["ph"] == ""
    assert table[1]["time"] == "2026-03-02T08:00:00.250Z" and table[1]["ph"] == repr(5.0)


def test_bad_requests_are_refused_plainly(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "ts.sqlite") as store:
        with pytest.raises(CsvExportError, match="end after its start"):
            write_channels_csv(io.StringIO(), store, "R1", ["do"], START, START)
        with pytest.raises(CsvExportError, match="layout"):
            write_channels_csv(io.StringIO(), store, "R1", ["do"], START, START + 1, layout="x")
    with pytest.raises(CsvExportError, match="columns"):
        read_channels_csv(io.StringIO("a,b\n1,2\n"))


def test_cli_exports_a_range_from_the_real_influxdb(
    influx_store: TimeSeriesStore,
    influx_url: str,
    influx_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    influx_store.write(sample_readings())
    assert influx_store.flush(timeout=30)
    monkeypatch.setenv("BPTWIN_STATION__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BPTWIN_TIMESERIES__BACKEND", "influxdb")
    monkeypatch.setenv("BPTWIN_TIMESERIES__URL", influx_url)
    monkeypatch.setenv("BPTWIN_TIMESERIES__DATABASE", influx_database)
    out = tmp_path / "range.csv"
    code = main(
        [
            "export-csv",
            "channels",
            "--reactor",
            "R1",
            "--start",
            "2026-03-02T08:00:00Z",
            "--end",
            "2026-03-02T08:05:00Z",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    back = read_channels_csv(out)
    assert normalised(back) == normalised(
        [r for r in sample_readings() if r.reactor == "R1" and r.timestamp < START + 300]
    )
    code = main(
        [
            "export-csv",
            "channels",
            "--reactor",
            "R1",
            "--channels",
            "do,nope",
            "--start",
            str(START),
            "--end",
            str(START + 5),
        ]
    )
    assert code == 2
    assert "has no series nope" in capsys.readouterr().err


# ------------------------------------------------------------------ notebook tables


def fill_notebook(url: str) -> NotebookService:
    notebook = NotebookService.from_url(url)
    notebook.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321")
    for number in (3, 4):
        notebook.batches.create_batch("sam", number, "B", strain="X-33", notes='say "hi", ok')
    notebook.preparation.record_inoculum(
        "sam",
        4,
        od600_raw=0.4,
        dilution=10,
        volume_ml=100,
        microscopy_clean=True,
        out_of_spec_reason=None,
    )
    for channel in ("ph", "do", "offgas_o2", "offgas_co2"):
        notebook.calibrations.record_calibration(
            "sam",
            channel=channel,
            kind="check",
            measured={"e7_mv": 1.5},
            results={},
            passed=True,
            batch_number=4,
        )
    start = datetime.now(timezone.utc) - timedelta(hours=3)
    notebook.batches.start_batch("sam", 4, inoculated_at=start)
    notebook.samples.add_sample(
        "sam",
        4,
        taken_at=start + timedelta(hours=2),
        od_raw=0.1234567891234,
        dilution=10,
        sop_timepoint_h=2,
        dcw_g_per_l=0.37,
        microscopy_clean=True,
        microscopy_text="clean, budding",
    )
    notebook.deviations.log_deviation("sam", 4, level=1, category="do", title="DO low 6 min")
    notebook.preparation.record_media_preparation(
        "sam", 4, recipe={"glycerol": 40.0, "basal_salts": 26.7}, autoclave_cycle="AC-12"
    )
    change = notebook.process_changes.plan_process_change(
        "sam",
        4,
        parameter="stirrer_rpm",
        old_value="800",
        new_value="900",
        planned_at=start + timedelta(hours=1),
    )
    notebook.process_changes.approve_process_change("sam", change.id or 0, pin="4321")
    notebook.notes.add_note("sam", 3, "line one\nline two, with a comma")
    notebook.alarms.record_alarm_event(
        None, reactor="R1", rule="do_low", priority="warning", state="raised", batch_number=4
    )
    return notebook


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_notebook_tables_are_written_with_every_column(notebook_url: str, tmp_path: Path) -> None:
    notebook = fill_notebook(notebook_url)
    counts = write_tables(tmp_path / "all", notebook)
    assert set(counts) == set(TABLES)
    assert counts["batches"] == 2 and counts["samples"] == 1 and counts["calibrations"] == 4
    assert counts["deviations"] == 1 and counts["notes"] == 1 and counts["alarms"] == 1
    assert counts["media"] == 1 and counts["process_changes"] == 1 and counts["signatures"] == 1
    media = read_csv(tmp_path / "all" / "media.csv")[0]
    assert media["batch_number"] == "4" and media["autoclave_cycle"] == "AC-12"
    assert json.loads(media["recipe"]) == {"glycerol": 40.0, "basal_salts": 26.7}
    signature = read_csv(tmp_path / "all" / "signatures.csv")[0]
    assert (signature["table_name"], signature["meaning"], signature["signer"]) == (
        "process_change",
        "approved",
        "sam",
    )
    assert len(signature["content_hash"]) == 64
    batches = read_csv(tmp_path / "all" / "batches.csv")
    assert [row["number"] for row in batches] == ["3", "4"]
    assert batches[0]["notes"] == 'say "hi", ok' and batches[1]["status"] == "running"
    sample = read_csv(tmp_path / "all" / "samples.csv")[0]
    assert list(sample) == table_columns("samples")
    assert sample["batch_number"] == "4"
    assert float(sample["od600"]) == notebook.samples.list_samples(4)[0].od600  # every digit kept
    assert sample["microscopy_text"] == "clean, budding" and sample["microscopy_clean"] == "true"
    assert (
        datetime.fromisoformat(sample["taken_at"]) == notebook.samples.list_samples(4)[0].taken_at
    )
    note = read_csv(tmp_path / "all" / "notes.csv")[0]
    assert note["text"] == "line one\nline two, with a comma" and note["batch_number"] == "3"
    calibration = read_csv(tmp_path / "all" / "calibrations.csv")[0]
    assert calibration["measured"] == '{"e7_mv": 1.5}'
    assert "pin_hash" not in table_columns("batches")

    one = io.StringIO()
    assert write_table_csv(one, notebook, "batches", batch=3) == 1
    with pytest.raises(CsvExportError, match="unknown table"):
        write_table_csv(io.StringIO(), notebook, "operators")
    notebook.engine.dispose()


def test_cli_writes_one_table_to_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    from bptwin.database.migrate import upgrade

    upgrade(url)
    fill_notebook(url).engine.dispose()
    monkeypatch.setenv("BPTWIN_STATION__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BPTWIN_NOTEBOOK__URL", url)
    assert main(["export-csv", "notebook", "--table", "deviations", "--batch", "4"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["title"] for row in rows] == ["DO low 6 min"]
    assert main(["export-csv", "notebook", "--batch", "99", "--out", str(tmp_path / "x")]) == 2
    assert "there is no batch 99" in capsys.readouterr().err


def test_cli_exports_a_batch_run_from_the_embedded_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bptwin.database.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook = NotebookService.from_url(url)
    notebook.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321")
    notebook.batches.create_batch("sam", 8, "B", reactor_id="R1")
    begin = datetime.fromtimestamp(START + 60, tz=timezone.utc)
    notebook.batches.start_batch("sam", 8, inoculated_at=begin, override_reason="bench test")
    notebook.batches.end_batch("sam", 8, ended_at=begin + timedelta(minutes=5))
    notebook.engine.dispose()
    with EmbeddedStore(tmp_path / "timeseries.sqlite") as store:
        store.write(sample_readings())
        store.flush()
    monkeypatch.setenv("BPTWIN_STATION__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BPTWIN_NOTEBOOK__URL", url)
    out = tmp_path / "batch8.csv"
    assert main(["export-csv", "channels", "--batch", "8", "--out", str(out)]) == 0
    back = read_channels_csv(out)
    stamps = sorted(r.timestamp for r in back if r.channel == "do")
    assert stamps[0] == START + 60 and stamps[-1] == START + 360  # the end second included
    assert {r.channel for r in back} == {"do", "ph"} and {r.reactor for r in back} == {"R1"}
    assert main(["export-csv", "channels", "--batch", "8", "--start", "x"]) == 2
    assert "either --batch or --start" in capsys.readouterr().err
