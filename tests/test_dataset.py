"""Dataset folder round trip, integrity checks and import of plain lab tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bptwin.twin.campaign import simulate_campaign_batch
from bptwin.twin.dataset import (
    BatchRecord,
    Dataset,
    DatasetError,
    import_samples,
    import_table,
    read_dataset,
    write_dataset,
)


@pytest.fixture(scope="module")
def short_batch() -> BatchRecord:
    return simulate_campaign_batch(4, seed=1, hours=0.5)


def test_round_trip_keeps_tables_and_metadata(tmp_path, short_batch):
    dataset = Dataset(description="test", campaign_seed=1, batches=[short_batch])
    write_dataset(tmp_path, dataset)
    loaded = read_dataset(tmp_path)
    record = loaded.batch(4)
    assert record.phase == "B" and record.role == "training" and record.seed == short_batch.seed
    assert record.rows == len(short_batch.sensors) == 1801
    assert record.sample_times_s == short_batch.sample_times_s
    # Sensor and truth columns are stored as float32: equal to 7 digits; times exact.
    np.testing.assert_array_equal(record.sensors["timestamp"], short_batch.sensors["timestamp"])
    pd.testing.assert_frame_equal(record.sensors, short_batch.sensors, check_dtype=False, rtol=1e-6)
    pd.testing.assert_frame_equal(record.samples, short_batch.samples)
    assert record.truth is not None and "truth_biomass_g_l" in record.truth
    assert "truth_biomass_g_l" not in record.readings().columns
    assert record.channels[:3] == ["ph", "do", "od_probe"]


def test_damaged_or_foreign_folders_are_refused_clearly(tmp_path, short_batch):
    write_dataset(tmp_path, Dataset(batches=[short_batch]))
    with (tmp_path / "batch_04.parquet").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"garbage")
    with pytest.raises(DatasetError, match="sha256"):
        read_dataset(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="format_version"):
        read_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not a bptwin dataset"):
        read_dataset(tmp_path / "nowhere")


def lab_csv(path):
    """A lab export: own column names, ISO times at irregular 0.5 s steps, a 20 s gap."""
    start = pd.Timestamp("2026-02-01T09:00:00Z")
    offsets = np.concatenate([np.arange(0, 60, 0.5), np.arange(80, 120, 0.5)])
    table = pd.DataFrame(
        {
            "Time": [(start + pd.Timedelta(seconds=float(s))).isoformat() for s in offsets],
            "DO [0-1]": np.full(offsets.size, 0.42),
            "T broth [K]": np.full(offsets.size, 303.15),
            "CO2 ppm": np.full(offsets.size, 12000.0),
            "Agitation": np.full(offsets.size, 650.0),
            "comment": ["x"] * offsets.size,
        }
    )
    table.to_csv(path, index=False)
    return start.timestamp()


def test_csv_import_with_column_map_units_and_grid(tmp_path):
    start = lab_csv(tmp_path / "lab.csv")
    record = import_table(
        tmp_path / "lab.csv",
        {
            "DO [0-1]": "do",
            "T broth [K]": "temp_broth",
            "CO2 ppm": "offgas_co2",
            "Agitation": "stirrer_speed",
        },
        number=21,
        time_column="Time",
        units={"do": "fraction", "temp_broth": "K", "offgas_co2": "ppm"},
    )
    sensors = record.sensors
    assert record.source == "imported" and record.start_timestamp == start
    assert list(sensors.columns) == [
        "time_s",
        "timestamp",
        "do",
        "offgas_co2",
        "stirrer_speed",
        "temp_broth",
    ]  # catalogue order; unmapped columns ("comment") left out
    assert len(sensors) == 120  # 1 Hz grid from 0 to 119 s
    assert sensors["do"].dropna().eq(42.0).all()
    assert sensors["temp_broth"].dropna().round(6).eq(30.0).all()
    assert sensors["offgas_co2"].dropna().round(9).eq(1.2).all()
    gap = sensors[(sensors["time_s"] >= 60) & (sensors["time_s"] < 80)]
    assert gap["do"].isna().all()  # gaps are marked, not filled
    samples = pd.DataFrame(
        {
            "when": ["2026-02-01T09:00:30Z", "2026-02-01T11:00:00Z"],
            "OD": [0.4, 0.9],
            "DCW": [0.12, 0.27],
            "scope": ["clean", "clean"],
        }
    )
    record = import_samples(
        record,
        samples,
        {"OD": "od600", "DCW": "dcw_g_l", "scope": "microscopy"},
        time_column="when",
    )
    assert record.sample_times_s == [30.0, 7200.0]
    assert math.isnan(record.samples["glycerol_g_l"].iloc[0])
    write_dataset(tmp_path / "out", Dataset(source="imported", batches=[record]))
    again = read_dataset(tmp_path / "out").batch(21)
    assert again.truth is None and again.channels == [
        "do",
        "offgas_co2",
        "stirrer_speed",
        "temp_broth",
    ]
    assert list(again.samples["od600"]) == [0.4, 0.9]


def test_parquet_import_with_elapsed_hours(tmp_path):
    table = pd.DataFrame({"t_h": [0.0, 1 / 3600, 2 / 3600], "pH": [5.0, 5.01, 4.99]})
    table.to_parquet(tmp_path / "lab.parquet")
    record = import_table(
        tmp_path / "lab.parquet",
        {"pH": "ph"},
        number=22,
        time_column="t_h",
        time_format="elapsed_h",
        start_timestamp=1_767_600_000.0,
    )
    assert list(record.sensors["time_s"]) == [0.0, 1.0, 2.0]
    assert list(record.sensors["ph"]) == [5.0, 5.01, 4.99]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"column_map": {"DO [0-1]": "dissolved"}}, "unknown channels"),
        ({"column_map": {"DO": "do"}}, "not in the table"),
        ({"column_map": {"DO [0-1]": "do"}, "time_column": "clock"}, "time column 'clock'"),
        ({"column_map": {"DO [0-1]": "do"}, "units": {"do": "furlongs"}}, "unit 'furlongs'"),
        ({"column_map": {"DO [0-1]": "do"}, "time_format": "elapsed_s"}, "start_timestamp"),
        ({"column_map": {"DO [0-1]": "do"}, "time_format": "unix_s"}, "cannot be read"),
        ({"column_map": {"DO [0-1]": "do", "CO2 ppm": "do"}}, "several columns"),
    ],
)
def test_import_errors_name_the_problem(tmp_path, kwargs, message):
    lab_csv(tmp_path / "lab.csv")
    kwargs.setdefault("time_column", "Time")
    with pytest.raises(DatasetError, match=message):
        import_table(tmp_path / "lab.csv", number=23, **kwargs)
    with pytest.raises(DatasetError, match="not found"):
        import_table(tmp_path / "missing.csv", {"x": "do"}, number=23)
    with pytest.raises(DatasetError, match="no rows"):
        import_table(pd.DataFrame({"timestamp": [], "x": []}), {"x": "do"}, number=23)
