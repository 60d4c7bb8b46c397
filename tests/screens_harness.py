"""Shared pieces of the notebook-screen tests: a real notebook with a running batch, and a
small App that shows one screen (the screens do not need the whole control room)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input, Static, TextArea

from bptwin.database.relational import make_engine
from bptwin.eln.models import OperatorRole
from bptwin.eln.services import NotebookService
from bptwin.screens.entry_widgets import LabelledField
from bptwin.screens.live import LiveApp
from bptwin.twin.live import LiveSnapshot

INOCULATED_AT = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
# 4 h 5 min into the batch: the 0 h and 2 h samples are missed, the 4 h one is due.
NOW = INOCULATED_AT + timedelta(hours=4, minutes=5)
BATCH = 7
SUPERVISOR, SUPERVISOR_PIN = "sam", "4321"
OPERATOR, OPERATOR_PIN = "ana", "1234"


def running_notebook(url: str, now: datetime = NOW) -> NotebookService:
    """A notebook at ``url`` (migrated) with a supervisor, an operator and batch 7 running."""
    notebook = NotebookService(make_engine(url), clock=lambda: now)
    notebook.operators.create_operator("setup", SUPERVISOR, OperatorRole.SUPERVISOR, SUPERVISOR_PIN)
    notebook.operators.create_operator(SUPERVISOR, OPERATOR, OperatorRole.OPERATOR, OPERATOR_PIN)
    notebook.batches.create_batch(OPERATOR, BATCH, "B", strain="X-33", vessel="V1", reactor_id="R1")
    # No calibrations or inoculum in these tests: the supervisor's override starts the batch.
    notebook.batches.start_batch(
        SUPERVISOR,
        BATCH,
        inoculated_at=INOCULATED_AT,
        override_reason="screen tests: calibrations not part of this test",
    )
    return notebook


class ScreenHarness(LiveApp[None]):
    """Pushes one screen at start, with ``snapshot`` as the live state if given; ``messages``
    keeps what the screen posted upwards (subclasses collect them), ``bells`` counts the bell."""

    def __init__(
        self, make_screen: Callable[[], Screen], *, snapshot: LiveSnapshot | None = None
    ) -> None:
        super().__init__()
        self._make_screen = make_screen
        self._first_snapshot = snapshot
        self.messages: list[object] = []
        self.bells = 0

    def on_mount(self) -> None:
        self.snapshot = self._first_snapshot
        self.push_screen(self._make_screen())

    def bell(self) -> None:
        self.bells += 1
        super().bell()


# ---- Pilot helpers of the screen tests --------------------------------------------------------


async def settle(pilot: Pilot) -> None:
    """Let the screen's workers finish and the results be drawn."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def type_into(pilot: Pilot, field_id: str, text: str) -> None:
    """Clear an input and type ``text`` key by key."""
    field = pilot.app.screen.query_one(f"#{field_id}")
    field.focus()
    if isinstance(field, TextArea):  # a free-text field of several lines
        field.load_text("")
    else:
        assert isinstance(field, Input)
        field.value = ""
    await pilot.press(*text)


async def enter_text(pilot: Pilot, field_id: str, text: str) -> None:
    """Like ``type_into``, but longer values are pasted (typing them costs seconds)."""
    field = pilot.app.screen.query_one(f"#{field_id}", Input)
    field.focus()
    field.value = ""
    if len(text) <= 4:
        await pilot.press(*text)
    else:
        field.insert_text_at_cursor(text)


def field(pilot: Pilot, field_id: str) -> LabelledField:
    return pilot.app.screen.query_one(f"#{field_id}-field", LabelledField)


def text_of(pilot: Pilot, selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).content)
