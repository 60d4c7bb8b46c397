"""Free notes of a batch: the list, newest last, and a multi-line entry (ctrl+s saves)."""

from __future__ import annotations

import asyncio

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static, TextArea
from textual.worker import Worker

from bptwin.eln.errors import NotebookError
from bptwin.eln.notebook import Notebook
from bptwin.eln.records import NoteView
from bptwin.screens.notebook_screen import NotebookScreen
from bptwin.screens.safe_text import escape


class NotesScreen(NotebookScreen[None]):
    """Read and write the batch's free-text notes."""

    DEFAULT_CSS = """
    NotesScreen #notes { height: 1fr; }
    NotesScreen #note-text { height: 5; border: round $primary; }
    NotesScreen #note-status { height: auto; padding: 0 1; }
    NotesScreen #note-status.-error { color: $error; }
    """
    MESSAGE_SELECTOR = "#note-status"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save note"),
        Binding("ctrl+l", "focus_list", "Notes list"),
        Binding("ctrl+e", "focus_entry", "Write"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, notebook: Notebook, batch_number: int, operator: str) -> None:
        super().__init__(notebook, operator, batch_number=batch_number)
        self.notes: list[NoteView] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="notes", cursor_type="row", zebra_stripes=True)
        yield TextArea(
            id="note-text",
            soft_wrap=True,
            tab_behavior="focus",
            placeholder="Write a note (enter: new line) and press ctrl+s",
        )
        yield Static("", id="note-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Notes"
        self.sub_title = f"batch {self.required_batch} · {self.operator}"
        table = self.query_one(DataTable)
        table.add_column("Time UTC", key="time", width=11)
        table.add_column("By", key="author", width=8)
        table.add_column("Note", key="text", width=100)
        self.query_one("#note-text", TextArea).focus()
        self.reload()

    def reload(self) -> Worker[None]:
        return self.load(
            lambda: self.notebook.list_notes(self.required_batch), self._show_notes, group="notes"
        )

    def _show_notes(self, notes: list[NoteView]) -> None:
        self.notes = notes
        table = self.query_one(DataTable)
        table.clear()
        for note in notes:
            table.add_row(  # a note of several lines gets as many rows of the table
                note.created_at.strftime("%m-%d %H:%M"), note.author, escape(note.text), height=None
            )
        if notes:
            table.move_cursor(row=len(notes) - 1)

    def action_save(self) -> None:
        self.save(self.query_one("#note-text", TextArea).text)

    @work(exclusive=True, group="notes-save", exit_on_error=False)
    async def save(self, text: str) -> None:
        try:
            note = await asyncio.to_thread(
                self.notebook.add_note, self.operator, self.required_batch, text
            )
        except NotebookError as error:
            self._say(str(error), error=True)
            return
        self.query_one("#note-text", TextArea).load_text("")
        self._say(f"Saved note {note.id}.")
        await self.reload().wait()

    def action_focus_list(self) -> None:
        self.query_one(DataTable).focus()

    def action_focus_entry(self) -> None:
        self.query_one("#note-text", TextArea).focus()
