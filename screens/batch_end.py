"""The end of a batch: end or abort the running batch, record its closure (final OD600 and DCW,
harvest volume, outcome, the reason when fewer than the SOP's samples were taken) and have a
supervisor close it with an electronic signature (name and PIN asked in the signing dialog).

UI only: the notebook decides what is allowed (status, the 8-sample rule, who may sign) and
stores everything, in a thread so the UI never waits on the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Static

from bptwin.eln import sample_math
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.records import BatchView, ClosureView, SignatureView
from bptwin.eln.schedule import SOP_TIMEPOINTS_H
from bptwin.eln.states import BatchStatus
from bptwin.screens.entry_widgets import ENTRY_CSS, LabelledField
from bptwin.screens.messages import BatchSelected
from bptwin.screens.notebook_screen import NotebookScreen
from bptwin.screens.signing import SignatureEntry, SignatureRequest, SigningDialog

SOP_SAMPLES = len(SOP_TIMEPOINTS_H) + 1  # the SOP's time points and the depletion sample


@dataclass(frozen=True, slots=True)
class EndState:
    """What the side panel shows, read in one go from the notebook."""

    batch: BatchView
    closure: ClosureView | None
    samples: int
    signatures: tuple[SignatureView, ...]


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%m-%d %H:%M")


def signature_line(signature: SignatureView) -> str:
    """One signature in side-panel width: meaning, printed name, UTC time, superseded."""
    line = f"{signature.meaning.value} · {signature.printed_name} {_when(signature.signed_at)}"
    return line + (" (superseded)" if signature.superseded_at is not None else "")


def end_state_text(state: EndState) -> str:
    batch, closure = state.batch, state.closure
    lines = [f"Batch {batch.number} · {batch.status.value}"]
    lines.append(f"inoculated {_when(batch.inoculated_at)}")
    if batch.ended_at is not None:
        lines.append(f"ended {_when(batch.ended_at)} by {batch.ended_by or '—'}")
    if batch.end_reason:
        lines.append(f"reason: {batch.end_reason}")
    lines.append(f"Samples {state.samples} of {SOP_SAMPLES}")
    if closure is None:
        lines.append("Closure: not recorded")
    else:
        lines.append(f"Closure: {closure.outcome}")
        lines.append(f" recorded by {closure.recorded_by or '—'}")
        closed = f"closed by {closure.signed_off_by}" if closure.signed_off_by else "not signed"
        lines.append(f" {closed}")
    if state.signatures:
        lines.append("Signatures:")
        lines.extend(f" {signature_line(signature)}" for signature in state.signatures)
    return "\n".join(lines)


class BatchEndScreen(NotebookScreen[None]):
    """End or abort the batch, record its closure, have a supervisor sign it closed."""

    DEFAULT_CSS = (
        ENTRY_CSS
        + """
    BatchEndScreen #end-body { height: 1fr; }
    BatchEndScreen #end-form { width: 1fr; min-width: 48; padding: 0 1; }
    BatchEndScreen #end-side { width: 34; height: auto; border: round $primary; padding: 0 1; }
    BatchEndScreen #end-side.-closed { border: round $success; }
    BatchEndScreen .section-title { text-style: bold; height: 1; margin-top: 1; }
    BatchEndScreen #end-message { height: auto; padding: 0 1; }
    BatchEndScreen #end-message.-error { color: $error; }
    """
    )
    MESSAGE_SELECTOR = "#end-message"
    BINDINGS = [
        # Priority: inside a form field ctrl+e/ctrl+x/ctrl+k would otherwise edit the text.
        Binding("ctrl+e", "end", "End batch", priority=True),
        Binding("ctrl+x", "abort", "Abort", priority=True),
        Binding("ctrl+s", "save_closure", "Save closure"),
        Binding("ctrl+k", "sign", "Close (sign)", priority=True),
        Binding("escape", "back", "Back"),
    ]
    state: EndState | None = None
    _armed: str | None = None  # "end" or "abort" after the first press: the second one acts

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="end-body"):
            with VerticalScroll(id="end-form"):
                yield Static("End of the batch", classes="entry-title")
                yield LabelledField(
                    "End time UTC", "end-at", hint="empty = now", width=18, fields=("end time",)
                )
                yield LabelledField(
                    "Abort reason", "abort-reason", width=30, hint="abort only", fields=("reason",)
                )
                yield Static("Closure record", classes="section-title")
                yield LabelledField("Outcome", "outcome", value="complete", width=22)
                yield LabelledField("Final OD600", "final-od600", fields=("final od600",))
                yield LabelledField("Final DCW g/L", "final-dcw", fields=("final dcw",))
                yield LabelledField("Harvest volume mL", "harvest-volume")
                yield LabelledField("Depletion h", "depletion", fields=("depletion time",))
                yield LabelledField("DO spike h", "do-spike", fields=("do spike time",))
                yield LabelledField("Harvest notes", "harvest", width=30)
                yield LabelledField(
                    "Reason < 8 samples",
                    "missing-reason",
                    width=30,
                    fields=("missing-samples reason", "samples"),
                )
                yield LabelledField(
                    "Correction reason",
                    "amend-reason",
                    width=30,
                    hint="to correct a saved closure",
                    fields=("correction reason",),
                )
            yield Static("", id="end-side")
        yield Static("", id="end-message")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "End and close the batch"
        self.sub_title = f"batch {self.required_batch} · {self.reactor} · {self.operator}"
        self.reload()
        self._field("end-at").input.focus()

    # ---- reading ----------------------------------------------------------------------------

    def _read_state(self) -> EndState:
        number = self.required_batch
        return EndState(
            batch=self.notebook.get_batch(number),
            closure=self.notebook.get_closure(number),
            samples=len(self.notebook.list_samples(number)),
            signatures=tuple(
                self.notebook.list_signatures(batch_number=number, table_name="batch_closure")
            ),
        )

    def reload(self, then: str = "") -> None:
        def show(state: EndState) -> None:
            self._show_state(state)
            if then:
                self._say(then)

        self.load(self._read_state, show, group="end-state")

    def _show_state(self, state: EndState) -> None:
        self.state = state
        side = self.query_one("#end-side", Static)
        side.update(escape(end_state_text(state)))
        side.set_class(
            state.closure is not None and state.closure.signed_off_by is not None, "-closed"
        )
        closure = state.closure
        if closure is not None:
            for field_id, value in (
                ("outcome", closure.outcome),
                ("final-od600", _number(closure.final_od600)),
                ("final-dcw", _number(closure.final_dcw_g_per_l)),
                ("harvest-volume", _number(closure.harvest_volume_ml)),
                ("depletion", _number(closure.depletion_time_h)),
                ("do-spike", _number(closure.do_spike_time_h)),
                ("harvest", closure.harvest),
                ("missing-reason", closure.missing_samples_reason or ""),
            ):
                self._field(field_id).set_value(value)
        if not self._value("abort-reason") and state.batch.end_reason:
            self._field("abort-reason").set_value(state.batch.end_reason)
        self._say(self._next_step(state))

    def _next_step(self, state: EndState) -> str:
        status = state.batch.status
        if status in (BatchStatus.SETUP, BatchStatus.RUNNING):
            return "ctrl+e ends the batch (ctrl+x aborts it, with the reason)."
        if state.closure is None:
            return "Record the closure: fill in the values, ctrl+s."
        if state.closure.signed_off_by is None:
            return "A supervisor closes the batch: ctrl+k, name and PIN."
        return (
            f"Batch {state.batch.number} is closed by {state.closure.signed_off_by}. A "
            "correction: change the values, give the correction reason, ctrl+s (signed)."
        )

    # ---- actions ----------------------------------------------------------------------------

    def _confirmed(self, what: str, question: str) -> bool:
        """The first press asks, the second (the same key) acts."""
        if self._armed == what:
            self._armed = None
            return True
        self._armed = what
        self._say(question, error=True)
        return False

    def _end_time(self) -> datetime | None:
        text = self._value("end-at")
        if not text:
            return None
        return sample_math.parse_entry_time("end time", text, self.notebook.now())

    def action_end(self) -> None:
        self._clear_errors()
        if not self._confirmed("end", f"End batch {self.required_batch}? Press ctrl+e again."):
            return
        self._end(aborted=False)

    def action_abort(self) -> None:
        self._clear_errors()
        if not self._value("abort-reason"):
            self._armed = None
            self._show_error(
                NotebookValidationError("reason", "say why the batch is aborted"),
                prefix="Not aborted",
            )
            return
        question = f"Abort batch {self.required_batch}? Press ctrl+x again."
        if not self._confirmed("abort", question):
            return
        self._end(aborted=True)

    def _end(self, *, aborted: bool) -> None:
        try:
            at = self._end_time()
        except NotebookValidationError as error:
            self._show_error(error, prefix="Not ended")
            return
        self.end_batch(
            partial(
                self.notebook.end_batch,
                self.operator,
                self.required_batch,
                aborted=aborted,
                ended_at=at,
                reason=self._value("abort-reason") or None,
            )
        )

    @work(exclusive=True, group="end-write", exit_on_error=False)
    async def end_batch(self, end: Callable[[], BatchView]) -> None:
        batch = await self.write(end)
        if batch is None:
            return
        self.post_message(BatchSelected(batch, self.reactor))
        word = "aborted" if batch.status is BatchStatus.ABORTED else "ended"
        self.reload(f"Batch {batch.number} {word} {_when(batch.ended_at)}. Next: the closure.")

    def _closure_values(self) -> dict[str, str | None]:
        return {
            "outcome": self._value("outcome"),
            "final_od600": self._value("final-od600") or None,
            "final_dcw_g_per_l": self._value("final-dcw") or None,
            "harvest_volume_ml": self._value("harvest-volume") or None,
            "depletion_time_h": self._value("depletion") or None,
            "do_spike_time_h": self._value("do-spike") or None,
            "harvest": self._value("harvest"),
            "missing_samples_reason": self._value("missing-reason") or None,
        }

    def action_save_closure(self) -> None:
        self._clear_errors()
        self._armed = None
        if self.state is not None and self.state.closure is not None:
            self._correct_closure(self.state)
            return
        values = self._closure_values()
        outcome = values.pop("outcome") or ""
        self.save_closure(
            partial(
                self.notebook.close_batch,
                self.operator,
                self.required_batch,
                outcome=outcome,
                **values,  # type: ignore[arg-type]
            )
        )

    def _correct_closure(self, state: EndState) -> None:
        """A saved closure is corrected only under a supervisor's signature, with the reason."""
        reason = self._value("amend-reason")
        if not reason:
            self._show_error(
                NotebookValidationError(
                    "correction reason",
                    "the closure is saved; to correct it give the reason, then a supervisor "
                    "signs the corrected record",
                )
            )
            return
        values = self._closure_values()
        request = SignatureRequest(
            "closed",
            f"the corrected closure record of batch {state.batch.number}",
            f"reason: {reason}",
        )
        self.app.push_screen(
            SigningDialog(request), partial(self._correction_signed, reason, values)
        )

    def _correction_signed(
        self, reason: str, values: dict[str, str | None], entry: SignatureEntry | None
    ) -> None:
        if entry is None:
            self._say("Not corrected (cancelled).")
            return
        number = self.required_batch
        self.correct_closure(
            partial(
                self.notebook.amend_closure,
                entry.signer,
                number,
                pin=entry.pin,
                reason=reason,
                **values,
            )
        )

    @work(exclusive=True, group="end-write", exit_on_error=False)
    async def correct_closure(self, amend: Callable[[], ClosureView]) -> None:
        closure = await self.write(amend)
        if closure is None:
            return
        self._field("amend-reason").set_value("")
        self.reload(
            f"Closure corrected and signed by {closure.signed_off_by}; the earlier signature "
            "is kept as superseded."
        )

    @work(exclusive=True, group="end-write", exit_on_error=False)
    async def save_closure(self, close: Callable[[], ClosureView]) -> None:
        closure = await self.write(close)
        if closure is not None:
            self.reload("Closure recorded. A supervisor closes the batch: ctrl+k.")

    def action_sign(self) -> None:
        self._clear_errors()
        self._armed = None
        state = self.state
        if state is None or state.closure is None:
            self._say("Record the closure first (ctrl+s).", error=True)
            return
        if state.closure.signed_off_by is not None:
            self._say(f"Already closed by {state.closure.signed_off_by}.", error=True)
            return
        closure = state.closure
        details = (
            f"outcome {closure.outcome} · final OD600 {_number(closure.final_od600) or '—'} · "
            f"DCW {_number(closure.final_dcw_g_per_l) or '—'} g/L · harvest "
            f"{_number(closure.harvest_volume_ml) or '—'} mL · {state.samples} samples"
        )
        request = SignatureRequest(
            "closed", f"the closure record of batch {state.batch.number}", details
        )
        self.app.push_screen(SigningDialog(request), self._signed)

    def _signed(self, entry: SignatureEntry | None) -> None:
        if entry is None:
            self._say("Not signed (cancelled).")
            return
        self.sign(entry)

    @work(exclusive=True, group="end-write", exit_on_error=False)
    async def sign(self, entry: SignatureEntry) -> None:
        number = self.required_batch
        closure = await self.write(
            lambda: self.notebook.sign_off_batch(entry.signer, number, pin=entry.pin)
        )
        if closure is None:
            self._field("outcome").input.focus()
            return
        self.reload(f"Batch {number} closed: signed by {closure.signed_off_by}.")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
