"""The signing dialog: an electronic signature asks for the signer's name and PIN at the moment
of signing, and says what is signed and what the signature means (21 CFR Part 11 §11.50,
§11.200). UI only: the notebook checks the PIN and stores the signature (eln.signatures)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


@dataclass(frozen=True, slots=True)
class SignatureRequest:
    """What the dialog shows: the meaning of the signature and the record it is given to."""

    meaning: str  # "closed", "approved", "reviewed"...
    record: str  # e.g. "the closure record of batch 7"
    details: str = ""  # the content being signed, in a few lines
    supervisor: bool = True  # whether only a supervisor may sign


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    """Name and PIN typed into the dialog (never stored by the screens)."""

    signer: str
    pin: str


class SigningDialog(ModalScreen[SignatureEntry | None]):
    """Asks for name and PIN to sign; dismissed with them, or None when cancelled (escape)."""

    DEFAULT_CSS = """
    SigningDialog { align: center middle; }
    SigningDialog #signing { width: 64; height: auto; border: thick $warning; padding: 0 1;
        background: $surface; }
    SigningDialog #signing-text { height: auto; margin-bottom: 1; }
    SigningDialog Input { width: 30; }
    SigningDialog #signing-error { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, request: SignatureRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        request = self.request
        who = "A supervisor signs" if request.supervisor else "Sign"
        details = f"\n{escape(request.details)}" if request.details else ""
        with Vertical(id="signing"):
            yield Static(
                f"[b]Electronic signature: {escape(request.meaning)}[/]\n"
                f"{who} {escape(request.record)}.{details}\n"
                "Your name, the date and time and the meaning are recorded with the exact "
                "content signed; the signed record cannot be changed afterwards.",
                id="signing-text",
            )
            yield Label("Name (login)")
            yield Input(placeholder="name", id="signer")
            yield Label("PIN")
            yield Input(placeholder="PIN", password=True, id="signer-pin")
            yield Static("", id="signing-error")
            yield Button(f"Sign: {request.meaning}", variant="warning", id="sign")

    def on_mount(self) -> None:
        self.query_one("#signer", Input).focus()

    def show_error(self, message: str) -> None:
        self.query_one("#signing-error", Static).update(escape(message))

    @on(Input.Submitted, "#signer")
    def _next_field(self) -> None:
        self.query_one("#signer-pin", Input).focus()

    @on(Input.Submitted, "#signer-pin")
    @on(Button.Pressed, "#sign")
    def _sign(self) -> None:
        name = self.query_one("#signer", Input).value.strip()
        pin = self.query_one("#signer-pin", Input).value
        if not name or not pin:
            self.show_error("Enter the signer's name and PIN.")
            return
        self.dismiss(SignatureEntry(name, pin))

    def action_cancel(self) -> None:
        self.dismiss(None)
