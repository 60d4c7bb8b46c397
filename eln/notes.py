"""Free-text notes of a batch (no UI code here)."""

from __future__ import annotations

from sqlmodel import col

from bptwin.eln import form_rules as check
from bptwin.eln.models import Note
from bptwin.eln.unit_of_work import AggregateService, find_batch, of_batch


class NoteService(AggregateService):
    """Notes: written by an operator, listed oldest first."""

    def add_note(self, actor: str, number: int, text: str) -> Note:
        note = Note(
            author=actor, text=check.text("note", text, required=True), created_at=self.unit.now()
        )
        return self.unit.add_to_batch(actor, number, note)

    def list_notes(self, number: int) -> list[Note]:
        with self.unit.read() as session:
            batch = find_batch(session, number)
            return list(session.exec(of_batch(Note, batch).order_by(col(Note.id))))
