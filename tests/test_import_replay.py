"""Replaying an imported dataset from the settings: readings on the station clock, features on
a CO₂-only analyser, and the batch's offline samples into the notebook as the replay reaches
them, at any speed."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bptwin.database.migrate import upgrade
from bptwin.database.reading import Quality
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.tui.runtime.station import Station
from bptwin.tui.settings import Settings, load_settings
from bptwin.twin.campaign import simulate_campaign_batch
from bptwin.twin.dataset import BatchRecord, read_dataset
from bptwin.twin.lab_import import import_lab
from tests.lab_exports import import_map_text, write_lab_run

NOTEBOOK_BATCH = 5


@pytest.fixture(scope="module")
def batch() -> BatchRecord:
    return simulate_campaign_batch(16, seed=5, hours=3.0)


@pytest.fixture
def dataset(tmp_path: Path, batch: BatchRecord) -> Path:
    run = write_lab_run(tmp_path / "Lauf_16", batch, od600=True)
    (tmp_path / "lab.toml").write_text(import_map_text({16: run}, od600=True))
    import_lab(tmp_path / "lab.toml", tmp_path / "dataset")
    return tmp_path / "dataset"


def replay_settings(
    data_dir: Path, dataset: Path, form: str = "single", notebook_url: str | None = None
) -> Settings:
    """Settings that replay batch 16 of ``dataset`` flat out, in the single-source form
    (``[acquisition] source = "replay"``) or as a source of ``[[acquisition.sources]]``; the
    notebook in the data folder unless ``notebook_url`` names another (a Postgres one)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "bptwin.toml"
    if form == "single":
        acquisition = f"""
[acquisition]
source = "replay"
speed = 0
replay_file = "{dataset}"
replay_batch = 16
replay_notebook_batch = {NOTEBOOK_BATCH}
"""
    else:
        acquisition = f"""
[[acquisition.sources]]
name = "lab-run"
kind = "replay"
file = "{dataset}"
speed = 0
batch = 16
notebook_batch = {NOTEBOOK_BATCH}
"""
    notebook = f'\n[notebook]\nurl = "{notebook_url}"\n' if notebook_url else ""
    config.write_text(
        f"""
[station]
data_dir = "{data_dir}"
operator = "ana"
{acquisition}{notebook}"""
    )
    return load_settings(config)  # the keys are known settings, not refused


def started_notebook(settings: Settings, inoculated: datetime) -> NotebookService:
    upgrade(settings.notebook_url())
    notebook = NotebookService.from_url(settings.notebook_url())
    notebook.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321")
    notebook.operators.create_operator("sam", "ana", OperatorRole.OPERATOR, "1234")
    notebook.batches.create_batch("ana", NOTEBOOK_BATCH, "B", reactor_id="R1")
    notebook.batches.start_batch(
        "sam",
        NOTEBOOK_BATCH,
        inoculated_at=inoculated,
        override_reason="replay test: calibrations are not part of it",
    )
    return notebook


@pytest.mark.parametrize("form", ["single", "sources"])
def test_a_dataset_replays_from_the_settings_with_its_samples_into_the_notebook(
    tmp_path: Path, dataset: Path, batch: BatchRecord, form: str
) -> None:
    settings = replay_settings(tmp_path / "station", dataset, form)
    inoculated = datetime.now(tz=timezone.utc).replace(microsecond=0) - timedelta(hours=10)
    notebook = started_notebook(settings, inoculated)
    record = read_dataset(dataset).batch(16)
    station = Station(settings)
    station.start()
    try:
        (replay,) = station.replays
        driver = station.driver_threads[0].driver
        assert driver is replay.driver
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            getattr(driver, "finished", False)
            and len(notebook.samples.list_samples(NOTEBOOK_BATCH)) >= 2
        ):
            time.sleep(0.2)
    finally:
        station.stop()
    # Re-based onto the notebook batch's inoculation (early enough: nothing in the future).
    assert replay.inoculated_at == pytest.approx(inoculated.timestamp())
    assert driver.offset == replay.offset
    samples = notebook.samples.list_samples(NOTEBOOK_BATCH)
    # The 0 h sample with its OD600, the 2 h one with only its dry weight: both samples.
    assert len(samples) == 2 and replay.recorded == 2 and replay.refused == 0
    for sample, row in zip(samples, record.samples.itertuples(index=False), strict=True):
        taken = sample.taken_at.replace(tzinfo=timezone.utc)
        assert taken.timestamp() == pytest.approx(inoculated.timestamp() + row.time_s, abs=1e-3)
        assert sample.dcw_g_per_l == pytest.approx(row.dcw_g_l)
        assert sample.sop_timepoint_h == row.planned_h
    assert samples[0].od600 == pytest.approx(float(record.samples["od600"].iloc[0]), rel=1e-6)
    assert samples[1].od600 is None and samples[1].od_raw is None
    assert [s.sop_timepoint_h for s in samples] == [0.0, 2.0]
    assert not [n for n in notebook.notes.list_notes(NOTEBOOK_BATCH) if "Replayed" in n.text]
    # Readings re-based the same way; CER from CO₂ alone stored as uncertain, OUR not as good.
    store = EmbeddedStore(settings.timeseries_path())
    try:
        start, end = inoculated.timestamp() - 1, inoculated.timestamp() + 4 * 3600
        co2 = store.read_range("R1", "offgas_co2", start, end)
        assert len(co2) == int(record.sensors["offgas_co2"].notna().sum())
        assert co2[0].timestamp == pytest.approx(
            inoculated.timestamp()
            + float(record.sensors.dropna(subset=["offgas_co2"])["time_s"].iloc[0])
        )
        cer = [r for r in store.read_range("R1", "cer", start, end) if math.isfinite(r.value)]
        assert len(cer) > 100 and {r.quality for r in cer} == {Quality.UNCERTAIN}
        our = store.read_range("R1", "our", start, end)
        assert our and all(r.quality is Quality.BAD for r in our)
    finally:
        store.close()


@pytest.fixture
def dry_dataset(tmp_path: Path, batch: BatchRecord) -> Path:
    """The lab's export with dry weights and no OD600 column at all, imported."""
    run = write_lab_run(tmp_path / "Lauf_16", batch)
    (tmp_path / "lab.toml").write_text(import_map_text({16: run}))
    import_lab(tmp_path / "lab.toml", tmp_path / "dry_dataset")
    return tmp_path / "dry_dataset"


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_lab_without_a_photometer_gets_its_dry_weights_in_as_samples_and_into_the_report(
    tmp_path: Path, dry_dataset: Path, database: str, request: pytest.FixtureRequest
) -> None:
    from bptwin.tui.export import export_from
    from bptwin.tui.export.dataset_export import read_exported_batch
    from bptwin.twin.display import human_number

    url = request.getfixturevalue("empty_postgres_url") if database == "postgres" else None
    settings = replay_settings(tmp_path / "station", dry_dataset, "sources", notebook_url=url)
    inoculated = datetime.now(tz=timezone.utc).replace(microsecond=0) - timedelta(hours=10)
    notebook = started_notebook(settings, inoculated)
    record = read_dataset(dry_dataset).batch(16)
    assert record.samples is not None
    expected = record.samples
    assert expected["od600"].isna().all() and expected["dcw_g_l"].notna().all()
    station = Station(settings)
    station.start()
    try:
        (replay,) = station.replays
        driver = station.driver_threads[0].driver
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            getattr(driver, "finished", False)
            and len(notebook.samples.list_samples(NOTEBOOK_BATCH)) >= len(expected) - replay.refused
        ):
            time.sleep(0.2)
    finally:
        station.stop()
    assert replay.refused == 0 and replay.recorded == len(expected) >= 2
    samples = notebook.samples.list_samples(NOTEBOOK_BATCH)
    assert len(samples) == len(expected)
    for sample, row in zip(samples, expected.itertuples(index=False), strict=True):
        assert sample.od600 is None and sample.od_raw is None  # no OD600, never an OD600 of 0
        assert sample.dcw_g_per_l == pytest.approx(row.dcw_g_l)
        taken = sample.taken_at.replace(tzinfo=timezone.utc).timestamp()
        assert taken == pytest.approx(inoculated.timestamp() + row.time_s, abs=1e-3)
        planned = None if math.isnan(row.planned_h) else row.planned_h
        assert sample.sop_timepoint_h == planned
    assert not [n for n in notebook.notes.list_notes(NOTEBOOK_BATCH) if "Replayed" in n.text]

    # The batch report lists them as samples; the exported dataset carries their dry weights.
    store = EmbeddedStore(settings.timeseries_path())
    try:
        result = export_from(
            notebook, store, NOTEBOOK_BATCH, tmp_path / "out", ("md",), model_version="none"
        )
    finally:
        store.close()
    report_path = result.path_of("report-md")
    assert report_path is not None
    report = report_path.read_text(encoding="utf-8")
    n = len(samples)
    assert f"{n} sample(s) with a dry weight and no OD600 are not compared" in report
    section = report.split("## Offline samples", 1)[1].split("\n## ", 1)[0]
    assert f"{n} samples ({n} with a dry weight and no OD600)" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "—" in line]
    assert len(rows) == n  # one row each: OD600 "—", the dry weight beside it
    for row, sample in zip(rows, samples, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[3] == "—" and cells[4] == human_number(sample.dcw_g_per_l, 4)
    exported = read_exported_batch(tmp_path / "out" / "dataset").record.samples
    assert exported is not None and exported["od600"].isna().all()
    assert exported["dcw_g_l"].to_numpy() == pytest.approx(expected["dcw_g_l"].to_numpy())


def test_replay_settings_name_what_is_wrong(tmp_path: Path, dataset: Path) -> None:
    from bptwin.tui.settings import SettingsError

    settings = replay_settings(tmp_path / "station", dataset)
    settings.acquisition.replay_batch = 3
    with pytest.raises(SettingsError, match=r"acquisition\.replay_batch: cannot replay batch 3"):
        Station(settings).start()
    settings.acquisition.replay_batch = 16
    settings.acquisition.replay_file = dataset / "batch_16.parquet"
    with pytest.raises(SettingsError, match=r"replay_file .* is not a dataset folder"):
        Station(settings).start()
    # The same, said of a source of [[acquisition.sources]].
    settings = replay_settings(tmp_path / "sources", dataset, "sources")
    settings.acquisition.sources[0]["batch"] = 3
    where = r"acquisition\.sources\[0\] \('lab-run'\)"
    with pytest.raises(SettingsError, match=where + r": batch: cannot replay batch 3"):
        Station(settings).start()
    settings.acquisition.sources[0]["batch"] = 16
    settings.acquisition.sources[0]["file"] = str(dataset / "batch_16.parquet")
    with pytest.raises(SettingsError, match=where + r": batch: file .* is not a dataset"):
        Station(settings).start()


def test_samples_arrive_in_step_with_the_readings_at_any_speed(dataset: Path) -> None:
    import threading

    from bptwin.drivers.replay import RecordedBatch, ReplayDriver

    recording = RecordedBatch.from_dataset(dataset, 16, reactor="R2")
    seen: list[tuple[float, float, float]] = []  # sample stamp, newest reading, wall clock
    newest = [-math.inf]

    def sink(reading: object) -> None:
        newest[0] = max(newest[0], reading.timestamp)  # type: ignore[attr-defined]

    def on_sample(sample: object) -> None:
        seen.append((sample.timestamp, newest[0], time.time()))  # type: ignore[attr-defined]

    for speed in (7200.0, 0.0):
        seen.clear()
        newest[0] = -math.inf
        driver = ReplayDriver(sink, recording, speed=speed, shift_to_now=True, on_sample=on_sample)
        driver.run(threading.Event())
        assert driver.finished and driver.samples_replayed == len(recording.samples) == 2
        offset = driver.offset
        assert offset is not None
        for (stamp, last_reading, wall), sample in zip(seen, recording.samples, strict=True):
            assert stamp == pytest.approx(sample.timestamp + offset)
            # Handed over when the replay reaches it: after the readings before it (CO₂ every
            # minute), before any later one.
            assert stamp - 61.0 <= last_reading < stamp
            assert stamp <= wall + 1e-3  # never stamped in the future
