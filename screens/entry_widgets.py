"""Form pieces of the notebook-entry screens: labelled fields with their error below, and the
EntryForm screen that holds them.

Compact (one row per field, a few rows for free text) so a whole sample form fits 80×24. Errors
are plain sentences from the notebook's NotebookValidationError, shown under the field they
belong to until the value is changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Label, Static, TextArea

from bptwin.screens.safe_text import escape

if TYPE_CHECKING:
    from bptwin.eln.errors import NotebookValidationError

ResultT = TypeVar("ResultT")

ENTRY_CSS = """
LabelledField { height: auto; }
LabelledField > Horizontal { height: 1; }
LabelledField.-multiline > Horizontal { height: auto; }
LabelledField Label.field-label { width: 19; color: $text-muted; }
LabelledField Input { height: 1; border: none; padding: 0 1; width: 3fr; min-width: 12;
    max-width: 48; }
LabelledField Input:focus { border: none; background: $boost; }
LabelledField TextArea { height: 4; border: none; padding: 0 1; width: 1fr; min-width: 24;
    max-width: 96; background: $boost 50%; }
LabelledField TextArea:focus { border: none; background: $boost; }
LabelledField Static.field-hint { width: 2fr; padding-left: 1; color: $text-muted; }
LabelledField Static.field-error { color: $error; padding-left: 19; height: auto; display: none; }
LabelledField.-invalid Static.field-error { display: block; }
LabelledField.-invalid Label.field-label { color: $error; }
.entry-title { text-style: bold; height: 1; }
.entry-message { height: auto; }
"""


class LabelledField(Vertical):
    """Label, input (one line, or a few for free text), a hint (unit or computed value) and the
    error below it, cleared as soon as the value changes."""

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
        multiline: bool = False,
    ) -> None:
        """``fields``: the notebook's field names whose errors belong here (besides label);
        ``multiline``: free text over several lines (enter starts a new line)."""
        super().__init__(id=f"{field_id}-field")
        self.label = label
        self.field_id = field_id
        self._value = value
        self._placeholder = placeholder
        self._hint = hint
        self._password = password
        self._width = width
        self.multiline = multiline
        self._value_at_error = ""
        self.set_class(multiline, "-multiline")
        self.fields = frozenset({label.lower(), *(name.lower() for name in fields)})

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.label, classes="field-label")
            field_input: Input | TextArea
            if self.multiline:
                field_input = TextArea(
                    self._value,
                    id=self.field_id,
                    soft_wrap=True,
                    tab_behavior="focus",
                    placeholder=self._placeholder,
                )
            else:
                field_input = Input(
                    self._value,
                    placeholder=self._placeholder,
                    id=self.field_id,
                    password=self._password,
                    select_on_focus=False,
                )
            if self._width is not None:  # a short code or number: exactly this wide
                field_input.styles.width = self._width
                field_input.styles.min_width = self._width
            yield field_input
            yield Static(self._hint, classes="field-hint", id=f"{self.field_id}-hint")
        yield Static("", classes="field-error", id=f"{self.field_id}-error")

    @property
    def input(self) -> Input | TextArea:
        return self.query_one(f"#{self.field_id}", Input if not self.multiline else TextArea)

    @property
    def value(self) -> str:
        field_input = self.input
        return field_input.text if isinstance(field_input, TextArea) else field_input.value

    def set_value(self, value: str) -> None:
        field_input = self.input
        if isinstance(field_input, TextArea):
            field_input.load_text(value)
        else:
            field_input.value = value

    class Corrected(Message):
        """The value of a field that showed an error was changed (the error is cleared)."""

    @on(Input.Changed)
    @on(TextArea.Changed)
    def _value_changed(self) -> None:
        """A corrected value no longer carries the old complaint."""
        if self.has_class("-invalid") and self.value != self._value_at_error:
            self.clear_error()
            self.post_message(self.Corrected())

    def set_hint(self, text: str) -> None:
        self.query_one(f"#{self.field_id}-hint", Static).update(text)

    def show_error(self, message: str) -> None:
        self._value_at_error = self.value
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
    _status_names_field: bool = False  # the red status line repeats a field's error

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
        self._status_names_field = field is not None

    @on(LabelledField.Corrected)
    def _field_corrected(self) -> None:
        """Every complained-about value changed: the status line's complaint goes too."""
        if self._status_names_field and not self.query("LabelledField.-invalid"):
            self._say("")

    def _say(self, text: str, *, error: bool = False) -> None:
        self._status_names_field = False
        message = self.query_one(self.MESSAGE_SELECTOR, Static)
        message.update(escape(text))
        message.set_class(error, "-error")

    def action_back(self) -> None:
        """Back to the screen below (the one that opened this, or the dashboard)."""
        if len(self.app.screen_stack) > 1:
            self.dismiss(None)
