"""Offline sample entry: SOP slot prefilled, OD600 and DCW computed as typed, the model beside it.

The screen only collects text and shows results: eln.sample_math computes the previews, the
NotebookService validates and stores (in a thread, so the UI never waits on the database).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from bptwin.eln import sample_math
from bptwin.eln.errors import NotebookError, NotebookValidationError
from bptwin.eln.models import Sample
from bptwin.eln.schedule import SampleSlot, SlotStatus
from bptwin.eln.services import NotebookService
from bptwin.screens.entry_widgets import ENTRY_CSS, EntryFormMixin, LabelledField
from bptwin.screens.messages import LiveUpdate
from bptwin.twin.live import LiveSnapshot
from bptwin.twin.predictor import Prediction

SCHEDULE_REFRESH_S = 30.0


class SampleDueBanner(Static):
    """One line: missed SOP samples, the one due now, or the next one. Any screen may mount it."""

    DEFAULT_CSS = """
    SampleDueBanner { height: 1; padding: 0 1; background: $panel; }
    SampleDueBanner.-due { background: $warning 40%; text-style: bold; }
    SampleDueBanner.-missed { background: $error 40%; text-style: bold; }
    """

    def show_slots(self, slots: Sequence[SampleSlot]) -> None:
        self.update(escape(sample_math.due_prompt(slots)))
        self.set_class(any(s.status is SlotStatus.DUE for s in slots), "-due")
        self.set_class(any(s.status is SlotStatus.MISSED for s in slots), "-missed")


class SampleSaved(Message):
    """A sample was stored (the app may feed it to the alarm engine's model check)."""

    def __init__(self, sample: Sample, reactor: str) -> None:
        super().__init__()
        self.sample = sample
        self.reactor = reactor


def prediction_text(prediction: Prediction | None, measured: float | None) -> str:
    """The model panel: current prediction and, with a typed OD600, the residual it would give."""
    if prediction is None:
        return "Model: no prediction yet for this reactor"
    at = datetime.fromtimestamp(prediction.timestamp, tz=timezone.utc).strftime("%H:%M:%S")
    lines = [
        f"Model OD600 {prediction.od600:.2f} ({prediction.lower:.2f}-{prediction.upper:.2f})",
        f"at {at} UTC · {prediction.model_version}",
    ]
    residual = sample_math.residual_percent(measured, prediction.od600)
    if residual is not None:
        lines.append(f"entered {measured:.2f} → residual {residual:+.1f} %")
    return "\n".join(lines)


class SampleEntryScreen(EntryFormMixin, Screen[None]):
    """Enter an offline sample of one batch (OD600, DCW, microscopy, glycerol)."""

    DEFAULT_CSS = (
        ENTRY_CSS
        + """
    SampleEntryScreen #sample-body { height: 1fr; }
    SampleEntryScreen #sample-form { width: 1fr; min-width: 44; }
    SampleEntryScreen #sample-side { width: 34; }
    SampleEntryScreen #model-panel { height: auto; border: round $primary; padding: 0 1; }
    SampleEntryScreen #schedule { height: 1fr; }
    SampleEntryScreen #sample-message { height: auto; padding: 0 1; }
    SampleEntryScreen #sample-message.-error { color: $error; }
    """
    )

    MESSAGE_SELECTOR = "#sample-message"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save sample"),
        Binding("ctrl+n", "next_due", "Next due slot"),
        Binding("ctrl+r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self,
        notebook: NotebookService,
        batch_number: int,
        operator: str,
        *,
        reactor: str = "R1",
        snapshot: LiveSnapshot | None = None,
        depleted_at: datetime | None = None,
    ) -> None:
        super().__init__()
        self.notebook = notebook
        self.batch_number = batch_number
        self.operator = operator
        self.reactor = reactor
        self.depleted_at = depleted_at
        self.prediction: Prediction | None = (
            snapshot.predictions.get(reactor) if snapshot is not None else None
        )
        self.slots: list[SampleSlot] = []
        self.samples: list[Sample] = []
        self.last_saved: Sample | None = None

    # ---- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield SampleDueBanner("Loading the sampling schedule…", id="sample-due")
        with Horizontal(id="sample-body"):
            with VerticalScroll(id="sample-form"):
                yield Static(f"New sample · batch {self.batch_number}", classes="entry-title")
                yield LabelledField(
                    "SOP time point h", "timepoint", hint="blank: extra", fields=("sop time point",)
                )
                yield LabelledField(
                    "Sampling time UTC", "taken-at", fields=("sampling time",), width=20
                )
                yield LabelledField("OD600 reading", "od-raw", fields=("od600 reading",))
                yield LabelledField(
                    "Dilution", "dilution", value="1", hint="→ OD600 —", fields=("od600",)
                )
                yield LabelledField(
                    "Empty filter mg", "filter-tare", fields=("filter tare", "filter weights")
                )
                yield LabelledField("Dry filter mg", "filter-dry", fields=("filter dry weight",))
                yield LabelledField(
                    "Filtered vol. mL",
                    "filter-volume",
                    hint="→ DCW —",
                    fields=("filtered volume", "dcw"),
                )
                yield LabelledField(
                    "Microscopy clean",
                    "microscopy-clean",
                    hint="y / n",
                    fields=("microscopy clean",),
                )
                yield LabelledField("Microscopy notes", "microscopy-notes", fields=("microscopy",))
                yield LabelledField("Glycerol g/L", "glycerol", fields=("glycerol",))
            with Vertical(id="sample-side"):
                yield Static(prediction_text(self.prediction, None), id="model-panel")
                yield DataTable(id="schedule", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sample-message")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Samples"
        self.sub_title = f"batch {self.batch_number} · {self.reactor} · {self.operator}"
        table = self.query_one("#schedule", DataTable)
        table.cell_padding = 0
        table.add_column("Slot ", key="slot", width=10)
        table.add_column("Due  ", key="due", width=6)
        table.add_column("Status", key="status", width=9)
        table.add_column("Res %", key="residual", width=6)
        self.query_one("#taken-at", Input).value = sample_math.format_entry_time(
            self.notebook.clock()
        )
        self.query_one("#od-raw", Input).focus()
        self.load_schedule(prefill=True)
        self.set_interval(SCHEDULE_REFRESH_S, self.load_schedule)

    # ---- live data ----------------------------------------------------------------------------

    def on_live_update(self, message: LiveUpdate) -> None:
        self.show_snapshot(message.snapshot)

    def show_snapshot(self, snapshot: LiveSnapshot) -> None:
        self.prediction = snapshot.predictions.get(self.reactor)
        self._update_model_panel()

    def _update_model_panel(self) -> None:
        measured = sample_math.od600(self._value("od-raw"), self._value("dilution"))
        self.query_one("#model-panel", Static).update(
            escape(prediction_text(self.prediction, measured))
        )

    @on(Input.Changed)
    def _preview(self, event: Input.Changed) -> None:
        if event.input.id in ("od-raw", "dilution"):
            value = sample_math.od600(self._value("od-raw"), self._value("dilution"))
            shown = "—" if value is None else f"{value:.3g}"
            self._field("dilution").set_hint(f"→ OD600 {shown}")
            self._update_model_panel()
        elif event.input.id in ("filter-tare", "filter-dry", "filter-volume"):
            value = sample_math.dcw_g_per_l(
                self._value("filter-tare"), self._value("filter-dry"), self._value("filter-volume")
            )
            shown = "—" if value is None else f"{value:.3g}"
            self._field("filter-volume").set_hint(f"→ DCW {shown} g/L")

    # ---- schedule -----------------------------------------------------------------------------

    @work(exclusive=True, group="sample-schedule", exit_on_error=False)
    async def load_schedule(self, prefill: bool = False) -> None:
        try:
            slots, samples = await asyncio.to_thread(self._read_schedule)
        except NotebookError as error:
            self._say(str(error), error=True)
            return
        self.slots, self.samples = slots, samples
        self.query_one(SampleDueBanner).show_slots(slots)
        self._fill_schedule_table()
        if prefill:
            self.action_next_due()

    def _read_schedule(self) -> tuple[list[SampleSlot], list[Sample]]:
        slots = self.notebook.sample_schedule(self.batch_number, depleted_at=self.depleted_at)
        return slots, self.notebook.list_samples(self.batch_number)

    def _fill_schedule_table(self) -> None:
        table = self.query_one("#schedule", DataTable)
        table.clear()
        by_id = {sample.id: sample for sample in self.samples}
        for slot in self.slots:
            sample = by_id.get(slot.sample_id)
            residual = (
                None
                if sample is None
                else sample_math.residual_percent(sample.od600, sample.predicted_od600)
            )
            table.add_row(
                sample_math.slot_label(slot),
                "—" if slot.due_at is None else slot.due_at.strftime("%H:%M"),
                slot.status.value.upper()
                if slot.status is SlotStatus.MISSED
                else slot.status.value,
                "" if residual is None else f"{residual:+.1f}",
            )

    def action_next_due(self) -> None:
        """Prefill the time point with the slot due now (or next)."""
        slot = sample_math.next_slot(self.slots)
        value = "" if slot is None or slot.timepoint_h is None else f"{slot.timepoint_h:g}"
        self._field("timepoint").set_value(value)

    def action_reload(self) -> None:
        self.load_schedule()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    # ---- saving -------------------------------------------------------------------------------

    def action_save(self) -> None:
        for field in self.query(LabelledField):
            field.clear_error()
        try:
            values = self._form_values()
        except NotebookValidationError as error:
            self._show_error(error)
            return
        self.save_sample(values)

    def _form_values(self) -> dict[str, object]:
        taken = sample_math.parse_entry_time(
            "sampling time", self._value("taken-at"), self.notebook.clock()
        )
        return {
            "taken_at": taken,
            "sop_timepoint_h": self._value("timepoint") or None,
            "od_raw": self._value("od-raw"),
            "dilution": self._value("dilution") or 1.0,
            "filter_tare_mg": self._value("filter-tare") or None,
            "filter_dry_mg": self._value("filter-dry") or None,
            "filter_volume_ml": self._value("filter-volume") or None,
            "microscopy_clean": sample_math.parse_yes_no(
                "microscopy clean", self._value("microscopy-clean")
            ),
            "microscopy_text": self._value("microscopy-notes"),
            "glycerol_g_per_l": self._value("glycerol") or None,
            "predicted_od600": None if self.prediction is None else self.prediction.od600,
        }

    @work(exclusive=True, group="sample-save", exit_on_error=False)
    async def save_sample(self, values: dict[str, object]) -> None:
        try:
            sample = await asyncio.to_thread(
                lambda: self.notebook.add_sample(self.operator, self.batch_number, **values)
            )
        except NotebookValidationError as error:
            self._show_error(error)
            return
        except NotebookError as error:
            self._say(str(error), error=True)
            return
        self.last_saved = sample
        self._say(self._saved_text(sample))
        self.post_message(SampleSaved(sample, self.reactor))
        for field_id in (
            "od-raw",
            "filter-tare",
            "filter-dry",
            "filter-volume",
            "microscopy-clean",
            "microscopy-notes",
            "glycerol",
        ):
            self._field(field_id).set_value("")
        self._field("dilution").set_value("1")
        await self.load_schedule(prefill=True).wait()

    @staticmethod
    def _saved_text(sample: Sample) -> str:
        text = f"Saved sample {sample.id}: OD600 {sample.od600:.3g}"
        if sample.dcw_g_per_l is not None:
            text += f", DCW {sample.dcw_g_per_l:.3g} g/L"
        residual = sample_math.residual_percent(sample.od600, sample.predicted_od600)
        if residual is None:
            return text + " (no model prediction to compare)"
        return text + f"; model {sample.predicted_od600:.3g}, residual {residual:+.1f} %"
