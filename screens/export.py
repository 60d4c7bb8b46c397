"""The export dialog: runs a given export callable in a worker thread and shows its progress.

UI only: the screen knows nothing of notebooks or stores. It is handed ``run(progress)``,
which does the work and returns a result (anything with ``summary()`` or a useful ``str``);
``progress(fraction, text)`` may be called from the worker thread as often as the work likes.
Escape cancels a running export (the next progress call raises :class:`ExportCancelled`, so
the export stops and cleans up) and closes a finished one; the screen is dismissed with the
result, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Label, ProgressBar, Static
from textual.worker import Worker, get_current_worker

ProgressCallback = Callable[[float, str], None]


class ExportCancelled(Exception):
    """Raised inside the export's progress callback once the operator cancelled."""


class ExportProgressed(Message):
    """The worker got further; newer progress replaces older in the queue."""

    def __init__(self, fraction: float, text: str) -> None:
        super().__init__()
        self.fraction = fraction
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExportProgressed)


class ExportFinished(Message):
    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


class ExportFailed(Message):
    def __init__(self, problem: str, cancelled: bool = False) -> None:
        super().__init__()
        self.problem = problem
        self.cancelled = cancelled


class ExportScreen(ModalScreen[Any]):
    """A modal progress dialog around one export; never blocks the UI thread."""

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    #export-dialog {
        width: 76; max-width: 95%; height: auto; padding: 1 2;
        border: thick $accent; background: $surface;
    }
    #export-title { text-style: bold; margin-bottom: 1; }
    #export-bar { margin-bottom: 1; width: 100%; }
    #export-bar Bar { width: 1fr; }
    #export-status { color: $text-muted; height: auto; }
    #export-outcome { height: auto; margin: 1 0; }
    #export-close { width: auto; }
    """

    BINDINGS = [Binding("escape", "close", "Cancel / close")]

    def __init__(self, title: str, run: Callable[[ProgressCallback], Any]) -> None:
        super().__init__()
        self.title_text = title
        self._run = run
        self.running = False
        self.result: Any = None
        self.problem: str | None = None
        self._worker: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog"):
            yield Label(self.title_text, id="export-title")
            yield ProgressBar(total=100, show_eta=False, id="export-bar")
            yield Static("starting…", id="export-status")
            yield Static("", id="export-outcome")
            yield Button("Cancel", id="export-close", variant="default")

    def on_mount(self) -> None:
        self.running = True
        self._worker = self.run_export()

    @work(thread=True, exit_on_error=False, exclusive=True, group="export", name="export")
    def run_export(self) -> None:
        worker = get_current_worker()

        def progress(fraction: float, text: str) -> None:
            if worker.is_cancelled:
                raise ExportCancelled("export cancelled")
            self.post_message(ExportProgressed(fraction, text))

        try:
            result = self._run(progress)
        except ExportCancelled:
            self.post_message(ExportFailed("Export cancelled; nothing was written.", True))
        except Exception as exc:  # shown to the operator in plain words, not a crash
            self.post_message(ExportFailed(str(exc) or type(exc).__name__))
        else:
            self.post_message(ExportFinished(result))

    @on(ExportProgressed)
    def _progressed(self, message: ExportProgressed) -> None:
        if not self.running:
            return
        self.query_one(ProgressBar).update(progress=round(100 * message.fraction, 1))
        self.query_one("#export-status", Static).update(message.text)

    @on(ExportFinished)
    def _finished(self, message: ExportFinished) -> None:
        self.running = False
        self.result = message.result
        summary = getattr(message.result, "summary", None)
        text = summary() if callable(summary) else str(message.result)
        self.query_one(ProgressBar).update(progress=100)
        self.query_one("#export-status", Static).update("done")
        self.query_one("#export-outcome", Static).update(f"[green]Exported[/] {_escape(text)}")
        self._finish_button()

    @on(ExportFailed)
    def _failed(self, message: ExportFailed) -> None:
        self.running = False
        self.problem = message.problem
        colour = "yellow" if message.cancelled else "red"
        heading = "Cancelled" if message.cancelled else "Export failed"
        self.query_one("#export-status", Static).update(heading.lower())
        self.query_one("#export-outcome", Static).update(
            f"[{colour}]{heading}:[/] {_escape(message.problem)}"
        )
        self._finish_button()

    def _finish_button(self) -> None:
        button = self.query_one("#export-close", Button)
        button.label = "Close"
        button.focus()

    @on(Button.Pressed, "#export-close")
    def _close_pressed(self) -> None:
        self.action_close()

    def action_close(self) -> None:
        if self.running and self._worker is not None:
            self.query_one("#export-status", Static).update("cancelling…")
            self._worker.cancel()
            return
        self.dismiss(self.result)


def _escape(text: str) -> str:
    from bptwin.screens.safe_text import escape

    return escape(text)
