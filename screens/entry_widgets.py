"""Form pieces of the notebook-entry screens: one-line labelled fields with their error beside,
and the EntryForm screen that holds them.

Compact (one row per field) so a whole sample form fits 80×24. Errors are plain sentences from
the notebook's NotebookValidationError, shown under the field they belong to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, Label, Static

from bptwin.screens.safe_text import escape

if TYPE_CHECKING:
    from bptwin.eln.errors import NotebookValidationError

ResultT = TypeVar("ResultT")

ENTRY_CSS = """
LabelledField { height: auto; }
LabelledField > Horizontal { height: 1; }
LabelledField Label.field-label { width: 19; color: $text-muted; }
LabelledField Input { height: 1; border: none; padding: 0 1; width: 14; }
LabelledField Input:focus { border: none; background: $boost; }
LabelledField Static.field-hint { width: 1fr; padding-left: 1; color: $text-muted; }
LabelledField Static.field-error { color: $error; padding-left: 19; height: auto; display: none; }
LabelledField.-invalid Static.field-error { display: block; }
LabelledField.-invalid Label.field-label { color: $error; }
.entry-title { text-style: bold; height: 1; }
.entry-message { height: auto; }
"""


class LabelledField(Vertical):
    """Label, one-line input, a hint (unit or computed value) and the error below it."""

    def __init__(
        self,
        label: str,
        field_id: str,
        *,
        value: str = "",
        placeholder: str = "",
        hint: str = "",
        fields: Iterable[str] = (),
        password: bool = False,
        width: int | None = None,
    ) -> None:
        """``fields``: the notebook's field names whose errors belong here (besides label)."""
        super().__init__(id=f"{field_id}-field")
        self.label = label
        self.field_id = field_id
        self._value = value
        self._placeholder = placeholder
        self._hint = hint
        self._password = password
        self._width = width
        self.fields = frozenset({label.lower(), *(name.lower() for name in fields)})

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.label, classes="field-label")
            field_input = Input(
                self._value,
                placeholder=self._placeholder,
                id=self.field_id,
                password=self._password,
                select_on_focus=False,
            )
            if self._width is not None:
                field_input.styles.width = self._width
            yield field_input
            yield Static(self._hint, classes="field-hint", id=f"{self.field_id}-hint")
        yield Static("", classes="field-error", id=f"{self.field_id}-error")

    @property
    def input(self) -> Input:
        return self.query_one(Input)

    @property
    def value(self) -> str:
        return self.input.value

    def set_value(self, value: str) -> None:
        self.input.value = value

    def set_hint(self, text: str) -> None:
        self.query_one(f"#{self.field_id}-hint", Static).update(text)

    def show_error(self, message: str) -> None:
        self.query_one(f"#{self.field_id}-error", Static).update(escape(message))
        self.add_class("-invalid")

    def clear_error(self) -> None:
        self.query_one(f"#{self.field_id}-error", Static).update("")
        self.remove_class("-invalid")

    @property
    def error(self) -> str:
        return str(self.query_one(f"#{self.field_id}-error", Static).content)


def field_for(fields: Iterable[LabelledField], name: str) -> LabelledField | None:
    """The form field a notebook error's ``field`` name belongs to, if any."""
    wanted = name.lower()
    for field in fields:
        if wanted in field.fields:
            return field
    return None


class EntryForm(Screen[ResultT]):
    """A screen with labelled fields: fields by id, each notebook error at its field, one status
    line (``MESSAGE_SELECTOR``) for the outcome, escape back to the screen below."""

    MESSAGE_SELECTOR: ClassVar[str] = ".entry-status"

    def _field(self, field_id: str) -> LabelledField:
        return self.query_one(f"#{field_id}-field", LabelledField)

    def _value(self, field_id: str) -> str:
        return self._field(field_id).value.strip()

    def _clear_errors(self) -> None:
        for field in self.query(LabelledField):
            field.clear_error()
        self._say("")

    def _show_error(self, error: NotebookValidationError, *, prefix: str = "Not saved") -> None:
        """The message under its field (focused), and the outcome on the status line."""
        field = field_for(self.query(LabelledField), error.field)
        if field is not None:
            field.show_error(error.message)
            field.input.focus()
        self._say(f"{prefix}: {error.message}", error=True)

    def _say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one(self.MESSAGE_SELECTOR, Static)
        message.update(escape(text))
        message.set_class(error, "-error")

    def action_back(self) -> None:
        """Back to the screen below (the one that opened this, or the dashboard)."""
        if len(self.app.screen_stack) > 1:
            self.dismiss(None)
