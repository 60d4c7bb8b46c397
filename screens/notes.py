"""Free notes of a batch: the list, newest last, and a one-line entry (enter or ctrl+s saves)."""

from __future__ import annotations

import asyncio

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from bptwin.eln.errors import NotebookError, NotebookValidationError
from bptwin.eln.models import Note
from bptwin.eln.services import NotebookService


class NotesScreen(Screen[None]):
    """Read and write the batch's free-text notes."""

    DEFAULT_CSS = """
    NotesScreen #notes { height: 1fr; }
    NotesScreen #note-text { height: 3; }
    NotesScreen #note-status { height: auto; padding: 0 1; }
    NotesScreen #note-status.-error { color: $error; }
    """
    BINDINGS = [
        Binding("ctrl+s", "save", "Save note"),
        Binding("ctrl+l", "focus_list", "Notes list"),
        Binding("ctrl+e", "focus_entry", "Write"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, notebook: NotebookService, batch_number: int, operator: str) -> None:
        super().__init__()
        self.notebook = notebook
        self.batch_number = batch_number
        self.operator = operator
        self.notes: list[Note] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="notes", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="Write a note and press enter", id="note-text")
        yield Static("", id="note-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Notes"
        self.sub_title = f"batch {self.batch_number} · {self.operator}"
        table = self.query_one(DataTable)
        table.add_column("Time UTC", key="time", width=11)
        table.add_column("By", key="author", width=8)
        table.add_column("Note", key="text", width=100)
        self.query_one("#note-text", Input).focus()
        self.reload()

    @work(exclusive=True, group="notes-load", exit_on_error=False)
    async def reload(self) -> None:
        try:
            self.notes = await asyncio.to_thread(self.notebook.list_notes, self.batch_number)
        except NotebookError as error:
            self._say(str(error), error=True)
            return
        table = self.query_one(DataTable)
        table.clear()
        for note in self.notes:
            table.add_row(note.created_at.strftime("%m-%d %H:%M"), note.author, escape(note.text))
        if self.notes:
            table.move_cursor(row=len(self.notes) - 1)

    @on(Input.Submitted, "#note-text")
    def action_save(self) -> None:
        self.save(self.query_one("#note-text", Input).value)

    @work(exclusive=True, group="notes-save", exit_on_error=False)
    async def save(self, text: str) -> None:
        try:
            note = await asyncio.to_thread(
                self.notebook.add_note, self.operator, self.batch_number, text
            )
        except NotebookValidationError as error:
            self._say(error.message, error=True)
            return
        except NotebookError as error:
            self._say(str(error), error=True)
            return
        self.query_one("#note-text", Input).value = ""
        self._say(f"Saved note {note.id}.")
        await self.reload().wait()

    def _say(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#note-status", Static)
        status.update(escape(text))
        status.set_class(error, "-error")

    def action_focus_list(self) -> None:
        self.query_one(DataTable).focus()

    def action_focus_entry(self) -> None:
        self.query_one("#note-text", Input).focus()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
