"""Batch setup: create or open a batch, record its inoculum (go/no-go), see what blocks the
start, and start it — or have a supervisor override a block with name, PIN and reason.

UI only: the notebook decides what is allowed (calibrations, inoculum window) and
stores everything, in a thread so the UI never waits on the database.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Input, Static

from bptwin.eln import form_rules, sample_math
from bptwin.eln.errors import NotebookError, NotebookPermissionError, NotebookValidationError
from bptwin.eln.notebook import CalibrationPeriod, Notebook
from bptwin.eln.records import BatchView, InoculumView
from bptwin.eln.sample_math import INOCULUM_OD600_RANGE
from bptwin.eln.states import BatchStatus
from bptwin.screens.entry_widgets import ENTRY_CSS, LabelledField
from bptwin.screens.messages import BatchSelected
from bptwin.screens.notebook_screen import NotebookScreen
from bptwin.screens.safe_text import escape


@dataclass(frozen=True, slots=True)
class BatchState:
    """What the side panel shows, read in one go from the notebook."""

    batch: BatchView
    inoculum: InoculumView | None
    blockers: list[tuple[str, str]]
    in_force: dict[str, CalibrationPeriod | None]


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%m-%d %H:%M")


def inoculum_preview(raw: str, dilution: str, clean: str) -> str:
    """The hint beside the inoculum: OD600 as typed and whether it is go or no-go."""
    od600 = sample_math.od600(raw, dilution or "1")
    if od600 is None:
        return "→ OD600 —"
    low, high = INOCULUM_OD600_RANGE
    if not low <= od600 <= high:
        return f"→ {od600:.3g} NO-GO ({low:g}–{high:g})"
    if clean.strip().lower() in ("n", "no", "dirty", "not clean"):
        return f"→ {od600:.3g} NO-GO (microscopy)"
    return f"→ {od600:.3g} GO"


def short_problem(problem: str) -> str:
    """A blocker in side-panel width: 'never calibrated' → 'none', dates without the year."""
    if problem == "never calibrated":
        return "never done"
    if problem == "last calibration failed":
        return "FAILED"
    match = re.fullmatch(r"expired \d{4}-(\d\d-\d\d \d\d:\d\d) UTC", problem)
    return f"expired {match.group(1)}" if match else problem


def blocked_text(message: str) -> str:
    """The service's refusal, compacted: 'no passing calibration for ph (why)' → 'ph why'."""
    _, _, problems = message.partition(": ")
    parts = [
        re.sub(r"no passing calibration for (\S+) \((.*)\)", r"\1 \2", part)
        for part in (problems or message).split("; ")
    ]
    return "BLOCKED: " + "; ".join(parts)


def state_text(state: BatchState, now: datetime) -> str:
    """The side panel: batch status, each mandatory calibration, the inoculum."""
    batch = state.batch
    lines = [f"Batch {batch.number} · phase {batch.phase.value}", f"status {batch.status.value}"]
    if batch.inoculated_at is not None:
        lines.append(f"inoculated {_when(batch.inoculated_at)}")
    if batch.ended_at is not None:
        lines.append(f"ended {_when(batch.ended_at)} · F7 closure")
    lines.append("Calibrations:")
    blocked = dict(state.blockers)
    for channel, period in state.in_force.items():
        if channel in blocked:
            lines.append(f" ✗ {channel} {short_problem(blocked[channel])}")
        elif period is not None:
            until = "no expiry" if period.valid_to is None else _when(period.valid_to)
            lines.append(f" ✓ {channel} until {until}")
        else:
            lines.append(f" ✓ {channel}")
    inoculum = state.inoculum
    if inoculum is None:
        lines.append("Inoculum: not recorded")
    else:
        verdict = "GO" if inoculum.go else "NO-GO"
        lines.append(f"Inoculum: OD600 {inoculum.od600:.3g} {verdict}")
    return "\n".join(lines)


class BatchSetupScreen(NotebookScreen[None]):
    """Create or open a batch, record the inoculum, start it (or have a supervisor override)."""

    DEFAULT_CSS = (
        ENTRY_CSS
        + """
    BatchSetupScreen #batch-body { height: 1fr; }
    BatchSetupScreen #batch-form { width: 1fr; min-width: 48; padding: 0 1; }
    BatchSetupScreen #batch-side { width: 30; height: auto; border: round $primary; padding: 0 1; }
    BatchSetupScreen #batch-side.-blocked { border: round $error; }
    BatchSetupScreen #batch-side.-ready { border: round $success; }
    BatchSetupScreen .section-title { text-style: bold; height: 1; margin-top: 1; }
    BatchSetupScreen #batch-message { height: auto; padding: 0 1; }
    BatchSetupScreen #batch-message.-error { color: $error; }
    """
    )

    MESSAGE_SELECTOR = "#batch-message"
    state: BatchState | None = None  # the batch open here, as last read
    BINDINGS = [
        Binding("ctrl+s", "save_batch", "Save batch"),
        Binding("ctrl+o", "open_batch", "Open"),
        Binding("ctrl+g", "inoculum", "Inoculum"),
        Binding("ctrl+r", "start", "Start batch"),
        Binding("ctrl+l", "calibrations", "Calibrate"),
        Binding("f5", "app.export_batch", "Export"),
        Binding("f6", "app.go('acceptance')", "Acceptance"),
        Binding("f7", "batch_tool('end')", "End/close"),
        Binding("f8", "batch_tool('changes')", "Changes"),
        Binding("f9", "batch_tool('media')", "Media"),
        Binding("escape", "back", "Back"),
    ]

    # ---- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="batch-body"):
            with VerticalScroll(id="batch-form"):
                yield Static("Batch", classes="entry-title")
                yield LabelledField("Batch number", "number", fields=("batch number",))
                yield LabelledField("Campaign phase", "phase", hint="A, B or C")
                yield LabelledField("Strain", "strain", width=24)
                yield LabelledField("Medium lot", "medium-lot")
                yield LabelledField("Vessel", "vessel")
                yield LabelledField(
                    "Responsible", "responsible", value=self.operator, fields=("operator",)
                )
                yield Static("Inoculum", classes="section-title")
                yield LabelledField(
                    "OD600 reading",
                    "inoculum-od",
                    hint="→ OD600 —",
                    fields=("inoculum od600 reading", "inoculum"),
                )
                yield LabelledField(
                    "Dilution", "inoculum-dilution", value="1", fields=("dilution",)
                )
                yield LabelledField(
                    "Volume mL", "inoculum-volume", value="100", fields=("inoculum volume",)
                )
                yield LabelledField("Microscopy clean", "inoculum-clean", hint="y / n")
                yield LabelledField("Inoculum notes", "inoculum-notes", width=24, fields=("notes",))
                yield LabelledField(
                    "Out-of-spec reason",
                    "inoculum-reason",
                    width=20,
                    hint="no-go",
                    fields=("out-of-spec reason",),
                )
                yield Static("Start · supervisor override", classes="section-title")
                yield LabelledField("Supervisor", "supervisor", hint="to override")
                yield LabelledField("PIN", "pin", password=True, width=10)
                yield LabelledField(
                    "Override reason", "override-reason", width=24, fields=("override reason",)
                )
            yield Static("No batch open.", id="batch-side")
        yield Static("", id="batch-message")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Batch setup"
        self.sub_title = f"{self.reactor} · {self.operator}"
        if self.batch_number is not None:
            self._field("number").set_value(str(self.batch_number))
            self.open_batch(self.batch_number)
        else:
            self.suggest_number()
        self._field("number").input.focus()

    # ---- helpers ----------------------------------------------------------------------------

    @on(Input.Changed)
    def _preview(self, event: Input.Changed) -> None:
        if event.input.id in ("inoculum-od", "inoculum-dilution", "inoculum-clean"):
            self._field("inoculum-od").set_hint(
                inoculum_preview(
                    self._value("inoculum-od"),
                    self._value("inoculum-dilution"),
                    self._value("inoculum-clean"),
                )
            )

    # ---- reading ----------------------------------------------------------------------------

    def suggest_number(self) -> None:
        """The next free batch number, unless one was typed meanwhile."""

        def suggest(batches: list[BatchView]) -> None:
            if not self._value("number"):
                number = max((b.number for b in batches), default=0) + 1
                self._field("number").set_value(str(number))
            self._say("New batch: fill in the record and press ctrl+s, or ctrl+o to open one.")

        self.load(self.notebook.list_batches, suggest, group="batch-suggest")

    def _read_state(self, number: int) -> BatchState:
        batch = self.notebook.get_batch(number)
        now = self.notebook.now()
        return BatchState(
            batch=batch,
            inoculum=self.notebook.get_inoculum(number),
            blockers=self.notebook.calibration_blockers(number),
            in_force={
                channel: self.notebook.calibration_in_force(channel, now, batch_number=number)
                for channel in self.notebook.calibration_policy.mandatory_channels
            },
        )

    @work(exclusive=True, group="batch-load", exit_on_error=False)
    async def open_batch(self, number: int | str, *, announce: bool = True) -> None:
        try:
            state = await asyncio.to_thread(self._read_state, form_rules.batch_number(number))
        except NotebookValidationError as error:
            self._show_error(error, prefix="Not opened")
            return
        except NotebookError as error:
            self._say(str(error), error=True)
            return
        self._show_state(state)
        if announce:
            self.post_message(BatchSelected(state.batch, self.reactor))
            self._say(f"Batch {state.batch.number} open ({state.batch.status.value}).")

    def _show_state(self, state: BatchState) -> None:
        self.state = state
        batch = state.batch
        self.batch_number = batch.number
        for field_id, value in (
            ("number", str(batch.number)),
            ("phase", batch.phase.value),
            ("strain", batch.strain),
            ("medium-lot", batch.medium_lot),
            ("vessel", batch.vessel),
            ("responsible", batch.operator),
        ):
            self._field(field_id).set_value(value)
        inoculum = state.inoculum
        if inoculum is not None:
            for field_id, value in (
                ("inoculum-od", f"{inoculum.od600_raw:g}"),
                ("inoculum-dilution", f"{inoculum.dilution:g}"),
                ("inoculum-volume", f"{inoculum.volume_ml:g}"),
                ("inoculum-clean", "y" if inoculum.microscopy_clean else "n"),
                ("inoculum-notes", inoculum.notes),
            ):
                self._field(field_id).set_value(value)
        side = self.query_one("#batch-side", Static)
        side.update(escape(state_text(state, self.notebook.now())))
        ready = not state.blockers and inoculum is not None and inoculum.go
        setup = batch.status is BatchStatus.SETUP
        side.set_class(setup and not ready, "-blocked")
        side.set_class(setup and ready, "-ready")
        self.sub_title = f"batch {batch.number} · {self.reactor} · {self.operator}"

    # ---- actions ----------------------------------------------------------------------------

    def action_open_batch(self) -> None:
        self._clear_errors()
        self.open_batch(self._value("number"))

    def action_save_batch(self) -> None:
        self._clear_errors()
        if self.state is not None and str(self.state.batch.number) == self._value("number"):
            self._say(
                f"Batch {self.state.batch.number} exists; its record is not changed here. "
                "Type a new number to create another.",
                error=True,
            )
            return
        self.create_batch(
            partial(
                self.notebook.create_batch,
                self.operator,
                self._value("number"),
                self._value("phase").upper(),
                strain=self._value("strain"),
                medium_lot=self._value("medium-lot"),
                vessel=self._value("vessel"),
                reactor_id=self.reactor,
                operator=self._value("responsible") or None,
            )
        )

    @work(exclusive=True, group="batch-write", exit_on_error=False)
    async def create_batch(self, create: Callable[[], BatchView]) -> None:
        try:
            batch = await asyncio.to_thread(create)
        except NotebookValidationError as error:
            self._show_error(error)
            return
        except NotebookError as error:
            self._field("responsible").show_error(str(error))
            self._say(f"Not saved: {error}", error=True)
            return
        await self.open_batch(batch.number, announce=True).wait()
        self._say(f"Created batch {batch.number}. Next: inoculum (ctrl+g), calibrations (ctrl+l).")

    def action_inoculum(self) -> None:
        self._clear_errors()
        if self.state is None:
            self._say("Create or open a batch first (ctrl+s / ctrl+o).", error=True)
            return
        try:
            clean = sample_math.parse_yes_no("microscopy clean", self._value("inoculum-clean"))
        except NotebookValidationError as error:
            self._show_error(error)
            return
        if clean is None:
            self._show_error(
                NotebookValidationError(
                    "microscopy clean", "microscopy clean: answer y (yes) or n (no)"
                )
            )
            return
        number = self.state.batch.number
        self.record_inoculum(
            number,
            partial(
                self.notebook.record_inoculum,
                self.operator,
                number,
                od600_raw=self._value("inoculum-od"),
                dilution=self._value("inoculum-dilution") or 1.0,
                volume_ml=self._value("inoculum-volume"),
                microscopy_clean=clean,
                notes=self._value("inoculum-notes"),
                out_of_spec_reason=self._value("inoculum-reason") or None,
            ),
        )

    @work(exclusive=True, group="batch-write", exit_on_error=False)
    async def record_inoculum(self, number: int, record: Callable[[], InoculumView]) -> None:
        try:
            inoculum = await asyncio.to_thread(record)
        except NotebookValidationError as error:
            if error.field == "inoculum" and "already" not in error.message:
                error = NotebookValidationError(
                    error.field,
                    f"{error.message}: NO-GO. To record it anyway give an out-of-spec reason "
                    "(a level-3 deviation is logged)",
                )
            self._show_error(error)
            return
        except NotebookError as error:
            self._say(f"Not saved: {error}", error=True)
            return
        await self.open_batch(number, announce=False).wait()
        verdict = "GO" if inoculum.go else "NO-GO, level-3 deviation logged"
        self._say(f"Inoculum recorded: OD600 {inoculum.od600:.3g} · {verdict}.")

    def action_start(self) -> None:
        self._clear_errors()
        if self.state is None:
            self._say("Create or open a batch first (ctrl+s / ctrl+o).", error=True)
            return
        self.start_batch(
            self.state.batch.number,
            self._value("supervisor"),
            self._field("pin").value,
            self._value("override-reason"),
        )

    @work(exclusive=True, group="batch-write", exit_on_error=False)
    async def start_batch(self, number: int, supervisor: str, pin: str, reason: str) -> None:
        overriding = bool(supervisor or pin or reason)
        try:
            if overriding:
                if not await self._override_confirmed(supervisor, pin, reason):
                    return
                batch = await asyncio.to_thread(
                    lambda: self.notebook.start_batch(supervisor, number, override_reason=reason)
                )
            else:
                batch = await asyncio.to_thread(self.notebook.start_batch, self.operator, number)
        except NotebookPermissionError as error:
            self._field("supervisor").show_error(str(error))
            self._say(f"Not started: {error}", error=True)
            return
        except NotebookValidationError as error:
            if error.field == "inoculation":
                self._say(
                    f"{blocked_text(error.message)}. A supervisor may override: name, PIN "
                    "and reason below, then ctrl+r.",
                    error=True,
                )
                self._field("supervisor").input.focus()
            else:
                self._show_error(error, prefix="Not started")
            return
        except NotebookError as error:
            self._say(f"Not started: {error}", error=True)
            return
        self._field("pin").set_value("")
        await self.open_batch(number, announce=True).wait()
        how = f" (override by {supervisor}, audited)" if overriding else ""
        self._say(f"Batch {batch.number} is running since {_when(batch.inoculated_at)}{how}.")

    async def _override_confirmed(self, supervisor: str, pin: str, reason: str) -> bool:
        if not supervisor:
            self._field("supervisor").show_error("supervisor must not be empty to override")
        elif not reason:
            self._field("override-reason").show_error(
                "override reason must not be empty: say why the batch may start"
            )
        elif not await asyncio.to_thread(self.notebook.check_pin, supervisor, pin):
            self._field("pin").show_error("unknown supervisor or wrong PIN")
        else:
            return True
        self._say("Not started: the override is incomplete", error=True)
        return False

    def action_batch_tool(self, name: str) -> None:
        """The batch's end and closure (F7), process changes (F8) or media (F9)."""
        self._clear_errors()
        if self.state is None:
            self._say("Create or open a batch first (ctrl+s / ctrl+o).", error=True)
            return
        self.app.push_screen(
            batch_tool_screen(
                name, self.notebook, self.operator, self.state.batch.number, self.reactor
            ),
            self._after_tool,
        )

    def _after_tool(self, _: object) -> None:
        if self.state is not None:
            self.open_batch(self.state.batch.number, announce=False)

    def action_calibrations(self) -> None:
        from bptwin.screens.calibration import CalibrationMenuScreen

        self.app.push_screen(
            CalibrationMenuScreen(
                self.notebook,
                self.operator,
                batch_number=self.batch_number if self.state is not None else None,
                reactor=self.reactor,
            ),
            self._after_calibration,
        )

    def _after_calibration(self, _: object) -> None:
        if self.state is not None:
            self.open_batch(self.state.batch.number, announce=False)


def batch_tool_screen(
    name: str, notebook: Notebook, operator: str, number: int, reactor: str
) -> NotebookScreen[None]:
    """The screen of a batch tool: "end" (end, closure, signing), "changes" or "media"."""
    if name == "end":
        from bptwin.screens.batch_end import BatchEndScreen

        return BatchEndScreen(notebook, operator, batch_number=number, reactor=reactor)
    if name == "changes":
        from bptwin.screens.process_changes import ProcessChangesScreen

        return ProcessChangesScreen(notebook, operator, batch_number=number, reactor=reactor)
    if name == "media":
        from bptwin.screens.media import MediaPreparationScreen

        return MediaPreparationScreen(notebook, operator, batch_number=number, reactor=reactor)
    raise ValueError(f"no batch tool {name!r}")
