"""Calibration wizards (pH, DO, off-gas, pressure zero, OD-probe blank), their menu and history.

UI only: the steps, limits and arithmetic are eln.calibration's; the notebook stores the
records (in a thread). Live values come in through ``show_snapshot`` / ``show_reading`` (a wizard
watches the App's snapshot while it is on top); a value may also be typed by hand when there is
no live signal.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker

from bptwin.database.reading import Quality, Reading
from bptwin.eln import calibration as cal
from bptwin.eln import form_rules as check
from bptwin.eln.errors import NotebookError, NotebookPermissionError, NotebookValidationError
from bptwin.eln.notebook import CalibrationPeriod, Notebook
from bptwin.eln.records import CalibrationView
from bptwin.screens.entry_widgets import ENTRY_CSS, LabelledField, field_for
from bptwin.screens.live import follow_snapshots
from bptwin.screens.notebook_screen import NotebookScreen
from bptwin.screens.safe_text import escape
from bptwin.twin.live import LiveSnapshot

# Channels that give the buffer temperature for the pH wizard, best first.
PH_TEMPERATURE_CHANNELS = ("temp_ph_probe", "temp_broth")
DEFAULT_BUFFER_TEMPERATURE_C = 25.0

WIZARD_CSS = (
    ENTRY_CSS
    + """
.wizard-body { height: 1fr; padding: 0 1; }
.wizard-instruction { height: auto; color: $text-muted; }
.wizard-live { height: 1; padding-left: 19; }
.wizard-live.-stable { color: $success; text-style: bold; }
.wizard-taken { height: auto; margin-top: 1; }
.wizard-result { height: auto; border: round $primary; padding: 0 1; display: none; }
.wizard-result.-shown { display: block; }
.wizard-result.-pass { border: round $success; }
.wizard-result.-fail { border: round $error; }
.wizard-accept { height: auto; display: none; }
.wizard-accept.-shown { display: block; }
.entry-status { height: auto; padding: 0 1; }
.entry-status.-error { color: $error; }
"""
)


class CalibrationSaved(Message):
    """Calibration records were stored (one per channel; two for off-gas)."""

    def __init__(self, records: tuple[CalibrationView, ...]) -> None:
        super().__init__()
        self.records = records


def _result(record: CalibrationView) -> str:
    return "pass" if record.passed else ("accepted" if record.override_reason else "FAIL")


def stored_text(records: Sequence[CalibrationView]) -> str:
    """What was stored, each record with its own verdict: "calibration #4 offgas_o2 FAIL,
    #5 offgas_co2 pass" (one failed channel does not make its partner fail)."""
    parts = []
    for record in records:
        verdict = _result(record)
        if record.override_reason:
            verdict += f" by {record.performed_by}"
        parts.append(f"#{record.id} {record.channel} {verdict}")
    noun = "calibration" if len(records) == 1 else "calibrations"
    return f"{noun} " + ", ".join(parts)


def _short_time(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%m-%d %H:%M")


class CalibrationWizardScreen(NotebookScreen[None]):
    """One calibration, step by step: live reading taken when stable, result, record."""

    DEFAULT_CSS = WIZARD_CSS
    BINDINGS = [
        Binding("ctrl+g", "take", "Take reading"),
        Binding("ctrl+r", "mark_step", "Gas switched now"),
        Binding("ctrl+b", "redo", "Redo step"),
        Binding("ctrl+s", "save", "Save record"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self,
        notebook: Notebook,
        operator: str,
        kind: cal.CalibrationKind | str,
        *,
        batch_number: int | None = None,
        reactor: str = "R1",
    ) -> None:
        super().__init__(notebook, operator, batch_number=batch_number, reactor=reactor)
        self.kind = cal.CalibrationKind(kind)
        self.steps = cal.PLANS[self.kind]
        self.step_index = 0
        self.detectors = {
            signal.key: cal.StabilityDetector(signal.window_s, signal.tolerance)
            for step in self.steps
            for signal in step.signals
        }
        self.values: dict[str, float] = {}
        self.sources: dict[str, str] = {}
        self.stable_for: dict[str, float | None] = {}
        self.t63_s: float | None = None
        self.recorder: cal.StepRecorder | None = None
        self.outcomes: tuple[cal.CalibrationOutcome, ...] = ()
        self.saved: tuple[CalibrationView, ...] = ()
        self.live_temperature_c: float | None = None
        self.last_seen: dict[str, float] = {}
        # The electrode potential is recovered from the transmitter's pH with the calibration
        # in force (ideal electrode until one is loaded).
        self.ph_reference = (100.0, 0.0)
        self.previous_offgas: dict[str, float] = {}

    # ---- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(classes="wizard-body"):
            yield Static("", id="wizard-title", classes="entry-title")
            yield Static("", id="wizard-instruction", classes="wizard-instruction")
            for step in self.steps:
                for signal in step.signals:
                    with Vertical(id=f"signal-{signal.key}", classes="wizard-signal"):
                        yield Static(
                            "live: waiting for readings",
                            id=f"live-{signal.key}",
                            classes="wizard-live",
                        )
                        yield LabelledField(
                            signal.label,
                            signal.key,
                            hint="blank = live",
                            fields=(signal.label,),
                        )
            if self.kind is cal.CalibrationKind.PH:
                yield LabelledField(
                    "Buffer temp °C",
                    "temperature",
                    hint="blank = live / 25",
                    fields=("buffer temperature",),
                )
            if any(step.step_response for step in self.steps):
                yield LabelledField(
                    "t63 s", "t63", hint="blank = from the live step", fields=("t63",)
                )
            yield Static("", id="wizard-taken", classes="wizard-taken")
            yield Static("", id="wizard-result", classes="wizard-result")
            with Vertical(id="accept-box", classes="wizard-accept"):
                yield Static(
                    "A supervisor may accept the failed calibration: name, PIN, reason, ctrl+s.",
                    classes="wizard-instruction",
                )
                yield LabelledField("Supervisor", "accept-supervisor", fields=("operator",))
                yield LabelledField("PIN", "accept-pin", password=True, width=10)
                yield LabelledField(
                    "Accept reason", "accept-reason", width=30, fields=("override reason",)
                )
        yield Static("", classes="entry-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Calibration"
        where = f"batch {self.batch_number}" if self.batch_number is not None else "bench"
        self.sub_title = (
            f"{cal.KIND_LABELS[self.kind]} · {where} · {self.reactor} · {self.operator}"
        )
        self._enter_step(0)
        self.load_context()
        follow_snapshots(self, self.show_snapshot)

    @work(exclusive=True, group="calibration-context", exit_on_error=False)
    async def load_context(self) -> None:
        """The pH calibration in force (for mV from pH) and the last off-gas readings (drift)."""
        try:
            if self.kind is cal.CalibrationKind.PH:
                period = await asyncio.to_thread(
                    self.notebook.calibration_in_force, "ph", self.notebook.now()
                )
                results = period.record.results if period is not None else {}
                slope, offset = results.get("slope_percent"), results.get("offset_mv")
                if isinstance(slope, int | float) and isinstance(offset, int | float) and slope:
                    self.ph_reference = (float(slope), float(offset))
            elif self.kind is cal.CalibrationKind.OFFGAS:
                self.previous_offgas = await asyncio.to_thread(self._previous_offgas)
        except NotebookError as error:
            self._say(f"Could not read earlier calibrations: {error}", error=True)
            return
        self._show_step_texts()

    def _previous_offgas(self) -> dict[str, float]:
        measured: dict[str, dict[str, Any] | None] = {}
        for channel in ("offgas_o2", "offgas_co2"):
            periods = self.notebook.calibration_history(channel, limit=20)
            accepted = next((p for p in periods if p.in_force_ever), None)
            measured[channel] = None if accepted is None else dict(accepted.record.measured)
        return cal.previous_offgas_readings(measured["offgas_o2"], measured["offgas_co2"])

    # ---- steps ------------------------------------------------------------------------------

    @property
    def step(self) -> cal.CalibrationStep | None:
        return self.steps[self.step_index] if self.step_index < len(self.steps) else None

    def _enter_step(self, index: int) -> None:
        self.step_index = index
        step = self.step
        current = {signal.key for signal in step.signals} if step is not None else set()
        for each in self.steps:
            for signal in each.signals:
                self.query_one(f"#signal-{signal.key}").display = signal.key in current
                if signal.key in current:
                    self.detectors[signal.key].reset()
                    self._show_live(signal)
        if self.query("#t63-field"):
            self.query_one("#t63-field").display = step is not None and step.step_response
        if step is not None and step.signals:
            self.query_one(f"#{step.signals[0].key}-field", LabelledField).input.focus()
        self._show_step_texts()
        self._show_taken()
        self.refresh_bindings()

    def _show_step_texts(self) -> None:
        step = self.step
        title = self.query_one("#wizard-title", Static)
        instruction = self.query_one("#wizard-instruction", Static)
        if step is None:
            title.update(escape(f"{cal.KIND_LABELS[self.kind]} · result"))
            instruction.update("Check the result; ctrl+s stores it, ctrl+b redoes the last step.")
            return
        title.update(
            escape(
                f"{cal.KIND_LABELS[self.kind]} · step {self.step_index + 1} of "
                f"{len(self.steps)}: {step.title}"
            )
        )
        text = step.instruction + " ctrl+g takes the live value once stable, or the typed one."
        if step.step_response:
            text += " Press ctrl+r the moment the gas is switched."
        if any(signal.from_ph for signal in step.signals):
            slope, offset = self.ph_reference
            text += (
                f" mV from the live pH via the calibration in force"
                f" ({slope:.1f} %, {offset:+.1f} mV)."
            )
        instruction.update(escape(text))

    def _show_taken(self) -> None:
        lines = []
        for step in self.steps:
            for signal in step.signals:
                if signal.key in self.values:
                    source = self.sources[signal.key]
                    held = self.stable_for.get(signal.key)
                    how = f"live, stable {held:.0f} s" if held is not None else source
                    lines.append(
                        f"✓ {step.title}: {signal.label} {self.values[signal.key]:.3f} ({how})"
                    )
        if self.t63_s is not None:
            lines.append(f"✓ t63 {self.t63_s:.1f} s")
        self.query_one("#wizard-taken", Static).update(escape("\n".join(lines)))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "mark_step":
            step = self.step
            return step is not None and step.step_response
        if action == "take":
            return self.step is not None
        if action == "save":
            return None if not self.outcomes or self.saved else True
        return True

    # ---- live data --------------------------------------------------------------------------

    def show_snapshot(self, snapshot: LiveSnapshot) -> None:
        """Feed the newest readings of this reactor's channels (called by the app)."""
        wanted = {signal.channel for step in self.steps for signal in step.signals}
        if self.kind is cal.CalibrationKind.PH:
            wanted.update(PH_TEMPERATURE_CHANNELS)
        for channel in sorted(wanted):
            reading = snapshot.latest.get((self.reactor, channel))
            if reading is not None and reading.timestamp > self.last_seen.get(channel, -math.inf):
                self.show_reading(reading)

    def show_reading(self, reading: Reading) -> None:
        """One live reading; readings of other reactors, bad quality or NaN are ignored."""
        if reading.reactor != self.reactor or reading.quality is Quality.BAD:
            return
        if not math.isfinite(reading.value):
            return
        self.last_seen[reading.channel] = max(
            reading.timestamp, self.last_seen.get(reading.channel, -math.inf)
        )
        if reading.channel == self._temperature_channel(reading.channel):
            self.live_temperature_c = reading.value
            self._field("temperature").set_hint(f"live {reading.value:.1f} °C")
        step = self.step
        if step is None:
            return
        for position, signal in enumerate(step.signals):
            if signal.channel != reading.channel:
                continue
            value = self._signal_value(signal, reading)
            self.detectors[signal.key].add(reading.timestamp, value)
            if step.step_response and position == 0 and self.recorder is not None:
                self.recorder.add(reading.timestamp, value)
            self._show_live(signal, reading)

    def _temperature_channel(self, channel: str) -> str | None:
        """The buffer-temperature channel this reading may stand for (probe first)."""
        if self.kind is not cal.CalibrationKind.PH or channel not in PH_TEMPERATURE_CHANNELS:
            return None
        if channel != PH_TEMPERATURE_CHANNELS[0] and PH_TEMPERATURE_CHANNELS[0] in self.last_seen:
            return None
        return channel

    def _signal_value(self, signal: cal.SignalSpec, reading: Reading) -> float:
        if not signal.from_ph or reading.unit == "mV":
            return reading.value
        slope, offset = self.ph_reference
        return cal.mv_from_ph(reading.value, slope, offset, self._conversion_temperature())

    def _conversion_temperature(self) -> float:
        typed = self._field("temperature").value.strip()
        try:
            return float(typed.replace(",", "."))
        except ValueError:
            pass
        if self.live_temperature_c is not None:
            return self.live_temperature_c
        return DEFAULT_BUFFER_TEMPERATURE_C

    def _show_live(self, signal: cal.SignalSpec, reading: Reading | None = None) -> None:
        state = self.detectors[signal.key].state()
        text = f"live: {state.describe(signal.unit)}"
        if reading is not None and signal.from_ph and reading.unit != "mV":
            text += f" (pH {reading.value:.3f})"
        if self.recorder is not None and self.step is not None and self.step.step_response:
            text += f" · step marked {len(self.recorder.readings)} readings"
        line = self.query_one(f"#live-{signal.key}", Static)
        line.update(escape(text))
        line.set_class(state.stable, "-stable")

    # ---- actions ----------------------------------------------------------------------------

    def action_mark_step(self) -> None:
        """The gas was switched now: the t63 clock starts at the latest reading's time."""
        step = self.step
        if step is None or not step.step_response:
            return
        signal = step.signals[0]
        start = self.values.get("zero")
        at = self.last_seen.get(signal.channel)
        if at is None or start is None:
            self._say("No live signal to time the step: type t63 by hand.", error=True)
            return
        self.recorder = cal.StepRecorder(step_at=at, start_value=start)
        self.detectors[signal.key].reset()
        self._say(f"Step marked: timing the response from {start:.3g} {signal.unit}.")
        self._show_live(signal)

    def action_take(self) -> None:
        step = self.step
        if step is None:
            return
        self._clear_errors()
        taken: dict[str, tuple[float, str, float | None]] = {}
        for signal in step.signals:
            field = self._field(signal.key)
            typed = field.value.strip()
            if typed:
                try:
                    value = check.number(signal.label, typed)
                except NotebookValidationError as error:
                    self._show_error(error)
                    return
                assert value is not None
                taken[signal.key] = (value, "typed by hand", None)
                continue
            detector = self.detectors[signal.key]
            state = detector.state()
            if not state.stable:
                field.show_error(
                    f"not stable yet ({state.describe(signal.unit)}); wait for "
                    f"± {signal.tolerance:g} {signal.unit} over {signal.window_s:.0f} s, "
                    "or type the value by hand"
                )
                field.input.focus()
                self._say("Not taken: the reading is not stable yet", error=True)
                return
            assert state.mean is not None
            taken[signal.key] = (state.mean, "live", detector.held_s)
        if step.step_response and not self._take_t63(step, taken):
            return
        for key, (value, source, held) in taken.items():
            self.values[key] = value
            self.sources[key] = source
            self.stable_for[key] = held
        if self.step_index + 1 < len(self.steps):
            self._say(f"Taken. Next: {self.steps[self.step_index + 1].title}.")
            self._enter_step(self.step_index + 1)
            return
        self._enter_step(len(self.steps))
        self._compute()

    def _take_t63(
        self, step: cal.CalibrationStep, taken: dict[str, tuple[float, str, float | None]]
    ) -> bool:
        field = self._field("t63")
        typed = field.value.strip()
        if typed:
            try:
                self.t63_s = check.number("t63", typed, minimum=0.0, unit="s")
            except NotebookValidationError as error:
                self._show_error(error)
                return False
            return True
        if self.recorder is None:
            field.show_error(
                "press ctrl+r the moment you switch the gas, or type t63 in seconds by hand"
            )
            self._say("Not taken: the step response was not timed", error=True)
            return False
        final = taken[step.signals[0].key][0]
        self.t63_s = self.recorder.t63(final)
        if self.t63_s is None:
            field.show_error("the signal never reached 63 % of the step; redo the step")
            self._say("Not taken: no t63 in the recorded response", error=True)
            return False
        return True

    def _compute(self) -> None:
        temperature = None
        if self.kind is cal.CalibrationKind.PH:
            typed = self._field("temperature").value.strip()
            try:
                temperature = (
                    check.number("buffer temperature", typed, unit="°C")
                    if typed
                    else self.live_temperature_c or DEFAULT_BUFFER_TEMPERATURE_C
                )
            except NotebookValidationError as error:
                self._show_error(error)
                self._enter_step(len(self.steps) - 1)
                return
        try:
            self.outcomes = cal.compute_outcomes(
                self.kind,
                self.values,
                temperature_c=temperature,
                t63_s=self.t63_s,
                stable_for_s=self.stable_for,
                previous=self.previous_offgas,
            )
        except NotebookValidationError as error:
            self._show_error(error)
            self._enter_step(len(self.steps) - 1)
            return
        passed = all(outcome.passed for outcome in self.outcomes)
        lines = [f"{'PASS' if passed else 'FAIL'} · {cal.KIND_LABELS[self.kind]}"]
        for outcome in self.outcomes:
            lines.append(outcome.summary())
        result = self.query_one("#wizard-result", Static)
        result.update(escape("\n".join(lines)))
        result.set_class(True, "-shown")
        result.set_class(passed, "-pass")
        result.set_class(not passed, "-fail")
        verdict = "passed" if passed else "FAILED (blocks the batch start if mandatory)"
        self._say(f"Calibration {verdict}. ctrl+s stores it.", error=not passed)
        self.query_one("#accept-box").set_class(not passed, "-shown")
        self.refresh_bindings()

    def action_redo(self) -> None:
        """Back one step: its values are dropped and taken again."""
        if self.saved:
            self._say("Already stored; start a new calibration to redo it.", error=True)
            return
        index = max(0, self.step_index - 1) if self.step_index > 0 else 0
        for signal in self.steps[index].signals:
            self.values.pop(signal.key, None)
            self.sources.pop(signal.key, None)
            self.stable_for.pop(signal.key, None)
        if self.steps[index].step_response:
            self.t63_s = None
            self.recorder = None
        self.outcomes = ()
        result = self.query_one("#wizard-result", Static)
        result.update("")
        result.remove_class("-shown", "-pass", "-fail")
        self.query_one("#accept-box").remove_class("-shown")
        self._enter_step(index)
        self._say(f"Redo: {self.steps[index].title}.")

    def action_save(self) -> None:
        if not self.outcomes or self.saved:
            return
        self._clear_errors()
        accept = tuple(
            self._field(field_id).value.strip()
            for field_id in ("accept-supervisor", "accept-pin", "accept-reason")
        )
        self.save_records(accept if any(accept) else None)

    @work(exclusive=True, group="calibration-save", exit_on_error=False)
    async def save_records(self, accept: tuple[str, str, str] | None = None) -> None:
        """Store the outcome(s); ``accept`` = (supervisor, PIN, reason) to accept a failure."""
        outcomes = self.outcomes
        if accept is not None and not await self._acceptance_confirmed(*accept):
            return
        try:
            records = await asyncio.to_thread(self._store, outcomes, accept)
        except NotebookPermissionError as error:
            self._field("accept-supervisor").show_error(str(error))
            self._say(f"Not stored: {error}", error=True)
            return
        except NotebookValidationError as error:
            field = field_for(self.query(LabelledField), error.field)
            if field is not None:
                field.show_error(error.message)
            self._say(f"Not stored: {error.message}", error=True)
            return
        except NotebookError as error:
            self._say(f"Not stored: {error}", error=True)
            return
        self.saved = records
        until = _short_time(records[0].valid_until) if records else "—"
        self._field("accept-pin").set_value("")
        self._say(f"Stored {stored_text(records)}, valid until {until} UTC. esc: back.")
        self.post_message(CalibrationSaved(records))
        self.refresh_bindings()

    async def _acceptance_confirmed(self, supervisor: str, pin: str, reason: str) -> bool:
        if not supervisor:
            self._field("accept-supervisor").show_error("supervisor must not be empty to accept")
        elif not reason:
            self._field("accept-reason").show_error(
                "accept reason must not be empty: say why the failed calibration may be used"
            )
        elif not await asyncio.to_thread(self.notebook.check_pin, supervisor, pin):
            self._field("accept-pin").show_error("unknown supervisor or wrong PIN")
        else:
            return True
        self._say("Not stored: the acceptance is incomplete", error=True)
        return False

    def _store(
        self,
        outcomes: tuple[cal.CalibrationOutcome, ...],
        accept: tuple[str, str, str] | None = None,
    ) -> tuple[CalibrationView, ...]:
        """One record per outcome; a failed one accepted by the supervisor is written by them
        (the notebook allows only supervisors to accept), naming who performed it."""
        now = self.notebook.now()
        valid_until = self.notebook.calibration_policy.valid_until(self.kind, now)
        stored = []
        for outcome in outcomes:
            fields = outcome.record_fields()
            gas = outcome.channel.removeprefix("offgas_") + "_"
            fields["measured"] = {
                **fields["measured"],
                "reactor": self.reactor,
                **{
                    f"{key}_source": source
                    for key, source in self.sources.items()
                    if self.kind is not cal.CalibrationKind.OFFGAS or key.startswith(gas)
                },
            }
            actor = self.operator
            if accept is not None and not outcome.passed:
                actor = accept[0]
                fields["override_reason"] = accept[2]
                fields["override_pin"] = accept[1]  # the supervisor signs the acceptance
                fields["notes"] = "; ".join(
                    part
                    for part in (
                        fields["notes"],
                        f"performed by {self.operator}, accepted by {actor}",
                    )
                    if part
                )
            stored.append(
                self.notebook.record_calibration(
                    actor,
                    **fields,
                    batch_number=self.batch_number,
                    performed_at=now,
                    valid_until=valid_until,
                )
            )
        return tuple(stored)

    def _show_error(self, error: NotebookValidationError, *, prefix: str = "Not taken") -> None:
        super()._show_error(error, prefix=prefix)


# ---- menu and history --------------------------------------------------------------------------

MENU_KEYS: tuple[tuple[str, cal.CalibrationKind], ...] = (
    ("1", cal.CalibrationKind.PH),
    ("2", cal.CalibrationKind.DO),
    ("3", cal.CalibrationKind.OFFGAS),
    ("4", cal.CalibrationKind.PRESSURE),
    ("5", cal.CalibrationKind.OD_PROBE),
)


class CalibrationMenuScreen(NotebookScreen[None]):
    """Every calibrated channel with its state; keys 1-5 start a wizard, h shows a history."""

    DEFAULT_CSS = """
    CalibrationMenuScreen #calibration-table { height: 1fr; }
    CalibrationMenuScreen #calibration-detail { height: auto; padding: 0 1; }
    CalibrationMenuScreen #calibration-message { height: auto; padding: 0 1; }
    CalibrationMenuScreen #calibration-message.-error { color: $error; }
    """
    MESSAGE_SELECTOR = "#calibration-message"

    BINDINGS = [
        *(
            Binding(key, f"wizard('{kind.value}')", cal.KIND_LABELS[kind].split(" ")[0])
            for key, kind in MENU_KEYS
        ),
        Binding("enter", "wizard_selected", "Calibrate", show=False),
        Binding("h", "history", "History"),
        Binding("ctrl+r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="calibration-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="calibration-detail")
        yield Static("", id="calibration-message")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Calibrations"
        self.rows: list[tuple[str, cal.CalibrationKind]] = []  # the table's, in order
        where = f"batch {self.batch_number}" if self.batch_number is not None else "bench"
        self.sub_title = f"{where} · {self.reactor} · {self.operator}"
        table = self.query_one(DataTable)
        table.cell_padding = 0
        for label, key, width in (
            ("Channel", "channel", 11),
            ("Must", "mandatory", 5),
            ("Last", "last", 12),
            ("Result", "result", 9),
            ("In force until", "until", 15),
            ("Key", "key", 4),
        ):
            table.add_column(label, key=key, width=width)
        table.focus()
        self.reload()

    def reload(self) -> Worker[None]:
        return self.load(self._read, self._show_menu, group="calibration-menu")

    def _show_menu(
        self, loaded: tuple[dict[str, CalibrationPeriod | None], list[tuple[str, str]]]
    ) -> None:
        latest, blockers = loaded
        table = self.query_one(DataTable)
        table.clear()
        self.rows = []
        mandatory = set(self.notebook.calibration_policy.mandatory_channels)
        now = self.notebook.now()
        for key, kind in MENU_KEYS:
            for channel in cal.KIND_CHANNELS[kind]:
                period = latest.get(channel)
                table.add_row(*self._row(channel, channel in mandatory, period, now, key))
                self.rows.append((channel, kind))
        blocked = [f"{channel}: {problem}" for channel, problem in blockers]
        detail = self.query_one("#calibration-detail", Static)
        if blocked:
            detail.update(escape("Blocks the batch start: " + "; ".join(blocked)))
        elif self.batch_number is not None:
            detail.update("All mandatory calibrations are current.")
        else:
            detail.update("Bench calibrations (no batch open).")

    def _read(self) -> tuple[dict[str, CalibrationPeriod | None], list[tuple[str, str]]]:
        latest: dict[str, CalibrationPeriod | None] = {}
        for _, kind in MENU_KEYS:
            for channel in cal.KIND_CHANNELS[kind]:
                history = self.notebook.calibration_history(
                    channel, batch_number=self.batch_number, limit=1
                )
                latest[channel] = history[0] if history else None
        blockers = (
            self.notebook.calibration_blockers(self.batch_number)
            if self.batch_number is not None
            else []
        )
        return latest, blockers

    @staticmethod
    def _row(
        channel: str,
        mandatory: bool,
        period: CalibrationPeriod | None,
        now: datetime,
        key: str,
    ) -> tuple[str, ...]:
        if period is None:
            return (channel, "yes" if mandatory else "", "never", "—", "—", key)
        record = period.record
        result = _result(record)
        end = period.valid_to
        until = "no expiry" if end is None else _short_time(end)
        if end is not None and end < now:
            until = f"EXPIRED {_short_time(end)}"
        if not period.in_force_ever:
            until = "not in force"
        return (
            channel,
            "yes" if mandatory else "",
            _short_time(record.performed_at),
            result,
            until,
            key,
        )

    def _selected(self) -> tuple[str, cal.CalibrationKind] | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def action_wizard(self, kind: str) -> None:
        self.app.push_screen(
            CalibrationWizardScreen(
                self.notebook,
                self.operator,
                kind,
                batch_number=self.batch_number,
                reactor=self.reactor,
            ),
            self._wizard_closed,
        )

    def _wizard_closed(self, _: None) -> None:
        self.reload()

    def action_wizard_selected(self) -> None:
        selected = self._selected()
        if selected is not None:
            self.action_wizard(selected[1].value)

    def action_history(self) -> None:
        selected = self._selected()
        if selected is not None:
            self.app.push_screen(
                CalibrationHistoryScreen(
                    self.notebook, self.operator, selected[0], batch_number=self.batch_number
                )
            )

    def action_reload(self) -> None:
        self.reload()

    @on(DataTable.RowSelected)
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        self.action_wizard_selected()


class CalibrationHistoryScreen(NotebookScreen[None]):
    """A channel's calibrations, newest first, each with the interval it was in force."""

    DEFAULT_CSS = """
    CalibrationHistoryScreen #history-table { height: 1fr; }
    CalibrationHistoryScreen #history-detail { height: auto; padding: 0 1; }
    """
    MESSAGE_SELECTOR = "#history-detail"
    BINDINGS = [Binding("escape", "back", "Back"), Binding("ctrl+r", "reload", "Reload")]

    def __init__(
        self, notebook: Notebook, operator: str, channel: str, *, batch_number: int | None = None
    ) -> None:
        super().__init__(notebook, operator, batch_number=batch_number)
        self.channel = channel
        self.periods: list[CalibrationPeriod] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="history-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Calibration history"
        self.sub_title = self.channel
        table = self.query_one(DataTable)
        table.cell_padding = 0
        for label, key, width in (
            ("#", "id", 5),
            ("Taken", "at", 12),
            ("By", "by", 8),
            ("Result", "result", 9),
            ("In force", "from", 12),
            ("until", "to", 12),
            ("ended", "ended", 12),
        ):
            table.add_column(label, key=key, width=width)
        table.focus()
        self.reload()

    def reload(self) -> Worker[None]:
        def read() -> list[CalibrationPeriod]:
            return self.notebook.calibration_history(
                self.channel, batch_number=self.batch_number, limit=200
            )

        return self.load(read, self._show_history, group="calibration-history")

    def _show_history(self, periods: list[CalibrationPeriod]) -> None:
        self.periods = periods
        table = self.query_one(DataTable)
        table.clear()
        for period in periods:
            record = period.record
            table.add_row(
                str(record.id),
                _short_time(record.performed_at),
                record.performed_by[:8],
                _result(record),
                "—" if not period.in_force_ever else _short_time(period.valid_from),
                "—" if not period.in_force_ever else _short_time(period.valid_to),
                period.ended_by or "in force",
            )
        if not periods:
            self._say("No calibrations yet.")
        else:
            self._show_detail(0)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.cursor_row)

    def _show_detail(self, index: int) -> None:
        if not 0 <= index < len(self.periods):
            return
        record = self.periods[index].record
        results = ", ".join(f"{key} {value}" for key, value in record.results.items())
        text = f"#{record.id} {record.kind}: {results}"
        if record.override_reason:
            text += f" · accepted: {record.override_reason}"
        self._say(text)

    def action_reload(self) -> None:
        self.reload()
