"""The supervisor's confirmation of closed-loop control (control mode 1): name and PIN."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmControlScreen(ModalScreen[tuple[str, str] | None]):
    """Asks a supervisor for name and PIN; dismissed with them, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, reactor: str, minutes: float) -> None:
        super().__init__()
        self.reactor = reactor
        self.minutes = minutes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-control"):
            yield Static(
                f"[b]Closed-loop control of {self.reactor}[/]\n"
                f"Setpoints for stirrer and O₂ will be sent to the reactor for "
                f"{self.minutes:g} min. A supervisor confirms with name and PIN.",
                id="confirm-text",
            )
            yield Label("Supervisor")
            yield Input(placeholder="name", id="supervisor")
            yield Label("PIN")
            yield Input(placeholder="PIN", password=True, id="pin")
            yield Static("", id="confirm-error")
            yield Button("Confirm", variant="warning", id="confirm")

    def show_error(self, message: str) -> None:
        self.query_one("#confirm-error", Static).update(f"[red]{message}[/]")

    @on(Input.Submitted, "#supervisor")
    def _next_field(self) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#pin")
    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        name = self.query_one("#supervisor", Input).value.strip()
        pin = self.query_one("#pin", Input).value
        if not name or not pin:
            self.show_error("Enter the supervisor's name and PIN.")
            return
        self.dismiss((name, pin))

    def action_cancel(self) -> None:
        self.dismiss(None)
