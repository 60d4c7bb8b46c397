"""Offline sample entry: SOP slot prefilled, OD600 and DCW computed as typed, the model beside it.

The screen only collects text and shows results: eln.sample_math computes the previews, the
notebook validates and stores (in a thread, so the UI never waits on the database).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import Worker

from bptwin.eln import sample_math
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.notebook import Notebook
from bptwin.eln.records import SampleView
from bptwin.eln.schedule import SampleSlot, SlotStatus
from bptwin.screens.entry_widgets import ENTRY_CSS, LabelledField
from bptwin.screens.live import follow_snapshots
from bptwin.screens.messages import SampleSaved
from bptwin.screens.notebook_screen import NotebookScreen
from bptwin.screens.safe_text import escape
from bptwin.twin.live import LiveSnapshot

if TYPE_CHECKING:
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


class SampleEntryScreen(NotebookScreen[None]):
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
        notebook: Notebook,
        batch_number: int,
        operator: str,
        *,
        reactor: str = "R1",
        depleted_at: datetime | None = None,
    ) -> None:
        super().__init__(notebook, operator, batch_number=batch_number, reactor=reactor)
        self.depleted_at = depleted_at
        self.prediction: Prediction | None = None
        self.slots: list[SampleSlot] = []
        self.samples: list[SampleView] = []
        self.last_saved: SampleView | None = None

    # ---- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield SampleDueBanner("Loading the sampling schedule…", id="sample-due")
        with Horizontal(id="sample-body"):
            with VerticalScroll(id="sample-form"):
                yield Static(f"New sample · batch {self.required_batch}", classes="entry-title")
                yield LabelledField(
                    "SOP time point h", "timepoint", hint="blank: extra", fields=("sop time point",)
                )
                yield LabelledField(
                    "Sampling time UTC", "taken-at", fields=("sampling time",), width=20
                )
                yield LabelledField(
                    "OD600 reading", "od-raw", hint="blank: DCW only", fields=("od600 reading",)
                )
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
        self.sub_title = f"batch {self.required_batch} · {self.reactor} · {self.operator}"
        table = self.query_one("#schedule", DataTable)
        table.cell_padding = 0
        table.add_column("Slot ", key="slot", width=10)
        table.add_column("Due  ", key="due", width=6)
        table.add_column("Status", key="status", width=9)
        table.add_column("Res %", key="residual", width=6)
        self.query_one("#taken-at", Input).value = sample_math.format_entry_time(
            self.notebook.now()
        )
        self.query_one("#od-raw", Input).focus()
        follow_snapshots(self, self.show_snapshot)
        self.load_schedule(prefill=True)
        self.set_interval(SCHEDULE_REFRESH_S, self.load_schedule)

    # ---- live data ----------------------------------------------------------------------------

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

    def load_schedule(self, prefill: bool = False) -> Worker[None]:
        """Re-read the schedule and the samples; ``prefill`` the time point of the slot due."""

        def show(loaded: tuple[list[SampleSlot], list[SampleView]]) -> None:
            self.slots, self.samples = loaded
            self.query_one(SampleDueBanner).show_slots(self.slots)
            self._fill_schedule_table()
            if prefill:
                self.action_next_due()

        return self.load(self._read_schedule, show, group="sample-schedule")

    def _read_schedule(self) -> tuple[list[SampleSlot], list[SampleView]]:
        slots = self.notebook.sample_schedule(self.required_batch, depleted_at=self.depleted_at)
        return slots, self.notebook.list_samples(self.required_batch)

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

    # ---- saving -------------------------------------------------------------------------------

    def action_save(self) -> None:
        for field in self.query(LabelledField):
            field.clear_error()
        try:
            add = self._sample_from_form()
        except NotebookValidationError as error:
            self._show_error(error)
            return
        self.save_sample(add)

    def _sample_from_form(self) -> Callable[[], SampleView]:
        """The notebook call that stores the form's sample (its values read now)."""
        taken = sample_math.parse_entry_time(
            "sampling time", self._value("taken-at"), self.notebook.now()
        )
        return partial(
            self.notebook.add_sample,
            self.operator,
            self.required_batch,
            taken_at=taken,
            sop_timepoint_h=self._value("timepoint") or None,
            od_raw=self._value("od-raw"),
            dilution=self._value("dilution") or 1.0,
            filter_tare_mg=self._value("filter-tare") or None,
            filter_dry_mg=self._value("filter-dry") or None,
            filter_volume_ml=self._value("filter-volume") or None,
            microscopy_clean=sample_math.parse_yes_no(
                "microscopy clean", self._value("microscopy-clean")
            ),
            microscopy_text=self._value("microscopy-notes"),
            glycerol_g_per_l=self._value("glycerol") or None,
            predicted_od600=None if self.prediction is None else self.prediction.od600,
        )

    @work(exclusive=True, group="sample-save", exit_on_error=False)
    async def save_sample(self, add: Callable[[], SampleView]) -> None:
        sample = await self.write(add)
        if sample is None:
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
        self._field("taken-at").set_value(sample_math.format_entry_time(self.notebook.now()))
        await self.load_schedule(prefill=True).wait()

    @staticmethod
    def _saved_text(sample: SampleView) -> str:
        od600 = "no OD600" if sample.od600 is None else f"OD600 {sample.od600:.3g}"
        text = f"Saved sample {sample.id}: {od600}"
        if sample.dcw_g_per_l is not None:
            text += f", DCW {sample.dcw_g_per_l:.3g} g/L"
        if sample.od600 is None:
            return text + " (dry weight only: nothing to compare with the OD600 model)"
        residual = sample_math.residual_percent(sample.od600, sample.predicted_od600)
        if residual is None:
            return text + " (no model prediction to compare)"
        return text + f"; model {sample.predicted_od600:.3g}, residual {residual:+.1f} %"
