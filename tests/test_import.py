"""``bptwin import``: a lab's exports (made by tests/lab_exports.py, never copied) into a dataset.

The exports are what a university lab's fermentation system writes: Latin-1 with decimal commas,
title lines and a unit row, local times, a CO₂ analyser counting seconds from its own start,
dry weights instead of OD600 and no off-gas O₂.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bptwin.twin.campaign import simulate_campaign_batch
from bptwin.twin.dataset import BatchRecord, DatasetError, import_table, read_dataset
from bptwin.twin.lab_import import CellError, MapError, import_lab, load_map
from bptwin.twin.lab_import.text_table import TextLayout, detect_delimiter, read_text_table
from tests.lab_exports import ZONE, LabRun, import_map_text, write_lab_run


@pytest.fixture(scope="module")
def batch() -> BatchRecord:
    return simulate_campaign_batch(16, seed=5, hours=3.0)


@pytest.fixture
def lab(tmp_path: Path, batch: BatchRecord) -> tuple[Path, LabRun]:
    run = write_lab_run(tmp_path / "Lauf_16", batch)
    (tmp_path / "lab.toml").write_text(import_map_text({16: run}), encoding="utf-8")
    return tmp_path, run


def every(frame: pd.DataFrame, seconds: float) -> pd.DataFrame:
    return frame[np.isclose(np.mod(frame["time_s"], seconds), 0.0)]


def test_a_lab_run_comes_in_whole_with_units_times_and_samples(lab, batch):
    folder, run = lab
    result = import_lab(folder / "lab.toml", folder / "dataset")
    record = read_dataset(folder / "dataset").batch(16)
    sensors = record.sensors
    assert record.source == "imported"
    assert record.start_timestamp == run.inoculation.timestamp() == batch.start_timestamp
    # The DO column mixes '97,5' and '98': every cell is read, none becomes NaN.
    assert run.comma_cells > 0 and run.integer_cells > 0
    assert int(sensors["do"].notna().sum()) == run.online_rows
    truth = every(batch.sensors, 300.0).set_index("time_s")
    mine = sensors.set_index("time_s").loc[truth.index]
    np.testing.assert_allclose(mine["do"], truth["do"], atol=0.051)
    # Absolute pressure in mbar became bar gauge; air in mL/min became L/min.
    np.testing.assert_allclose(mine["pressure"], truth["pressure"], atol=1e-4)
    np.testing.assert_allclose(mine["air_flow"], truth["air_flow"], atol=1e-4)
    np.testing.assert_allclose(mine["ph"], truth["ph"], atol=5e-4)
    # CO₂ every minute, counted from the analyser's own start 5 min before inoculation.
    co2 = sensors.dropna(subset=["offgas_co2"])
    assert len(co2) == run.co2_rows
    expected = batch.sensors.set_index("time_s").loc[co2["time_s"], "offgas_co2"]
    np.testing.assert_allclose(co2["offgas_co2"], expected, atol=5e-5)
    assert "offgas_o2" not in sensors
    # Dry-weight samples at their SOP time points; no OD600.
    samples = record.samples
    assert len(samples) == len(batch.samples)
    np.testing.assert_allclose(samples["time_s"], batch.samples["time_s"])
    np.testing.assert_allclose(samples["dcw_g_l"], batch.samples["dcw_g_l"], atol=5e-4)
    assert samples["od600"].isna().all()
    assert list(samples["planned_h"].dropna()) == list(batch.samples["planned_h"].dropna())
    # What was found, and what the model will miss, is said and kept with the batch.
    warnings = "\n".join(result.warnings)
    assert "no offgas_o2 channel" in warnings and "assumed RQ" in warnings
    manifest = json.loads((folder / "dataset" / "manifest.json").read_text())
    entry = manifest["batches"][0]
    assert entry["process"]["assumed_rq"] == 0.7
    assert entry["provenance"]["files"]["online"]["encoding"] == "cp1252"
    assert entry["provenance"]["files"]["online"]["decimal"] == ","
    assert entry["provenance"]["files"]["co2"]["delimiter"] == "\t"
    notes = "\n".join(entry["provenance"]["notes"])
    assert "2 line(s) before the header skipped" in notes and "1 unit row(s)" in notes


def test_an_unreadable_cell_stops_the_import_naming_file_line_and_column(lab):
    folder, _ = lab
    path = folder / "Lauf_16" / "online.CSV"
    lines = path.read_bytes().decode("latin-1").split("\r\n")
    cells = lines[9].split(";")
    cells[2] = "12,5,1"  # a pO2 cell that is no number
    lines[9] = ";".join(cells)
    path.write_bytes("\r\n".join(lines).encode("latin-1"))
    with pytest.raises(DatasetError) as caught:
        import_lab(folder / "lab.toml", folder / "dataset")
    message = str(caught.value)
    assert "Lauf_16/online.CSV line 10, column 'pO2': '12,5,1'" in message
    assert isinstance(caught.value.__cause__, CellError)
    assert not (folder / "dataset").exists()  # nothing written


def test_bad_cells_may_be_left_empty_when_the_map_says_so_and_are_reported(lab):
    folder, run = lab
    path = folder / "Lauf_16" / "online.CSV"
    text = path.read_bytes().decode("latin-1").split("\r\n")
    for line in (6, 7, 8):
        cells = text[line].split(";")
        cells[1] = "Err"
        text[line] = ";".join(cells)
    path.write_bytes("\r\n".join(text).encode("latin-1"))
    map_text = (
        (folder / "lab.toml")
        .read_text()
        .replace('time = "Datum/Uhrzeit"', 'time = "Datum/Uhrzeit"\non_bad_cell = "missing"')
    )
    (folder / "lab.toml").write_text(map_text)
    result = import_lab(folder / "lab.toml", folder / "dataset")
    ph = result.batches[0].record.sensors["ph"]
    assert int(ph.notna().sum()) == run.online_rows - 3
    assert any("3 cell(s) of column 'pH'" in w and "line 7 'Err'" in w for w in result.warnings)


def test_the_delimiter_is_never_a_letter_of_a_title_line(tmp_path):
    lines = ["Task: fermentation tasks and settings", "Time\tCO2\tO2"]
    lines += [f"{i}\t{0.04 + i / 1000:.3f}\t20.9" for i in range(50)]
    assert detect_delimiter(lines, "x.dat")[0] == "\t"
    semicolons = [
        "Task: Sauerstoffsättigung",
        "Zeit;pH;Temp",
        *[f"{i};5,0;30,1" for i in range(40)],
    ]
    assert detect_delimiter(semicolons, "y.csv")[0] == ";"
    blanks = ["# Task: analyser log", "t  co2", *[f"{i}   0.{i:03d}" for i in range(30)]]
    assert detect_delimiter(blanks, "z.txt")[0] == "whitespace"
    # The plain-table import (import_table) reads such a file right as well.
    path = tmp_path / "analyser.dat"
    path.write_text("\n".join(lines) + "\n")
    record = import_table(
        path,
        {"CO2": "offgas_co2", "O2": "offgas_o2"},
        number=3,
        time_column="Time",
        time_format="elapsed_s",
        start_timestamp=1_700_000_000.0,
    )
    assert record.sensors["offgas_co2"].notna().sum() == 50


def test_the_plain_table_import_refuses_instead_of_emptying_a_column(tmp_path):
    path = tmp_path / "export.csv"
    rows = ["Zeit;pO2"] + [
        f"2026-02-01T09:00:{i:02d}Z;{'5' if i % 3 else '5,5'}" for i in range(30)
    ]
    path.write_text("\n".join(rows) + "\n")
    record = import_table(path, {"pO2": "do"}, number=4, time_column="Zeit")
    assert record.sensors["do"].notna().sum() == 30  # comma and integer cells alike
    rows[5] = "2026-02-01T09:00:04Z;OVER"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(CellError, match=r"export.csv line 6, column 'pO2': 'OVER'"):
        import_table(path, {"pO2": "do"}, number=4, time_column="Zeit")


def _local_rows(start: str, count: int, step_s: int) -> list[str]:
    first = datetime.strptime(start, "%d.%m.%Y %H:%M:%S").replace(tzinfo=ZONE)
    stamps = first.timestamp() + step_s * np.arange(count)
    return [datetime.fromtimestamp(t, tz=ZONE).strftime("%d.%m.%Y %H:%M:%S") for t in stamps]


def _one_file_map(folder: Path, text: str, *, inoculation: str, extra: str = "") -> Path:
    (folder / "run").mkdir(exist_ok=True)
    (folder / "run" / "log.csv").write_bytes(text.encode("latin-1"))
    (folder / "map.toml").write_text(
        "\n".join(
            [
                'timezone = "Europe/Berlin"',
                'time_format = "%d.%m.%Y %H:%M:%S"',
                "[files.log]",
                'path = "{folder}/log.csv"',
                'time = "Zeit"',
                extra,
                "[files.log.columns]",
                '"pH" = "ph"',
                "[[batches]]",
                "number = 1",
                'folder = "run"',
                f'inoculation = "{inoculation}"',
            ]
        )
        + "\n"
    )
    return folder / "map.toml"


def test_local_times_cross_the_autumn_dst_change_without_a_jump(tmp_path):
    # 25.10.2020: 03:00 CEST becomes 02:00 CET; the 02:xx hour is written twice.
    stamps = _local_rows("24.10.2020 22:00:00", 96, 300)  # 8 h every 5 min
    assert stamps.count("25.10.2020 02:30:00") == 2
    text = "Zeit;pH\n" + "".join(f"{t};5,0\n" for t in stamps)
    result = import_lab(
        _one_file_map(tmp_path, text, inoculation="24.10.2020 22:00:00"), tmp_path / "out"
    )
    sensors = result.batches[0].record.sensors
    times = sensors.dropna(subset=["ph"])["time_s"].to_numpy()
    np.testing.assert_array_equal(times, 300.0 * np.arange(96))
    assert result.batches[0].record.duration_s == 95 * 300.0


def test_a_local_time_that_cannot_be_placed_is_an_error_naming_it(tmp_path):
    stamps = _local_rows("29.03.2020 01:00:00", 12, 300)  # 02:00 → 03:00 is skipped
    stamps[3] = "29.03.2020 02:15:00"  # written by a logger that ignores DST
    text = "Zeit;pH\n" + "".join(f"{t};5,0\n" for t in stamps)
    path = _one_file_map(tmp_path, text, inoculation="29.03.2020 01:00:00")
    with pytest.raises(DatasetError, match=r"log.csv line 5, column 'Zeit': '29.03.2020 02:15:00'"):
        import_lab(path, tmp_path / "out")
    with pytest.raises(DatasetError, match="happens twice"):
        import_lab(
            _one_file_map(tmp_path, "Zeit;pH\n", inoculation="25.10.2020 02:30:00"),
            tmp_path / "out2",
        )


def test_stated_layout_overrides_detection(tmp_path):
    text = "Bioreactor export\nZeit;pH\n;[-]\n" + "".join(
        f"{t};" + f"{5 + i / 100:.2f}\n".replace(".", ",")
        for i, t in enumerate(_local_rows("01.12.2020 08:00:00", 20, 60))
    )
    extra = 'encoding = "latin-1"\ndelimiter = ";"\ndecimal = ","\nskip_rows = 1\nunit_rows = 1'
    result = import_lab(
        _one_file_map(tmp_path, text, inoculation="01.12.2020 08:00:00", extra=extra),
        tmp_path / "out",
    )
    ph = result.batches[0].record.sensors["ph"].dropna().to_numpy()
    np.testing.assert_allclose(ph, 5 + np.arange(20) / 100)
    notes = "\n".join(result.batches[0].findings.notes)
    assert "delimiter" not in notes and "before the header" not in notes


def test_elapsed_hours_from_inoculation_and_a_shared_samples_file(tmp_path):
    for number in (1, 2):
        run = tmp_path / f"run{number}"
        run.mkdir()
        rows = "".join(f"{h:.4f}\t{0.05 * number + h / 10:.4f}\n" for h in np.arange(0, 6, 1 / 60))
        (run / "co2.txt").write_text("t [h]\tCO2\n" + rows)
    (tmp_path / "samples.csv").write_text(
        "Lauf,Zeit [h],OD,Bemerkung\n"
        + "".join(f"B{n},{h},{0.4 * (n + h)},\n" for n in (1, 2) for h in (0.1, 2.1, 4.2))
        + "B2,5.5,9.9,End\n"
    )
    (tmp_path / "map.toml").write_text(
        """
timezone = "UTC"
[files.co2]
path = "{folder}/co2.txt"
time = { column = "t [h]", format = "elapsed_h" }
columns = { "CO2" = "offgas_co2" }
[samples]
path = "samples.csv"
batch_column = "Lauf"
time = { column = "Zeit [h]", format = "elapsed_h" }
columns = { "OD" = "od600", "Bemerkung" = "kind" }
kinds = { "End" = "depletion" }
[[batches]]
number = 1
folder = "run1"
inoculation = "2020-11-24T10:00:00+01:00"
samples_key = "B1"
[[batches]]
number = 2
folder = "run2"
inoculation = "2020-11-25T10:00:00+01:00"
samples_key = "B2"
"""
    )
    result = import_lab(tmp_path / "map.toml", tmp_path / "out")
    first, second = (item.record for item in result.batches)
    assert first.start_timestamp == datetime.fromisoformat("2020-11-24T09:00:00+00:00").timestamp()
    assert first.sensors["offgas_co2"].notna().sum() == 360
    assert list(first.samples["od600"]) == pytest.approx([0.44, 1.24, 2.08])
    assert list(second.samples["kind"]) == ["scheduled", "scheduled", "scheduled", "depletion"]
    assert list(second.samples["planned_h"].fillna(-1)) == [0.0, 2.0, 4.0, -1.0]
    assert any("no ph channel" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('"pH" = "ph"', '"pH" = "acidity"'),
            "files.online.columns.pH.channel: unknown channel 'acidity'",
        ),
        (
            ('"Base" = "base_total"', '"Base" = { channel = "base_total", ofset = 1 }'),
            "files.online.columns.Base.ofset: unknown key",
        ),
        (('"CO2 [%]" = "offgas_co2"', '"CO2 [%]" = "do"'), "channel 'do' comes from both"),
        (
            ('timezone = "Europe/Berlin"', 'timezone = "Europe/Berln"'),
            "unknown time zone 'Europe/Berln'",
        ),
        (("assumed_rq = 0.7", "assumed_rq = 0.1"), "process.assumed_rq"),
    ],
)
def test_map_mistakes_are_named_by_key(lab, change, message):
    folder, _ = lab
    path = folder / "lab.toml"
    path.write_text(path.read_text().replace(*change, 1))
    with pytest.raises(MapError) as caught:
        load_map(path)
    assert message in str(caught.value)


def test_a_missing_column_names_the_closest_ones(lab):
    folder, _ = lab
    path = folder / "lab.toml"
    path.write_text(path.read_text().replace('"pO2" = "do"', '"pO₂" = "do"'))
    with pytest.raises(DatasetError, match=r"no column 'pO₂'; did you mean 'pO2'"):
        import_lab(path, folder / "out")


def test_header_and_unit_rows_are_found_and_kept(tmp_path):
    path = tmp_path / "export.txt"
    path.write_bytes(
        "Ger\u00e4t: Bioreaktor 2\r\n\r\nZeit;Temperatur;Druck\r\n;\u00b0C;mbar\r\n"
        "01.12.2020 08:00:00;30,1;1020\r\n".encode("cp1252")
    )
    table = read_text_table(path, TextLayout())
    assert table.header == ["Zeit", "Temperatur", "Druck"]
    assert table.units == {"Temperatur": "°C", "Druck": "mbar"}
    assert list(table.lines) == [5]


def test_the_command_imports_and_reports(lab, capsys):
    from bptwin.tui.cli import main

    folder, _ = lab
    assert main(["import", str(folder / "lab.toml"), "--out", str(folder / "ds")]) == 0
    out, err = capsys.readouterr()
    assert "batch 16: 3.0 h, 10 channels, 2 samples" in out
    assert "no offgas_o2 channel" in err
    assert main(["import", str(folder / "lab.toml"), "--out", str(folder / "ds")]) == 1
    assert "already holds a dataset" in capsys.readouterr().err
    (folder / "bad.toml").write_text("files = 3\n")
    assert main(["import", str(folder / "bad.toml"), "--out", str(folder / "x")]) == 2
    assert not (folder / "x").exists()


def test_import_time_is_reported(lab):
    folder, _ = lab
    result = import_lab(folder / "lab.toml", folder / "dataset")
    assert 0 < result.seconds < 600 and math.isfinite(result.seconds)


def test_the_worked_example_of_the_docs_imports_as_shown(tmp_path, batch):
    """The import map printed in docs/dataset.md, run on files of the shape shown there."""
    import re

    from tests.lab_exports import local_text

    text = (Path(__file__).resolve().parent.parent / "docs" / "dataset.md").read_text()
    example = text[text.index("### Worked example") :]
    map_text = re.search(r"```toml\n(.*?)```", example, re.S).group(1)
    start = datetime(2020, 11, 24, 10, 24, 14, tzinfo=ZONE)
    run = write_lab_run(tmp_path / "Lauf_16", batch, start=start)
    assert local_text(run.analyser_start) == "24.11.2020 10:19:14"  # as the map says
    (tmp_path / "lab.toml").write_text(map_text, encoding="utf-8")
    result = import_lab(tmp_path / "lab.toml", tmp_path / "lab_campaign")
    record = result.batches[0].record
    assert record.role == "holdout" and record.start_timestamp == start.timestamp()
    assert record.depletion_time_s == pytest.approx(20 * 3600 + 8 * 60 + 46)
    assert int(record.sensors["do"].notna().sum()) == run.online_rows
    assert int(record.sensors["offgas_co2"].notna().sum()) == run.co2_rows
    assert record.process == {
        "assumed_rq": 0.7,
        "initial_volume_l": 1.0,
        "volume_follows": ["base"],
        "short_gap_s": 450.0,
    }
