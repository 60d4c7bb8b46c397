"""Process changes of a batch: plan a parameter change, and a supervisor approves it with an
electronic signature (signing dialog: name and PIN). UI only: the notebook checks and stores."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from bptwin.eln import sample_math
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.notebook import Notebook
from bptwin.eln.records import ProcessChangeView
from bptwin.screens.entry_widgets import ENTRY_CSS, LabelledField
from bptwin.screens.notebook_screen import NotebookScreen
from bptwin.screens.signing import SignatureEntry, SignatureRequest, SigningDialog


def change_text(change: ProcessChangeView) -> str:
    return f"{change.parameter}: {change.old_value or '?'} → {change.new_value}"


class ProcessChangesScreen(NotebookScreen[None]):
    """The batch's process changes; plan one (ctrl+s), approve the selected one (ctrl+k)."""

    DEFAULT_CSS = (
        ENTRY_CSS
        + """
    ProcessChangesScreen #changes { height: 1fr; min-height: 4; }
    ProcessChangesScreen #change-form { height: auto; padding: 0 1;
        border-top: solid $primary; }
    ProcessChangesScreen #change-message { height: auto; padding: 0 1; }
    ProcessChangesScreen #change-message.-error { color: $error; }
    """
    )
    MESSAGE_SELECTOR = "#change-message"
    BINDINGS = [
        Binding("ctrl+s", "plan", "Plan change"),
        Binding("ctrl+k", "approve", "Approve (sign)", priority=True),
        Binding("ctrl+r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self, notebook: Notebook, operator: str, *, batch_number: int, reactor: str = "R1"
    ) -> None:
        super().__init__(notebook, operator, batch_number=batch_number, reactor=reactor)
        self.changes: list[ProcessChangeView] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="changes", cursor_type="row", zebra_stripes=True)
        with Vertical(id="change-form"):
            yield Static("Plan a process change", classes="entry-title")
            yield LabelledField("Parameter", "parameter", width=22, hint="e.g. stirrer_rpm")
            yield LabelledField("Old value", "old-value", fields=("old value",))
            yield LabelledField("New value", "new-value", fields=("new value",))
            yield LabelledField(
                "Planned at UTC",
                "planned-at",
                width=18,
                hint="empty = now",
                fields=("planned time",),
            )
            yield LabelledField("Reason", "change-reason", width=34, fields=("reason",))
        yield Static("", id="change-message")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Process changes"
        self.sub_title = f"batch {self.required_batch} · {self.operator}"
        table = self.query_one(DataTable)
        table.add_column("#", key="id", width=3)
        table.add_column("Planned", key="planned", width=11)
        table.add_column("Change", key="change", width=28)
        table.add_column("By", key="by", width=8)
        table.add_column("Approved", key="approved", width=16)
        table.add_column("Reason", key="reason", width=24)
        self.reload()
        self._field("parameter").input.focus()

    def reload(self, then: str = "") -> None:
        def show(changes: list[ProcessChangeView]) -> None:
            self._show_changes(changes)
            if then:
                self._say(then)

        self.load(
            lambda: self.notebook.list_process_changes(self.required_batch), show, group="changes"
        )

    def _show_changes(self, changes: list[ProcessChangeView]) -> None:
        self.changes = changes
        table = self.query_one(DataTable)
        table.clear()
        for change in changes:
            approved = (
                f"{change.approved_by} {change.approved_at:%H:%M}"
                if change.approved_by and change.approved_at
                else "waiting"
            )
            table.add_row(
                str(change.id),
                change.planned_at.strftime("%m-%d %H:%M"),
                change_text(change),
                change.requested_by,
                approved,
                change.reason,
                key=str(change.id),
            )
        waiting = sum(1 for change in changes if change.approved_by is None)
        self._say(
            f"{len(changes)} change(s), {waiting} waiting for approval. ctrl+s plans one; "
            "select one in the table and ctrl+k to approve (supervisor)."
            if changes
            else "No process changes. Fill in the form and press ctrl+s to plan one."
        )

    def selected(self) -> ProcessChangeView | None:
        table = self.query_one(DataTable)
        if not self.changes or table.cursor_row < 0:
            return None
        return self.changes[min(table.cursor_row, len(self.changes) - 1)]

    def action_reload(self) -> None:
        self.reload()

    def action_plan(self) -> None:
        self._clear_errors()
        text = self._value("planned-at")
        try:
            planned = (
                sample_math.parse_entry_time("planned time", text, self.notebook.now())
                if text
                else self.notebook.now()
            )
        except NotebookValidationError as error:
            self._show_error(error)
            return
        self.plan(
            partial(
                self.notebook.plan_process_change,
                self.operator,
                self.required_batch,
                parameter=self._value("parameter"),
                old_value=self._value("old-value"),
                new_value=self._value("new-value"),
                planned_at=planned,
                reason=self._value("change-reason"),
            )
        )

    @work(exclusive=True, group="change-write", exit_on_error=False)
    async def plan(self, plan: Callable[[], ProcessChangeView]) -> None:
        change = await self.write(plan)
        if change is None:
            return
        for field_id in ("parameter", "old-value", "new-value", "planned-at", "change-reason"):
            self._field(field_id).set_value("")
        self.reload(f"Change #{change.id} planned; a supervisor approves it (ctrl+k).")

    def action_approve(self) -> None:
        self._clear_errors()
        change = self.selected()
        if change is None:
            self._say("Nothing to approve: no change selected.", error=True)
            return
        if change.approved_by is not None:
            self._say(f"Change #{change.id} is already approved.", error=True)
            return
        request = SignatureRequest(
            "approved",
            f"process change #{change.id}",
            f"{change_text(change)} at {change.planned_at:%Y-%m-%d %H:%M} UTC"
            + (f" · {change.reason}" if change.reason else ""),
        )
        self.app.push_screen(SigningDialog(request), partial(self._signed, change))

    def _signed(self, change: ProcessChangeView, entry: SignatureEntry | None) -> None:
        if entry is None:
            self._say("Not approved (cancelled).")
            return
        self.approve(change, entry)

    @work(exclusive=True, group="change-write", exit_on_error=False)
    async def approve(self, change: ProcessChangeView, entry: SignatureEntry) -> None:
        change_id = change.id or 0
        approved = await self.write(
            lambda: self.notebook.approve_process_change(entry.signer, change_id, pin=entry.pin)
        )
        if approved is not None:
            self.reload(f"Change #{change_id} approved: signed by {approved.approved_by}.")
