"""``bptwin export`` on the embedded store and a SQLite notebook: report content in all three
formats, the dataset against the store, checksums, errors and the command line."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from pathlib import Path

import numpy as np
import pytest

from bptwin.database.channels import CHANNELS
from bptwin.database.migrate import upgrade
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.services import NotebookService
from bptwin.tui.cli import main
from bptwin.tui.export import (
    ExportCancelled,
    ExportError,
    ExportResult,
    export_from,
    parse_formats,
)
from bptwin.tui.export.dataset_export import read_exported_batch
from bptwin.twin.dataset import read_dataset, sha256_of
from bptwin.twin.sim_sensors import NOT_SIMULATED
from tests.export_batches import (
    BATCH,
    DEVIATION_TITLE,
    NOTE_TEXT,
    record_batch,
    recorded_at,
    simulated_batch,
)

UNBOUND_DURING = "DO 18 % < 20 % (LO) during the batch"
UNBOUND_BEFORE = "DO 18 % < 20 % (LO) the day before"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = (
    "header",
    "calibrations",
    "inoculum",
    "samples",
    "trends",
    "od600",
    "offgas",
    "alarms",
    "deviations",
    "notes",
    "closure",
    "acceptance",
    "signatures",
    "audit",
    "data",
)


@dataclass
class Station:
    root: Path
    notebook: NotebookService
    store: EmbeddedStore
    notebook_url: str


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    root = tmp_path_factory.mktemp("export_station")
    url = f"sqlite:///{root / 'notebook.sqlite'}"
    upgrade(url)
    notebook = NotebookService.from_url(url)
    store = EmbeddedStore(root / "timeseries.sqlite")
    record_batch(notebook, store)
    # The alarm engine writes events without a batch: the reactor's during the batch count.
    start = recorded_at()
    for minutes, message in ((10, UNBOUND_DURING), (-600, UNBOUND_BEFORE)):
        notebook.alarms.record_alarm_event(
            None,
            reactor="R1",
            rule="do_low/low",
            priority="high",
            state="active_unacknowledged",
            channel="do",
            value=18.0,
            message=message,
            occurred_at=start + timedelta(minutes=minutes),
        )
    # The operator acknowledges the alarm raised during the batch; it clears later.
    for minutes, state, actor in ((13, "active_acknowledged", "ana"), (20, "normal", None)):
        notebook.alarms.record_alarm_event(
            actor,
            reactor="R1",
            rule="do_low/low",
            priority="high",
            state=state,
            channel="do",
            value=25.0,
            message="acknowledged" if actor else "DO back to 25 %",
            occurred_at=start + timedelta(minutes=minutes),
        )
    yield Station(root, notebook, store, url)
    store.close()
    notebook.engine.dispose()


@pytest.fixture(scope="module")
def exported(station: Station) -> ExportResult:
    steps: list[float] = []
    result = export_from(
        station.notebook,
        station.store,
        BATCH,
        station.root / "out",
        ("html", "md", "pdf"),
        model_version="od600-test",
        progress=lambda fraction, _text: steps.append(fraction),
    )
    assert steps == sorted(steps) and steps[-1] == 1.0
    return result


def test_html_report_is_self_contained_and_has_every_section(exported: ExportResult) -> None:
    path = exported.path_of("report-html")
    assert path is not None
    html = path.read_text(encoding="utf-8")
    for key in SECTIONS:
        assert f'<section id="{key}">' in html, key
    # No network: no external script, style sheet or image.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@media print" in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 7  # five trend groups, OD600, off-gas
    assert all(base64.b64decode(image).startswith(PNG_MAGIC) for image in images)


def test_html_report_shows_the_batch_values(exported: ExportResult, station: Station) -> None:
    html = exported.path_of("report-html").read_text(encoding="utf-8")  # type: ignore[union-attr]
    batch = station.notebook.batches.get_batch(BATCH)
    assert f"<h1>Batch {BATCH} report</h1>" in html
    assert batch.strain in html and "od600-test" in html
    assert "0 h 45 min" in html  # duration of the 45 min batch
    sample = station.notebook.samples.list_samples(BATCH)[0]
    assert f"{sample.od600:.4g}" in html
    assert html.count('<td class="PASS">PASS</td>') >= 4  # the four mandatory calibrations
    assert DEVIATION_TITLE in html and "sam 20" in html  # reviewed by the supervisor
    assert NOTE_TEXT in html
    assert escape(UNBOUND_DURING) in html and escape(UNBOUND_BEFORE) not in html
    # The incident: raised at 10 min, acknowledged by ana 3 min later, normal at 20 min.
    incident = re.search(r"<tr><td>[^<]*</td><td>0\.17</td><td>do_low/low</td>.*?</tr>", html)
    assert incident is not None
    assert "<td>ana after 3 min</td>" in incident.group(0)
    assert "still active" not in incident.group(0)
    # A 45 min batch fails completion (16-26 h): the checklist says so, with evidence.
    assert 'class="verdict fail"' in html
    assert "outside 16–26 h" in html
    assert "audit chain" in html.lower() and "verified" in html


def test_every_report_format_prints_the_signatures_manifestation(
    exported: ExportResult, station: Station
) -> None:
    """Printed name, meaning, UTC and local time of each signature (closure and review)."""
    closure, review = sorted(
        station.notebook.signatures.list_signatures(batch_number=BATCH),
        key=lambda signature: signature.table_name,
    )
    html = exported.path_of("report-html").read_text(encoding="utf-8")  # type: ignore[union-attr]
    markdown = exported.path_of("report-md").read_text(encoding="utf-8")  # type: ignore[union-attr]
    for signature, meaning in ((closure, "closed"), (review, "reviewed")):
        utc = f"{signature.signed_at:%Y-%m-%d %H:%M:%S} UTC"
        for text in (html, markdown):
            assert utc in text and signature.content_hash[:16] in text
        assert f"<td>{meaning}</td>" in html and f"| {meaning} |" in markdown
    assert "<td>sam (sam, supervisor)</td>" in html
    assert "## Signatures" in markdown


def test_markdown_report_refers_to_png_files_beside_it(exported: ExportResult) -> None:
    path = exported.path_of("report-md")
    assert path is not None
    text = path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(links) == 7
    for link in links:
        assert (path.parent / link).read_bytes().startswith(PNG_MAGIC)
    assert "## Acceptance for training" in text and "| 1 | completion | FAIL |" in text


def test_pdf_report_is_a_pdf_with_pages_and_images(exported: ExportResult) -> None:
    path = exported.path_of("report-pdf")
    assert path is not None
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 3
    assert len(re.findall(rb"/Subtype\s*/Image", data)) >= 7


def test_dataset_matches_the_store(exported: ExportResult, station: Station) -> None:
    batch = read_exported_batch(exported.out_dir / "dataset")
    record = batch.record
    assert record.number == BATCH and record.phase == "C" and record.role == "holdout"
    assert record.source == "recorded"
    sensors = record.sensors
    assert sensors is not None
    assert np.array_equal(sensors["time_s"].to_numpy(), np.arange(len(sensors), dtype=float))
    for channel in ("ph", "do", "offgas_co2", "vessel_weight"):
        stored = station.store.read_range("R1", channel, record.start_timestamp, 2e9)
        slots = np.rint([r.timestamp - record.start_timestamp for r in stored]).astype(int)
        values = np.array([r.value for r in stored], dtype=np.float32)
        column = sensors[channel].to_numpy()
        assert np.array_equal(column[slots], values, equal_nan=True), channel
        if channel == "vessel_weight":  # every 10 s: the other seconds are empty, not zero
            assert np.isnan(column[1:10]).all()
    start, end = record.start_timestamp, record.start_timestamp + record.duration_s + 1
    windows = station.store.read_windows("R1", "do", start, end)
    table = batch.windows.set_index("window_start")
    for window in windows:
        row = table.loc[window.window_start]
        assert row["do_mean"] == pytest.approx(window.mean, rel=1e-12)
        assert (row["do_min"], row["do_max"], row["do_last"]) == (
            window.min,
            window.max,
            window.last,
        )
        assert row["do_count"] == window.count
    stored_our = station.store.read_range("R1", "our", start, end + 30)
    assert np.array_equal(
        batch.windows["our"].dropna().to_numpy(), np.array([r.value for r in stored_our])
    )
    predicted = station.store.read_range("R1", "od600_pred", start, end + 30)
    assert len(batch.predictions) == len(predicted) > 0
    assert np.array_equal(
        batch.predictions["od600_pred"].to_numpy(), np.array([r.value for r in predicted])
    )
    assert (batch.predictions["od600_pred_lower"] < batch.predictions["od600_pred"]).all()


def test_samples_match_the_notebook(exported: ExportResult, station: Station) -> None:
    samples = read_exported_batch(exported.out_dir / "dataset").record.samples
    entered = station.notebook.samples.list_samples(BATCH)
    assert samples is not None and len(samples) == len(entered) >= 1
    assert samples["od600"].tolist() == [s.od600 for s in entered]
    assert samples["kind"].iloc[0] == "scheduled" and samples["planned_h"].iloc[0] == 0.0
    assert samples["microscopy"].iloc[0] == "clean"
    source = simulated_batch().samples
    assert samples["od600"].to_numpy() == pytest.approx(source["od600"].to_numpy(), rel=1e-9)


def test_dataset_folder_is_readable_by_the_version_1_reader(exported: ExportResult) -> None:
    dataset = read_dataset(exported.out_dir / "dataset")  # checks the sha256 of both files
    record = dataset.batch(BATCH)
    assert record.files.keys() == {"sensors", "samples", "windows", "predictions"}
    assert set(record.channels) == {c.name for c in CHANNELS} - NOT_SIMULATED


def test_export_manifest_lists_every_file_with_its_checksum(exported: ExportResult) -> None:
    manifest = json.loads(exported.manifest.read_text(encoding="utf-8"))
    assert manifest["format"] == "bptwin-export" and manifest["batch"] == BATCH
    assert manifest["acceptance_verdict"] == "fail"
    listed = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {
        p.relative_to(exported.out_dir).as_posix()
        for p in exported.out_dir.rglob("*")
        if p.is_file() and p.name != "export.json"
    }
    assert set(listed) == on_disk
    for name, entry in listed.items():
        assert sha256_of(exported.out_dir / name) == entry["sha256"], name
    assert not [p for p in exported.out_dir.iterdir() if p.name.startswith(".export-")]


def test_a_damaged_dataset_file_is_refused(exported: ExportResult, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "dataset"
    shutil.copytree(exported.out_dir / "dataset", copy)
    path = copy / f"batch_{BATCH:02d}_windows.parquet"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ExportError, match="does not match its sha256"):
        read_exported_batch(copy)


def test_a_cancelled_export_leaves_the_previous_one_untouched(
    exported: ExportResult, station: Station
) -> None:
    before = {f.path: f.sha256 for f in exported.files}

    def cancel_while_drawing(fraction: float, text: str) -> None:
        if "plots" in text:
            raise ExportCancelled("cancelled by the test")

    with pytest.raises(ExportCancelled):
        export_from(
            station.notebook,
            station.store,
            BATCH,
            exported.out_dir,
            ("html",),
            progress=cancel_while_drawing,
        )
    assert {path: sha256_of(path) for path in before} == before
    assert not [p for p in exported.out_dir.iterdir() if p.name.startswith(".export-")]


def test_unknown_and_not_started_batches_are_clear_errors(station: Station, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="there is no batch 99"):
        export_from(station.notebook, station.store, 99, tmp_path)
    station.notebook.batches.create_batch("ana", 98, "B")
    with pytest.raises(ExportError, match="not been inoculated"):
        export_from(station.notebook, station.store, 98, tmp_path)
    assert not list(tmp_path.iterdir())


def test_formats_are_checked() -> None:
    assert parse_formats("html, PDF,md,html") == ("html", "pdf", "md")
    with pytest.raises(ExportError, match="unknown report format docx"):
        parse_formats("html,docx")


def test_command_line_writes_the_report_and_names_the_files(
    station: Station,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BPTWIN_STATION__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BPTWIN_NOTEBOOK__URL", station.notebook_url)
    monkeypatch.setenv("BPTWIN_TIMESERIES__PATH", str(station.root / "timeseries.sqlite"))
    out = tmp_path / "cli"
    code = main(
        ["export", "--batch", str(BATCH), "--out", str(out), "--format", "md", "--no-dataset"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"exported batch {BATCH}" in captured.out
    assert (out / f"batch_{BATCH:02d}_report.md").is_file()
    assert not (out / "dataset").exists()
    assert main(["export", "--batch", "97", "--out", str(out)]) == 1
    assert "there is no batch 97" in capsys.readouterr().err
    assert main(["export", "--batch", str(BATCH), "--format", "docx"]) == 2


def test_a_running_batch_is_exported_up_to_its_last_reading(
    station: Station, tmp_path: Path
) -> None:
    from datetime import datetime, timezone

    from bptwin.database.reading import Reading

    start = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
    for number, reactor, seconds in ((95, "R2", range(600)), (94, "R3", (0, 15 * 86400))):
        station.notebook.batches.create_batch("ana", number, "B", reactor_id=reactor)
        station.notebook.batches.start_batch(
            "sam", number, inoculated_at=start, override_reason="export test: no calibrations"
        )
        station.store.write(
            [Reading(start.timestamp() + s, reactor, "ph", 5.0 + s / 1e4, "pH") for s in seconds]
        )
    result = export_from(station.notebook, station.store, 95, tmp_path / "running", ("md",))
    assert result.rows == 600  # from inoculation to the last reading, not to the wall clock
    text = (tmp_path / "running" / "batch_95_report.md").read_text(encoding="utf-8")
    assert "still running" in text
    ph = read_exported_batch(tmp_path / "running" / "dataset").record.sensors["ph"]  # type: ignore[index]
    assert ph.iloc[-1] == pytest.approx(5.0599, abs=1e-6)
    with pytest.raises(ExportError, match=r"spans 15\.0 days"):
        export_from(station.notebook, station.store, 94, tmp_path / "never-ended")


def test_the_manifest_anchors_the_audit_trail(exported: ExportResult, station: Station) -> None:
    trail = json.loads(exported.manifest.read_text(encoding="utf-8"))["audit_trail"]
    entries, head_hash = trail["entries"], trail["head_hash"]
    assert entries >= 1 and len(head_hash) == 64
    holds = station.notebook.audit.verify_trail(anchors={"export.json": (entries, head_hash)})
    assert holds.anchor_problem is None
    # A chain that no longer reaches the exported entry, or has another one there, is named.
    cut = station.notebook.audit.verify_trail(anchors={"export.json": (entries + 10**6, head_hash)})
    assert (
        cut.anchor_problem is not None
        and "export.json: the chain ends before" in cut.anchor_problem
    )
    other = station.notebook.audit.verify_trail(anchors={"export.json": (entries, "0" * 64)})
    assert (
        other.anchor_problem is not None
        and "not the one this station wrote" in other.anchor_problem
    )
