"""The operator's day, as one test: the real control room (BptwinApp) driven by keys and typing,
on the real Postgres notebook and InfluxDB store, with a simulated batch as the live source.

Read ``test_the_operators_day`` from top to bottom: first start and the supervisor's
registration, the batch and its inoculum, every calibration wizard (pH failing, then passing),
the start, the SOP samples, an alarm acknowledged and turned into a deviation, a note, the end,
the closure signed, the acceptance decision, the export and the report's sections. Each step
checks what the operator sees on the screen and what the notebook stored.

Waits are on conditions with generous deadlines (the test machine is shared and loaded); the
durations printed at the end are for the reader, never asserted.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, TextArea

from bptwin.eln.acceptance_service import latest_decision
from bptwin.eln.models import BatchStatus, OperatorRole, SignatureMeaning
from bptwin.eln.services import NotebookService
from bptwin.screens.acceptance import AcceptanceScreen
from bptwin.screens.alarms import AlarmScreen, ConfirmDeviationScreen
from bptwin.screens.batch import BatchSetupScreen
from bptwin.screens.batch_end import BatchEndScreen
from bptwin.screens.calibration import CalibrationMenuScreen, CalibrationWizardScreen
from bptwin.screens.dashboard import DashboardScreen
from bptwin.screens.deviations import DeviationFormScreen
from bptwin.screens.entry_widgets import LabelledField
from bptwin.screens.export import ExportScreen
from bptwin.screens.login import LoginScreen
from bptwin.screens.notes import NotesScreen
from bptwin.screens.samples import SampleEntryScreen
from bptwin.screens.signing import SigningDialog
from bptwin.tui.app import BptwinApp
from bptwin.tui.runtime.viewer import station_for
from bptwin.tui.settings import Settings
from tests.test_export_rendered import SECTION_TITLES as REPORT_SECTIONS

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("cheap_pin_hashing")]

LEAD, LEAD_PIN = "mara", "2468"  # the shift lead who starts the station on its first day
BATCH = 1
REACTOR = "sim-R1"  # a simulated run acquires its own reactor (bptwin run does the same)
# A limit the simulated broth (about 30 °C) is above from its first reading: the day's alarm.
ALARM_RULE = "broth_warm_check"
T = TypeVar("T")
SPEED = 60.0  # simulated s per wall s: the 2 h sample is due 2 min after the start, and the
# simulated batch (about 20 h) outlasts the test


def day_settings(data_dir: Path, notebook_url: str, influx_url: str, database: str) -> Settings:
    """The station as installed: Postgres notebook, InfluxDB 1.x, a simulated batch."""
    settings = Settings()
    settings.station.data_dir = data_dir
    settings.notebook.url = notebook_url
    settings.timeseries.backend = "influxdb"
    settings.timeseries.url = influx_url
    settings.timeseries.database = database
    settings.timeseries.api_version = "1"
    settings.timeseries.flush_interval_s = 0.2
    settings.acquisition.source = "simulated"
    settings.acquisition.speed = SPEED
    settings.alarms = {
        ALARM_RULE: {
            "type": "limit",
            "source": "temp_broth",
            "hi": {"limit": 10.0, "priority": "warning"},
            "description": "broth warmer than the bench check limit",
        }
    }
    # As `bptwin run` does: a simulated run's reactors are kept apart from real batches.
    return settings.simulation_kept_apart()


# ---- waiting and typing -------------------------------------------------------------------------


async def wait_for(
    pilot: Pilot, condition: Callable[[], object], what: str, timeout_s: float = 90.0
) -> None:
    """Poll ``condition`` while the app runs; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"not reached within {timeout_s:.0f} s: {what}")


async def settle(pilot: Pilot) -> None:
    """The showing screen's own workers are done and their results drawn (the app's
    long-lived workers, such as the station, keep running)."""
    await pilot.pause()
    screen = pilot.app.screen

    def idle() -> bool:
        return all(w.is_finished for w in pilot.app.workers if w.node is screen)

    await wait_for(pilot, idle, f"the workers of {type(screen).__name__}")
    await pilot.pause()


async def type_text(pilot: Pilot, field_id: str, text: str) -> None:
    """Focus a field, empty it and type ``text``; long values are pasted (as a barcode
    scanner or the clipboard would), since typing them key by key costs seconds."""
    widget = pilot.app.screen.query_one(f"#{field_id}")
    widget.focus()
    if isinstance(widget, TextArea):
        widget.load_text("")
    else:
        assert isinstance(widget, Input)
        widget.value = ""
    await pilot.pause()
    if len(text) <= 6:
        await pilot.press(*text)
    elif isinstance(widget, TextArea):
        widget.insert(text)
    else:
        widget.insert_text_at_cursor(text)


async def press(pilot: Pilot, *keys: str) -> None:
    await pilot.press(*keys)
    await settle(pilot)


async def go(pilot: Pilot, key: str, screen_type: type) -> None:
    """Press one of the app's letters and wait for its screen."""
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, screen_type), screen_type.__name__)
    await settle(pilot)


def shown(pilot: Pilot, selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).content)


def field_error(pilot: Pilot, field_id: str) -> str:
    return pilot.app.screen.query_one(f"#{field_id}-field", LabelledField).error


def notebook_of(app: BptwinApp) -> NotebookService:
    assert app.notebook_service is not None
    return app.notebook_service


# ---- the steps ---------------------------------------------------------------------------------


async def register_the_supervisor(pilot: Pilot, app: BptwinApp) -> None:
    """First start: the empty notebook asks for the first person, who becomes supervisor."""
    await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen), "the login screen")
    await pilot.pause()
    assert app.screen.first_run
    assert app.screen.query("#login-pin2")  # the first start asks for the PIN twice
    # The PINs typed twice differ: nothing is stored, both are typed again.
    await pilot.press(*LEAD, "enter", *LEAD_PIN, "enter", *"2469", "enter")
    await settle(pilot)
    assert "differ" in field_error(pilot, "login-pin")
    assert notebook_of(app).operators.list_operators() == []
    await pilot.press(*LEAD_PIN, "enter", *LEAD_PIN, "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")
    assert app.operator == LEAD and LEAD in app.sub_title
    [lead] = notebook_of(app).operators.list_operators()
    assert (lead.name, lead.role) == (LEAD, OperatorRole.SUPERVISOR)
    # The simulated batch is acquired and its readings reach the dashboard.
    await wait_for(
        pilot,
        lambda: app.station is not None and app.station.snapshot().readings_total > 20,
        "the station acquiring readings",
        timeout_s=120,
    )


async def create_the_batch_and_inoculum(pilot: Pilot, app: BptwinApp) -> None:
    """The batch screen (b): a new batch record, then the inoculum (no-go refused, then go)."""
    await go(pilot, "b", BatchSetupScreen)
    screen = app.screen
    await wait_for(pilot, lambda: screen.query_one("#number", Input).value == str(BATCH), "no.")
    await type_text(pilot, "phase", "B")
    await type_text(pilot, "strain", "X-33 pPICZ-A")
    await type_text(pilot, "medium-lot", "BSM-1207")
    await type_text(pilot, "vessel", "V1")
    await press(pilot, "ctrl+s")
    await wait_for(pilot, lambda: "Created batch 1" in shown(pilot, "#batch-message"), "created")
    side = shown(pilot, "#batch-side")
    assert "Batch 1 · phase B" in side and "✗ ph never done" in side
    assert app.batches.get(REACTOR) == BATCH  # the dashboard and the other screens follow it
    batch = notebook_of(app).batches.get_batch(BATCH)
    assert (batch.phase.value, batch.strain, batch.medium_lot, batch.vessel) == (
        "B",
        "X-33 pPICZ-A",
        "BSM-1207",
        "V1",
    )
    assert batch.reactor_id == REACTOR and batch.status is BatchStatus.SETUP
    # OD600 0.9 x 10 = 9: outside 2-6, a no-go the screen refuses without a reason.
    await type_text(pilot, "inoculum-od", "0.9")
    await type_text(pilot, "inoculum-dilution", "10")
    await type_text(pilot, "inoculum-volume", "100")
    await type_text(pilot, "inoculum-clean", "y")
    await press(pilot, "ctrl+g")
    assert "outside 2.0-6.0" in field_error(pilot, "inoculum-od")
    assert notebook_of(app).preparation.get_inoculum(BATCH) is None
    await type_text(pilot, "inoculum-od", "0.42")
    await press(pilot, "ctrl+g")
    await wait_for(pilot, lambda: "Inoculum recorded" in shown(pilot, "#batch-message"), "inoc.")
    assert "OD600 4.2 · GO" in shown(pilot, "#batch-message")
    assert "Inoculum: OD600 4.2 GO" in shown(pilot, "#batch-side")
    inoculum = notebook_of(app).preparation.get_inoculum(BATCH)
    assert inoculum is not None and inoculum.go and inoculum.od600 == pytest.approx(4.2)


async def run_wizard(
    pilot: Pilot, menu_key: str, steps: list[dict[str, str]], expect: str
) -> CalibrationWizardScreen:
    """From the calibration menu: open a wizard, type each step's values (ctrl+g takes them),
    check the verdict shown, store it (ctrl+s)."""
    await go(pilot, menu_key, CalibrationWizardScreen)
    wizard = pilot.app.screen
    assert isinstance(wizard, CalibrationWizardScreen)
    for step in steps:
        for field_id, value in step.items():
            await type_text(pilot, field_id, value)
        await press(pilot, "ctrl+g")
    result = shown(pilot, "#wizard-result")
    assert result.startswith(expect), result
    await press(pilot, "ctrl+s")
    await wait_for(pilot, lambda: wizard.saved, "the calibration stored")
    assert "Stored calibration" in shown(pilot, ".entry-status")
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CalibrationMenuScreen), "menu")
    await settle(pilot)
    return wizard


async def calibrate_every_channel_ph_failing_then_passing(pilot: Pilot, app: BptwinApp) -> None:
    """The calibration menu (ctrl+l on the batch screen) and its five wizards, each value typed
    by hand at the bench: the pH electrode fails (slope 90 %), is cleaned and passes; DO,
    off-gas, pressure zero and the OD-probe blank pass."""
    await go(pilot, "ctrl+l", CalibrationMenuScreen)
    assert f"batch {BATCH}" in app.screen.sub_title
    assert "Blocks the batch start" in shown(pilot, "#calibration-detail")
    ph = [{"e_first_mv": "2"}, {"temperature": "25", "e_second_mv": "162"}]
    failed = await run_wizard(pilot, "1", ph, "FAIL")
    assert failed.saved[0].passed is False
    assert "ph: last calibration failed" in shown(pilot, "#calibration-detail")
    ph = [{"e_first_mv": "0"}, {"temperature": "25", "e_second_mv": "172"}]
    await run_wizard(pilot, "1", ph, "PASS")
    await run_wizard(pilot, "2", [{"zero": "0.3"}, {"span": "99.5", "t63": "11"}], "PASS")
    offgas = [{"o2_zero": "0.02", "co2_zero": "0.01"}, {"o2_span": "20.9", "co2_span": "0.04"}]
    await run_wizard(pilot, "3", offgas, "PASS")
    await run_wizard(pilot, "4", [{"zero": "0.001"}], "PASS")
    await run_wizard(pilot, "5", [{"blank": "0.03"}], "PASS")
    assert "All mandatory calibrations are current" in shown(pilot, "#calibration-detail")
    table = app.screen.query_one(DataTable)
    rows = [table.get_row_at(i) for i in range(table.row_count)]
    results = {str(row[0]): str(row[3]) for row in rows}
    assert set(results) == {"ph", "do", "offgas_o2", "offgas_co2", "pressure", "od_probe"}
    assert set(results.values()) == {"pass"}, results
    notebook = notebook_of(app)
    ph_records = notebook.calibrations.list_calibrations(channel="ph")
    assert sorted(r.passed for r in ph_records) == [False, True]
    for channel in ("do", "offgas_o2", "offgas_co2", "pressure", "od_probe"):
        [record] = notebook.calibrations.list_calibrations(channel=channel)
        assert record.passed and record.performed_by == LEAD, channel
        assert record.measured  # what was typed is kept with the record
    assert notebook.calibrations.calibration_blockers(BATCH) == []
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, BatchSetupScreen), "the batch screen")


async def start_the_batch(pilot: Pilot, app: BptwinApp) -> datetime:
    """Back on the batch screen: everything is ready, ctrl+r starts the batch (no override)."""
    screen = app.screen
    assert isinstance(screen, BatchSetupScreen)
    await wait_for(pilot, lambda: screen.query_one("#batch-side").has_class("-ready"), "ready")
    await press(pilot, "ctrl+r")
    await wait_for(pilot, lambda: "is running since" in shown(pilot, "#batch-message"), "start")
    assert "override" not in shown(pilot, "#batch-message")
    assert "status running" in shown(pilot, "#batch-side")
    batch = notebook_of(app).batches.get_batch(BATCH)
    assert batch.status is BatchStatus.RUNNING and batch.inoculated_at is not None
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")
    return batch.inoculated_at.astimezone(timezone.utc)


def _entry_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


async def wait_for_the_station_clock(pilot: Pilot, app: BptwinApp, moment: datetime) -> None:
    """The simulated batch runs SPEED times faster: wait until its clock has passed ``moment``."""
    await wait_for(
        pilot,
        lambda: app.station_now() >= moment.timestamp(),
        f"the station clock at {moment:%H:%M}",
        timeout_s=300,
    )


async def take_one_sample(
    pilot: Pilot, slot_h: int, taken_at: datetime, od_raw: str, dilution: str
) -> None:
    """Fill the sample form as written on the sampling sheet and save it (ctrl+s)."""
    screen = pilot.app.screen
    assert isinstance(screen, SampleEntryScreen)
    # The time point as on the sheet: at SPEED x a slot's 15 min window lasts seconds of wall
    # time, so the slot the form prefills (ctrl+n) may already be the next one.
    await type_text(pilot, "timepoint", str(slot_h))
    await type_text(pilot, "taken-at", _entry_time(taken_at))
    await type_text(pilot, "od-raw", od_raw)
    await type_text(pilot, "dilution", dilution)
    await type_text(pilot, "microscopy-clean", "y")
    await press(pilot, "ctrl+s")
    await wait_for(pilot, lambda: "Saved sample" in shown(pilot, "#sample-message"), "saved")


async def take_the_samples_at_the_sop_times(
    pilot: Pilot, app: BptwinApp, inoculated_at: datetime
) -> None:
    """The samples screen (s): the 0 h sample at inoculation, the 2 h sample when it is due
    on the batch's clock; each lands in its SOP slot."""
    await go(pilot, "s", SampleEntryScreen)
    screen = app.screen
    assert isinstance(screen, SampleEntryScreen) and screen.required_batch == BATCH
    await take_one_sample(pilot, 0, inoculated_at, "0.42", "1")
    assert "OD600 0.42" in shown(pilot, "#sample-message")
    two_hours = inoculated_at + timedelta(hours=2)
    await wait_for_the_station_clock(pilot, app, two_hours + timedelta(minutes=1))
    await screen.load_schedule().wait()  # as its refresh timer would, a little sooner
    await settle(pilot)
    await take_one_sample(pilot, 2, two_hours, "0.31", "5")
    assert "OD600 1.55" in shown(pilot, "#sample-message")
    table = screen.query_one("#schedule", DataTable)
    assert [str(table.get_row_at(i)[2]) for i in (0, 1)] == ["taken", "taken"]
    samples = notebook_of(app).samples.list_samples(BATCH)
    assert [(s.sop_timepoint_h, round(s.od600, 3)) for s in samples] == [(0.0, 0.42), (2.0, 1.55)]
    for sample, due in zip(samples, (inoculated_at, two_hours), strict=True):
        offset = abs(sample.taken_at.astimezone(timezone.utc) - due)
        assert offset <= timedelta(minutes=1), (sample.taken_at, due)
        assert sample.microscopy_clean and sample.entered_by == LEAD
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")


async def acknowledge_the_alarm_and_log_a_deviation(pilot: Pilot, app: BptwinApp) -> None:
    """The alarm screen (a): the broth-temperature alarm is acknowledged (enter); the screen
    offers a deviation prefilled from it (y), completed and saved (ctrl+s)."""
    await go(pilot, "a", AlarmScreen)
    screen = app.screen
    assert isinstance(screen, AlarmScreen)

    def ours() -> int | None:
        rows = [i for i, view in enumerate(screen.alarms) if view.rule == ALARM_RULE]
        return rows[0] if rows else None

    await wait_for(pilot, lambda: ours() is not None, "the broth alarm listed")
    table = screen.query_one(DataTable)
    table.focus()
    table.move_cursor(row=0)
    for _ in range(ours() or 0):
        await pilot.press("down")
    await pilot.pause()
    alarm = screen.selected()
    assert alarm is not None and alarm.rule == ALARM_RULE and alarm.unacknowledged
    assert f"{REACTOR}/{ALARM_RULE}/hi" in str(table.get_row_at(ours() or 0)[3])
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDeviationScreen), "the offer")
    await pilot.press("y")
    await wait_for(pilot, lambda: isinstance(app.screen, DeviationFormScreen), "the form")
    await settle(pilot)
    form = app.screen
    assert form.query_one("#category", Input).value == "alarm"
    assert alarm.alarm_id in form.query_one("#description", TextArea).text
    await type_text(pilot, "level", "1")
    await type_text(pilot, "root-cause", "bench check limit set below the process temperature")
    await type_text(pilot, "corrective-action", "limit kept for the exercise; no process change")
    await type_text(pilot, "impact", "none on the batch")
    await press(pilot, "ctrl+s")
    await wait_for(pilot, lambda: isinstance(app.screen, AlarmScreen), "back on the alarms")
    await wait_for(pilot, lambda: "logged for" in shown(pilot, "#alarm-detail"), "logged")
    notebook = notebook_of(app)
    events = notebook.alarms.list_alarm_events(reactor=REACTOR, limit=100_000)
    acknowledged = [
        e
        for e in events
        if e.rule == f"{ALARM_RULE}/hi" and e.state == "active_acknowledged" and e.actor == LEAD
    ]
    assert acknowledged, [(e.rule, e.state, e.actor) for e in events]
    [deviation] = notebook.deviations.list_deviations(BATCH)
    assert deviation.category == "alarm" and deviation.level == 1
    assert alarm.alarm_id in deviation.description and deviation.reported_by == LEAD
    assert deviation.root_cause.startswith("bench check limit")
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")


async def write_a_note(pilot: Pilot, app: BptwinApp) -> None:
    """The notes screen (o): a free note, saved with ctrl+s and listed."""
    await go(pilot, "o", NotesScreen)
    await type_text(pilot, "note-text", "antifoam 0.2 mL at 2.5 h; foam down within a minute")
    await press(pilot, "ctrl+s")
    await wait_for(pilot, lambda: app.screen.query_one("#notes", DataTable).row_count == 1, "row")
    [note] = notebook_of(app).notes.list_notes(BATCH)
    assert note.text.startswith("antifoam 0.2 mL") and note.author == LEAD
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")


async def sign_in_the_dialog(pilot: Pilot, signer: str, pin: str) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SigningDialog), "the dialog")
    await settle(pilot)
    await type_text(pilot, "signer", signer)
    await type_text(pilot, "signer-pin", pin)
    await pilot.press("enter")
    await wait_for(pilot, lambda: not isinstance(pilot.app.screen, SigningDialog), "signed")
    await settle(pilot)


async def end_the_batch_and_sign_its_closure(pilot: Pilot, app: BptwinApp) -> None:
    """The batch screen (b), F7: end (ctrl+e twice), the closure (ctrl+s, the reason for the
    missing SOP samples required), then the supervisor signs it closed (ctrl+k)."""
    await go(pilot, "b", BatchSetupScreen)
    await wait_for(pilot, lambda: app.screen.state is not None, "the batch open")
    await pilot.press("f7")
    await wait_for(pilot, lambda: isinstance(app.screen, BatchEndScreen), "the end screen")
    await settle(pilot)
    assert "Samples 2 of 8" in shown(pilot, "#end-side")
    await press(pilot, "ctrl+e")
    assert "Press ctrl+e again" in shown(pilot, "#end-message")
    await press(pilot, "ctrl+e")
    await wait_for(pilot, lambda: "Batch 1 ended" in shown(pilot, "#end-message"), "ended")
    notebook = notebook_of(app)
    assert notebook.batches.get_batch(BATCH).status is BatchStatus.COMPLETE
    await type_text(pilot, "final-od600", "1.6")
    await type_text(pilot, "harvest-volume", "1050")
    await press(pilot, "ctrl+s")
    assert "2 of the 8 SOP samples" in field_error(pilot, "missing-reason")
    assert notebook.batches.get_closure(BATCH) is None
    await type_text(pilot, "missing-reason", "training day: ended after the 2 h sample")
    await press(pilot, "ctrl+s")
    await wait_for(pilot, lambda: "Closure recorded" in shown(pilot, "#end-message"), "closure")
    closure = notebook.batches.get_closure(BATCH)
    assert closure is not None and closure.harvest_volume_ml == 1050.0
    await pilot.press("ctrl+k")
    await sign_in_the_dialog(pilot, LEAD, "0000")  # a wrong PIN signs nothing
    assert "wrong PIN" in shown(pilot, "#end-message")
    assert notebook.signatures.list_signatures(batch_number=BATCH) == []
    await pilot.press("ctrl+k")
    await sign_in_the_dialog(pilot, LEAD, LEAD_PIN)
    await wait_for(pilot, lambda: "closed: signed by" in shown(pilot, "#end-message"), "signed")
    [signature] = notebook.signatures.list_signatures(batch_number=BATCH)
    assert signature.signer == LEAD and signature.meaning == SignatureMeaning.CLOSED
    assert notebook.signatures.verify_signatures() == []
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, BatchSetupScreen), "the batch screen")
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")


async def decide_the_acceptance(pilot: Pilot, app: BptwinApp) -> None:
    """The review screen (r): the criteria are listed; accepting a failing batch is refused,
    the supervisor rejects it for training with a reason."""
    await go(pilot, "r", AcceptanceScreen)
    screen = app.screen
    assert isinstance(screen, AcceptanceScreen)
    await wait_for(pilot, lambda: screen.evaluation is not None, "the evaluation", 300)
    checklist = shown(pilot, "#acceptance-text")
    assert all(f"{n}. " in checklist for n in range(1, 6)), checklist
    assert screen.evaluation.verdict != "pass"  # 2 of 8 samples, ended after hours
    await type_text(pilot, "acceptance-reason", "training day batch: 2 of 8 samples")
    await type_text(pilot, "acceptance-supervisor", LEAD)
    await type_text(pilot, "acceptance-pin", LEAD_PIN)
    await press(pilot, "ctrl+a")
    await wait_for(pilot, lambda: "Not recorded" in shown(pilot, "#acceptance-message"), "refused")
    assert latest_decision(notebook_of(app), BATCH) is None
    await type_text(pilot, "acceptance-pin", LEAD_PIN)
    await press(pilot, "ctrl+x")
    await wait_for(pilot, lambda: screen.outcome is not None, "the decision", 300)
    assert f"recorded by {LEAD}" in shown(pilot, "#acceptance-message")
    decision = latest_decision(notebook_of(app), BATCH)
    assert decision is not None and decision.decided_by == LEAD
    assert decision.decision.value == "reject"
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")


async def export_the_batch(pilot: Pilot, app: BptwinApp) -> tuple[Path, float]:
    """Export (e): report and dataset written in a worker while the progress bar moves."""
    started = time.monotonic()
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), "the export dialog")
    export = app.screen
    assert isinstance(export, ExportScreen)
    await wait_for(pilot, lambda: export.result is not None or export.problem, "export", 600)
    seconds = time.monotonic() - started
    assert export.result is not None, export.problem
    assert "batch 1" in str(export.query_one("#export-title").content)
    report = export.result.path_of("report-html")
    assert report is not None and report.exists()
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "the dashboard")
    return report, seconds


def report_sections(report: Path) -> dict[str, str]:
    """The plain text of each <section> of the HTML report, by its id."""
    markup = report.read_text(encoding="utf-8")
    found = re.findall(r'<section id="([a-z0-9_-]+)">(.*?)</section>', markup, flags=re.S)
    plain = {}
    for key, body in found:
        text = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
        text = re.sub(r"<[^>]+>", " ", text)
        plain[key] = re.sub(r"\s+", " ", html.unescape(text)).strip()
    return plain


def check_the_reports_sections(report: Path) -> None:
    """Every section, in order, and in each what the day put there."""
    sections = report_sections(report)
    assert list(sections) == list(REPORT_SECTIONS)
    for key, title in REPORT_SECTIONS.items():
        assert sections[key].startswith(title), (key, sections[key][:80])
    assert "X-33 pPICZ-A" in sections["header"]
    calibrations = sections["calibrations"]
    assert "ph" in calibrations and "FAIL" in calibrations.upper()
    assert "OD600 4.2" in sections["inoculum"] or "4.2" in sections["inoculum"]
    assert "0.42" in sections["samples"] and "1.55" in sections["samples"]
    assert ALARM_RULE in sections["alarms"] and LEAD in sections["alarms"]
    assert "no process change" in sections["deviations"]  # the corrective action
    assert "antifoam 0.2 mL" in sections["notes"]
    assert "1 050 mL" in sections["closure"]  # thousands grouped with a space
    assert f"Supervisor decision: REJECT by {LEAD}" in sections["acceptance"]
    assert LEAD in sections["signatures"]


async def quit_the_app(pilot: Pilot, app: BptwinApp) -> None:
    """q: the station stops and flushes in a worker, then the app exits."""
    await pilot.press("q")
    assert app.stopping
    # Held here: a finished worker leaves app.workers, so it is not looked up again.
    (stopping,) = [worker for worker in app.workers if worker.name == "stopping"]
    await wait_for(pilot, lambda: stopping.is_finished, "the station stopped", timeout_s=120)
    await pilot.pause(0.1)


# ---- the day ----------------------------------------------------------------------------------


@pytest.mark.timeout(1800)  # minutes of work on a shared machine; the figure is printed
@pytest.mark.parametrize("notebook_url", ["postgres"], indirect=True)
async def test_the_operators_day(
    notebook_url: str, influx_url: str, influx_database: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    durations: list[tuple[str, float]] = []

    async def step(run: Coroutine[Any, Any, T]) -> T:
        started = time.monotonic()
        print(f"\n{started - began:6.1f} s  {run.__name__}", flush=True)
        try:
            return await run
        finally:
            durations.append((run.__name__, time.monotonic() - started))

    settings = day_settings(tmp_path / "station", notebook_url, influx_url, influx_database)
    app = BptwinApp(settings, station_factory=station_for, require_login=True)  # as bptwin run
    async with app.run_test(size=(120, 40)) as pilot:
        await step(register_the_supervisor(pilot, app))
        await step(create_the_batch_and_inoculum(pilot, app))
        await step(calibrate_every_channel_ph_failing_then_passing(pilot, app))
        inoculated_at = await step(start_the_batch(pilot, app))
        await step(take_the_samples_at_the_sop_times(pilot, app, inoculated_at))
        await step(acknowledge_the_alarm_and_log_a_deviation(pilot, app))
        await step(write_a_note(pilot, app))
        await step(end_the_batch_and_sign_its_closure(pilot, app))
        await step(decide_the_acceptance(pilot, app))
        report, export_s = await step(export_the_batch(pilot, app))
        check_the_reports_sections(report)
        await quit_the_app(pilot, app)
    print(f"\nthe operator's day: {time.monotonic() - began:.1f} s wall")
    for name, seconds in durations:
        print(f"  {name}: {seconds:.1f} s")
    print(f"  the export alone: {export_s:.1f} s")
