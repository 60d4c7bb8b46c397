"""The batch report as a reader sees it: the HTML rendered by headless Chromium, the PDF by
poppler (pdftoppm, pdftotext), and the content of every section checked in what they show.

The batch is a short simulated one that runs out of glycerol (a DO spike at about 5.4 h),
recorded the way the station records it, plus what made the report wrong before: a failed pH
calibration repeated and passed before inoculation, an extra sample without an SOP time point,
calibration results with an empty value, an alarm raised after the batch ended and a vessel
weight in the thousands.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bptwin.database.migrate import upgrade
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.services import NotebookService
from bptwin.tui.export import ExportResult, export_from
from bptwin.tui.export.report import RESIDUAL_HEADER
from bptwin.tui.export.simulated import ensure_people, record_simulated_batch
from bptwin.twin.dataset import BatchRecord
from tests.fixtures.servers import server_missing

BATCH = 16
SECTION_TITLES = {
    "header": "Batch",
    "calibrations": "Calibrations",
    "inoculum": "Inoculum and medium",
    "samples": "Offline samples",
    "trends": "Trends of every channel",
    "od600": "Measured vs predicted OD600",
    "offgas": "CER, OUR and RQ",
    "alarms": "Alarms and their handling",
    "deviations": "Deviations",
    "notes": "Process changes and notes",
    "closure": "Batch closure",
    "acceptance": "Acceptance for training",
    "audit": "Audit summary",
    "data": "Data completeness",
}
AFTER_END_ALARM = "DO probe silent after the batch ended"
REPR_OR_EXPONENT = re.compile(r"\b\w+=None\b|\bNone\b|\d\.?\d*e[+-]\d{2}\b")


@dataclass
class Exported:
    result: ExportResult
    record: BatchRecord
    start: datetime


def depleting_batch() -> BatchRecord:
    """Campaign batch 16 with little glycerol, a dense inoculum and fast growth: the DO falls
    to the controller's setpoint and spikes when the glycerol runs out, at about 5.4 h."""
    from bptwin.twin.campaign import simulate_campaign_batch
    from bptwin.twin.sim_config import SimulationConfig

    base = SimulationConfig()
    base = replace(
        base,
        reactor=replace(
            base.reactor, glycerol_start_g_l=8.0, inoculum_od600=6.0, inoculum_fraction=0.5
        ),
        kinetics=replace(base.kinetics, mu_max_per_h=0.5),
        after_depletion_h=0.5,
    )
    return simulate_campaign_batch(BATCH, 7, base=base)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    from bptwin.twin.predictor import Predictor
    from bptwin.twin.registry import load_model

    root = tmp_path_factory.mktemp("rendered")
    url = f"sqlite:///{root / 'notebook.sqlite'}"
    upgrade(url)
    notebook = NotebookService.from_url(url)
    store = EmbeddedStore(root / "timeseries.sqlite")
    record = depleting_batch()
    assert record.depletion_time_s is not None
    ensure_people(notebook)
    start = datetime.fromtimestamp(record.start_timestamp, tz=timezone.utc)
    # Before the batch's own passing pH calibration (start − 2 h): a failed first try.
    notebook.calibrations.record_calibration(
        "ana",
        channel="ph",
        kind="two-point",
        measured={"points": 2},
        results={"slope_pct": 88.0, "drift_percent": None},
        passed=False,
        performed_at=start - timedelta(hours=3),
    )
    record_simulated_batch(notebook, store, record, predictor=Predictor(load_model()))
    # A failed O₂ analyser check after inoculation, never repeated: it stays unresolved.
    notebook.calibrations.record_calibration(
        "ana",
        channel="offgas_o2",
        kind="zero-span",
        measured={"points": 2},
        results={"span_error_percent": 7.5},
        passed=False,
        batch_number=BATCH,
        performed_at=start + timedelta(hours=1),
    )
    extra = notebook.samples.add_sample(
        "ana",
        BATCH,
        # After the last SOP sample (4 h), before the depletion: the old "last unscheduled
        # sample" rule called it the depletion sample.
        taken_at=start + timedelta(hours=4, minutes=40),
        od_raw=1.5,
        dilution=10.0,
        predicted_od600=16.5,
    )
    assert extra.sop_timepoint_h is None
    end = start + timedelta(seconds=record.duration_s)
    notebook.alarms.record_alarm_event(
        None,
        reactor="R1",
        rule="sensor_stale/do",
        priority="warning",
        state="active_unacknowledged",
        channel="do",
        message=AFTER_END_ALARM,
        occurred_at=end + timedelta(minutes=30),
    )
    result = export_from(notebook, store, BATCH, root / "out", ("html", "pdf", "md"))
    yield Exported(result, record, start)
    store.close()
    notebook.engine.dispose()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    server_missing("headless Chromium is not installed")
    raise AssertionError  # server_missing does not return


def _poppler(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        server_missing(f"{tool} (poppler-utils) is not installed")
    assert found is not None
    return found


def _chromium_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def _plain(markup: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", markup, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


@pytest.fixture(scope="module")
def dom_sections(exported: Exported) -> dict[str, str]:
    """The text of each section of the DOM Chromium built from the HTML file."""
    path = exported.result.path_of("report-html")
    assert path is not None
    dom = _chromium_run("--dump-dom", path.as_uri()).stdout
    sections = dict(re.findall(r'<section id="([a-z0-9_-]+)">(.*?)</section>', dom, flags=re.S))
    return {key: _plain(body) for key, body in sections.items()}


@pytest.fixture(scope="module")
def pdf_text(exported: Exported) -> str:
    path = exported.result.path_of("report-pdf")
    assert path is not None
    run = subprocess.run(
        [_poppler("pdftotext"), "-layout", str(path), "-"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return re.sub(r"[ \t]+", " ", run.stdout)


def pdf_sections(text: str) -> dict[str, str]:
    """The PDF's text cut at each section title (in the report's order)."""
    positions = []
    cursor = 0
    for key, title in SECTION_TITLES.items():
        match = re.compile(rf"^\s*{re.escape(title)}\s*$", re.M).search(text, cursor)
        assert match is not None, f"section {title!r} not found in the PDF"
        positions.append((key, match.start()))
        cursor = match.end()
    bounds = [*(p for _k, p in positions[1:]), len(text)]
    return {key: text[at:stop] for (key, at), stop in zip(positions, bounds, strict=True)}


def test_chromium_renders_the_html_and_every_section_is_there(
    exported: Exported, dom_sections: dict[str, str], tmp_path: Path
) -> None:
    assert list(dom_sections) == list(SECTION_TITLES)
    for key, title in SECTION_TITLES.items():
        assert dom_sections[key].startswith(title)
    path = exported.result.path_of("report-html")
    assert path is not None
    shot = tmp_path / "first_screen.png"
    _chromium_run(f"--screenshot={shot}", "--window-size=1280,1600", path.as_uri())
    _assert_drawn(shot)


def test_pdftoppm_draws_the_first_page(exported: Exported, tmp_path: Path) -> None:
    path = exported.result.path_of("report-pdf")
    assert path is not None
    subprocess.run(
        [_poppler("pdftoppm"), "-png", "-r", "60", "-f", "1", "-l", "1", str(path), tmp_path / "p"],
        check=True,
        timeout=120,
    )
    pages = sorted(tmp_path.glob("p*.png"))
    assert len(pages) == 1
    _assert_drawn(pages[0])


def _assert_drawn(png: Path) -> None:
    """A picture with content: more than a few shades, not one blank colour."""
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("L").getcolors(maxcolors=256 * 256)
    assert colours is not None and len(colours) > 8, f"{png.name} looks blank"


def test_both_renderings_say_the_same_in_every_section(
    dom_sections: dict[str, str], pdf_text: str
) -> None:
    pdf = pdf_sections(pdf_text)
    for key in ("header", "calibrations", "samples", "od600", "closure", "acceptance"):
        for phrase in _key_phrases(dom_sections[key]):
            assert phrase in pdf[key], f"{phrase!r} of section {key} missing in the PDF"


def _key_phrases(section_text: str) -> list[str]:
    found = re.findall(r"Glycerol depletion: [^;.]+|Automatic verdict: \w+", section_text)
    return [phrase.strip() for phrase in found]


def test_no_python_reprs_or_exponents_anywhere(
    dom_sections: dict[str, str], pdf_text: str, exported: Exported
) -> None:
    markdown = exported.result.path_of("report-md")
    assert markdown is not None
    for name, text in (
        ("html", " ".join(dom_sections.values())),
        ("pdf", pdf_text),
        ("md", markdown.read_text(encoding="utf-8")),
    ):
        assert not REPR_OR_EXPONENT.findall(text), f"{name}: {REPR_OR_EXPONENT.findall(text)}"
    assert "drift —" in dom_sections["calibrations"]
    assert "slope 88 %" in dom_sections["calibrations"]


def test_depletion_the_do_spike_shows_is_found_and_reported(
    exported: Exported, dom_sections: dict[str, str], pdf_text: str
) -> None:
    truth_h = exported.record.depletion_time_s / 3600.0  # type: ignore[operator]
    found = re.search(r"Glycerol depletion: at (\d+\.\d+) h .*?found in the DO spike", pdf_text)
    assert found is not None
    assert abs(float(found.group(1)) - truth_h) < 0.25
    assert "found in the DO spike" in dom_sections["header"]
    assert "found in the DO spike" in dom_sections["od600"]
    acceptance = dom_sections["acceptance"]
    assert "depletion" in acceptance.lower() and "not reached" not in acceptance.lower()


def test_the_extra_sample_is_not_the_depletion_sample(dom_sections: dict[str, str]) -> None:
    samples = dom_sections["samples"]
    assert RESIDUAL_HEADER in samples
    # The extra sample at 4.67 h (no SOP time point): residual (15 − 16.5)/15 = −10.0 %.
    extra = re.search(r"extra \S+ \S+ \S+ 4\.67 15 .*?-10\.0 %", samples)
    assert extra is not None, samples
    # The depletion sample is the one taken after the DO spike, not the last extra one.
    assert samples.count("depletion") == 1
    assert re.search(r"depletion \S+ \S+ \S+ 5\.\d\d ", samples), samples


def test_only_unresolved_calibration_failures_are_flagged(dom_sections: dict[str, str]) -> None:
    calibrations = dom_sections["calibrations"]
    assert "Failed calibrations without override: offgas_o2" in calibrations
    assert "without override: offgas_o2, ph" not in calibrations


def test_alarms_after_the_end_are_not_the_batchs(dom_sections: dict[str, str]) -> None:
    assert AFTER_END_ALARM not in dom_sections["alarms"]
    assert "still active at export" not in dom_sections["alarms"]


def test_measured_vs_predicted_uses_this_batchs_predictions(
    dom_sections: dict[str, str],
) -> None:
    od600 = dom_sections["od600"]
    assert RESIDUAL_HEADER in od600
    residuals = [float(v) for v in re.findall(r"([+-]\d+\.\d) %", od600)]
    assert residuals and all(abs(r) < 100 for r in residuals), od600
