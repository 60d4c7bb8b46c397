"""Deviations: the batch's list with review state, a logging form with the SOP's examples for the
chosen level, and the review (levels 2 and 3 by a supervisor, confirmed with their PIN).

The notebook service decides what is allowed; these screens collect text and show its answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from functools import partial

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import Worker

from bptwin.eln import deviation_guide, sample_math
from bptwin.eln.errors import NotebookError, NotebookPermissionError, NotebookValidationError
from bptwin.eln.notebook import Notebook
from bptwin.eln.records import DeviationView
from bptwin.screens.entry_widgets import ENTRY_CSS, LabelledField
from bptwin.screens.notebook_screen import NotebookScreen
from bptwin.screens.safe_text import escape

FORM_CSS = (
    ENTRY_CSS
    + """
.entry-form { height: 1fr; padding: 0 1; }
.entry-guidance { height: auto; color: $text-muted; padding: 0 0 0 19; }
.entry-status { height: auto; padding: 0 1; }
.entry-status.-error { color: $error; }
"""
)


def _time_text(moment: datetime | None) -> str:
    return "" if moment is None else sample_math.format_entry_time(moment)


class DeviationFormScreen(NotebookScreen[DeviationView | None]):
    """Log a deviation; dismissed with the stored deviation (or None when cancelled)."""

    DEFAULT_CSS = FORM_CSS
    BINDINGS = [
        Binding("ctrl+s", "save", "Save deviation"),
        Binding("escape", "back", "Cancel"),
    ]

    def __init__(
        self,
        notebook: Notebook,
        batch_number: int,
        operator: str,
        draft: deviation_guide.DeviationDraft | None = None,
    ) -> None:
        super().__init__(notebook, operator, batch_number=batch_number)
        self.draft = draft or deviation_guide.DeviationDraft(started_at=notebook.now())

    def compose(self) -> ComposeResult:
        draft = self.draft
        yield Header()
        with VerticalScroll(classes="entry-form"):
            yield Static(f"New deviation · batch {self.required_batch}", classes="entry-title")
            yield LabelledField(
                "Level 1/2/3", "level", value=str(draft.level), width=5, fields=("level",)
            )
            yield Static(
                escape(deviation_guide.guidance(draft.level)),
                id="level-guidance",
                classes="entry-guidance",
            )
            yield LabelledField(
                "Category",
                "category",
                value=draft.category,
                hint=", ".join(deviation_guide.CATEGORIES[:4]) + "…",
            )
            yield LabelledField("Title", "title", value=draft.title, width=40)
            yield LabelledField(
                "Description", "description", value=draft.description, multiline=True
            )
            yield LabelledField(
                "Start UTC",
                "start",
                value=_time_text(draft.started_at),
                width=20,
                fields=("start",),
            )
            yield LabelledField(
                "End UTC",
                "end",
                value=_time_text(draft.ended_at),
                hint="blank: ongoing",
                width=20,
                fields=("end",),
            )
            yield LabelledField("Root cause", "root-cause", value=draft.root_cause, multiline=True)
            yield LabelledField(
                "Corrective action",
                "corrective-action",
                value=draft.corrective_action,
                multiline=True,
            )
            yield LabelledField("Impact", "impact", value=draft.impact, multiline=True)
        yield Static("", classes="entry-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Deviation"
        self.sub_title = f"batch {self.required_batch} · {self.operator}"
        self.query_one("#level", Input).focus()

    @on(Input.Changed, "#level")
    def _level_changed(self, event: Input.Changed) -> None:
        text = deviation_guide.guidance(event.value) or "Level: 1 minor, 2 major, 3 critical."
        self.query_one("#level-guidance", Static).update(escape(text))

    def action_save(self) -> None:
        self._clear_errors()
        now = self.notebook.now()
        try:
            start = sample_math.parse_entry_time("start", self._value("start"), now)
            end_text = self._value("end")
            end = sample_math.parse_entry_time("end", end_text, now) if end_text else None
        except NotebookValidationError as error:
            self._show_error(error)
            return
        self.save(
            partial(
                self.notebook.log_deviation,
                self.operator,
                self.required_batch,
                level=self._value("level"),
                category=self._value("category"),
                title=self._value("title"),
                description=self._value("description"),
                started_at=start,
                ended_at=end,
                root_cause=self._value("root-cause"),
                corrective_action=self._value("corrective-action"),
                impact=self._value("impact"),
            )
        )

    @work(exclusive=True, group="deviation-save", exit_on_error=False)
    async def save(self, log: Callable[[], DeviationView]) -> None:
        deviation = await self.write(log)
        if deviation is not None:
            self.dismiss(deviation)


class DeviationReviewScreen(NotebookScreen[DeviationView | None]):
    """Review (and optionally close) one deviation; the reviewer confirms with their PIN."""

    DEFAULT_CSS = FORM_CSS
    BINDINGS = [
        Binding("ctrl+s", "save", "Save review"),
        Binding("escape", "back", "Cancel"),
    ]

    def __init__(self, notebook: Notebook, deviation: DeviationView, operator: str) -> None:
        super().__init__(notebook, operator)
        self.deviation = deviation

    def compose(self) -> ComposeResult:
        d = self.deviation
        who = "a supervisor" if deviation_guide.needs_supervisor(d.level) else "any operator"
        yield Header()
        with VerticalScroll(classes="entry-form"):
            yield Static(
                escape(f"Review deviation {d.id} · level {d.level} · {d.title}"),
                classes="entry-title",
            )
            yield Static(
                escape(f"{d.description or 'no description'} · reviewed by {who}"),
                classes="entry-guidance",
            )
            yield LabelledField("Reviewer", "reviewer", value=self.operator, fields=("operator",))
            yield LabelledField("PIN", "pin", password=True, width=10)
            yield LabelledField("Root cause", "root-cause", value=d.root_cause, multiline=True)
            yield LabelledField(
                "Corrective action", "corrective-action", value=d.corrective_action, multiline=True
            )
            yield LabelledField("Impact", "impact", value=d.impact, multiline=True)
            yield LabelledField("Close it y/n", "close", value="n", width=5, fields=("close",))
        yield Static("", classes="entry-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Deviation review"
        self.sub_title = f"deviation {self.deviation.id}"
        self.query_one("#pin", Input).focus()

    def action_save(self) -> None:
        self._clear_errors()
        try:
            close = bool(sample_math.parse_yes_no("close", self._value("close")))
        except NotebookValidationError as error:
            self._show_error(error)
            return
        self.save(self._value("reviewer"), self._field("pin").value, close)

    @work(exclusive=True, group="deviation-review", exit_on_error=False)
    async def save(self, reviewer: str, pin: str, close: bool) -> None:
        if not await asyncio.to_thread(self.notebook.check_pin, reviewer, pin):
            self._field("pin").show_error("unknown reviewer or wrong PIN")
            self._say("Not saved: unknown reviewer or wrong PIN", error=True)
            return
        assert self.deviation.id is not None
        review = partial(
            self.notebook.review_deviation,
            reviewer,
            self.deviation.id,
            root_cause=self._value("root-cause"),
            corrective_action=self._value("corrective-action"),
            impact=self._value("impact"),
            close=close,
            pin=pin,  # the review is signed with it (eln.signatures)
        )
        try:
            reviewed = await asyncio.to_thread(review)
        except NotebookPermissionError as error:
            self._field("reviewer").show_error(str(error))
            self._say(f"Not saved: {error}", error=True)
            return
        except NotebookValidationError as error:
            self._show_error(error)
            return
        except NotebookError as error:
            self._say(str(error), error=True)
            return
        self.dismiss(reviewed)


class DeviationsScreen(NotebookScreen[None]):
    """The deviations of a batch with their review state; log new ones, review them."""

    DEFAULT_CSS = """
    DeviationsScreen #deviations { height: 1fr; }
    DeviationsScreen #deviation-detail { height: auto; max-height: 6; padding: 0 1;
        border-top: solid $primary; }
    DeviationsScreen #deviation-detail.-error { color: $error; }
    """
    MESSAGE_SELECTOR = "#deviation-detail"
    BINDINGS = [
        # r is the app's acceptance key: the review is enter on the selected deviation.
        Binding("n", "new", "New deviation"),
        Binding("enter", "review", "Review", priority=True),
        Binding("ctrl+r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, notebook: Notebook, batch_number: int, operator: str) -> None:
        super().__init__(notebook, operator, batch_number=batch_number)
        self.deviations: list[DeviationView] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="deviations", cursor_type="row", zebra_stripes=True)
        yield Static("", id="deviation-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Deviations"
        self.sub_title = f"batch {self.required_batch} · {self.operator}"
        table = self.query_one(DataTable)
        table.add_column("#", key="id", width=3)
        table.add_column("Lvl", key="level", width=3)
        table.add_column("Category", key="category", width=11)
        table.add_column("Title", key="title", width=24)
        table.add_column("Start", key="start", width=11)
        table.add_column("Status", key="status", width=8)
        table.add_column("Reviewer", key="reviewer", width=8)
        table.focus()
        self.reload()

    def reload(self, select_id: int | None = None) -> Worker[None]:
        def show(deviations: list[DeviationView]) -> None:
            self._show_deviations(deviations, select_id)

        return self.load(
            lambda: self.notebook.list_deviations(self.required_batch), show, group="deviations"
        )

    def _show_deviations(self, deviations: list[DeviationView], select_id: int | None) -> None:
        self.deviations = deviations
        table = self.query_one(DataTable)
        table.clear()
        for d in deviations:
            table.add_row(
                str(d.id),
                str(d.level),
                escape(d.category),
                escape(d.title),
                d.started_at.strftime("%m-%d %H:%M"),
                d.status.value,
                escape(d.reviewed_by or ""),
                key=str(d.id),
            )
        if select_id is not None and str(select_id) in table.rows:
            table.move_cursor(row=table.get_row_index(str(select_id)))
        self._show_detail()

    def selected(self) -> DeviationView | None:
        table = self.query_one(DataTable)
        if not self.deviations or table.cursor_row < 0:
            return None
        return self.deviations[min(table.cursor_row, len(self.deviations) - 1)]

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        d = self.selected()
        if d is None:
            self._say("No deviations for this batch. Press n to log one.")
            return
        name = deviation_guide.LEVEL_NAMES.get(d.level, "?")
        lines = [f"Level {d.level} {name} · {d.category} · {d.title}"]
        for label, text in (
            ("description", d.description),
            ("root cause", d.root_cause),
            ("corrective action", d.corrective_action),
            ("impact", d.impact),
        ):
            if text:
                lines.append(f"{label}: {text}")
        self._say("\n".join(lines))

    def _after(self) -> Callable[[DeviationView | None], None]:
        def done(result: DeviationView | None) -> None:
            self.reload(select_id=None if result is None else result.id)

        return done

    def action_new(self) -> None:
        self.app.push_screen(
            DeviationFormScreen(self.notebook, self.required_batch, self.operator), self._after()
        )

    def action_review(self) -> None:
        deviation = self.selected()
        if deviation is None:
            self._say("Nothing to review: no deviation selected.", error=True)
            return
        if deviation.status.value == "closed":
            self._say(f"Deviation {deviation.id} is closed.", error=True)
            return
        self.app.push_screen(
            DeviationReviewScreen(self.notebook, deviation, self.operator), self._after()
        )

    def action_reload(self) -> None:
        self.reload()
