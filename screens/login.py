"""Operator login at the start of a TUI session: name and PIN, checked against the operator table.

On a notebook with no operators yet, the same screen registers the first one, a supervisor, who
can then add the others. Every notebook write and alarm action of the session carries the name.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from bptwin.eln.errors import NotebookError, NotebookValidationError
from bptwin.eln.notebook import Notebook
from bptwin.eln.states import OperatorRole
from bptwin.screens.entry_widgets import ENTRY_CSS, LabelledField


class LoginScreen(ModalScreen[str | None]):
    """Dismissed with the logged-in operator's name; there is no way around it but quitting
    (or, where ``viewer_allowed``, escape: None, a viewer that cannot write)."""

    DEFAULT_CSS = (
        ENTRY_CSS
        + """
    LoginScreen { align: center middle; }
    LoginScreen #login { width: 64; height: auto; padding: 1 2; border: thick $primary;
        background: $surface; }
    LoginScreen #login-message { height: auto; margin-top: 1; }
    LoginScreen #login-message.-error { color: $error; }
    """
    )
    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit", priority=True)]

    def __init__(
        self,
        notebook: Notebook,
        *,
        first_run: bool,
        station: str = "",
        viewer_allowed: bool = False,
    ) -> None:
        """``viewer_allowed``: escape goes on without a login, as a viewer (a browser session)."""
        super().__init__()
        self.viewer_allowed = viewer_allowed
        self.notebook = notebook
        self.first_run = first_run
        self.station = station

    def compose(self) -> ComposeResult:
        with Vertical(id="login"):
            if self.first_run:
                yield Static(
                    "[b]First start: register the first supervisor[/]\n"
                    "No operator is registered in this notebook yet. The first one is a "
                    "supervisor, who can then add operators.",
                    classes="entry-title-block",
                )
            else:
                where = f" at {self.station}" if self.station else ""
                yield Static(f"[b]Log in{where}[/]", classes="entry-title")
            # Operator names are user names (eln/form_rules): said before the first try.
            yield LabelledField(
                "Name",
                "login-name",
                fields=("name", "operator"),
                placeholder="lower-case, e.g. ana",
                width=24,
            )
            yield LabelledField("PIN", "login-pin", fields=("pin",), password=True, width=12)
            if self.first_run:
                yield LabelledField("PIN again", "login-pin2", password=True, width=12)
            keys = "enter: next field / log in · "
            keys += "escape: view only · " if self.viewer_allowed else ""
            yield Static(f"{keys}ctrl+q: quit", id="login-message")

    def on_mount(self) -> None:
        self.query_one("#login-name", Input).focus()

    def key_escape(self) -> None:
        if self.viewer_allowed:
            self.dismiss(None)

    def _field(self, field_id: str) -> LabelledField:
        return self.query_one(f"#{field_id}-field", LabelledField)

    def _say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#login-message", Static)
        message.update(text)
        message.set_class(error, "-error")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        order = ["login-name", "login-pin"] + (["login-pin2"] if self.first_run else [])
        current = event.input.id or ""
        if current in order[:-1]:
            self.query_one(f"#{order[order.index(current) + 1]}", Input).focus()
            return
        self._log_in()

    def _log_in(self) -> None:
        fields = [self._field("login-name"), self._field("login-pin")]
        if self.first_run:
            fields.append(self._field("login-pin2"))
        for field in fields:
            field.clear_error()
        name = fields[0].value.strip()
        pin = fields[1].value
        if not name:
            fields[0].show_error("Enter your operator name.")
            return
        if not pin:
            fields[1].show_error("Enter your PIN.")
            return
        if self.first_run and fields[2].value != pin:
            self._clear_pins()  # typed again from the start, both of them
            fields[1].show_error("The two PINs differ: type the PIN twice again.")
            self.query_one("#login-pin", Input).focus()
            return
        self._say("Checking…")
        self._check(name, pin)

    @work(thread=True, exclusive=True, group="login", exit_on_error=False)
    def _check(self, name: str, pin: str) -> None:
        try:
            if self.first_run:
                self.notebook.create_operator(name, name, OperatorRole.SUPERVISOR, pin)
            operator = self.notebook.authenticate(name, pin)
        except NotebookError as exc:
            self.app.call_from_thread(self._refused, exc)
            return
        self.app.call_from_thread(self.dismiss, operator.name)

    def _clear_pins(self) -> None:
        self._field("login-pin").set_value("")
        if self.first_run:
            self._field("login-pin2").set_value("")

    def _refused(self, exc: NotebookError) -> None:
        self._clear_pins()  # before the error, so clearing them does not count as a correction
        target = None
        if isinstance(exc, NotebookValidationError):
            target = {"name": "login-name", "pin": "login-pin", "PIN": "login-pin"}.get(exc.field)
        if target is not None:
            self._field(target).show_error(str(exc))
            self._say("")
        else:
            self._say(str(exc), error=True)
        self.query_one("#login-pin", Input).focus()
