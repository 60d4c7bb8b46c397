"""The messages that cross the App: immutable state from its workers, and what a screen tells
the App (a batch opened, a sample stored). The App handles each with ``@on``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # the App imports these messages before its first frame: only names here
    from bptwin.eln.records import BatchView, SampleView
    from bptwin.twin.live import LiveSnapshot


class LiveUpdate(Message):
    """A new snapshot of the latest readings, from the station's worker to the App (which sets
    its ``snapshot`` reactive); newer ones replace older ones in the queue."""

    bubble = False

    def __init__(self, snapshot: LiveSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LiveUpdate)


class StationStatus(Message):
    """The acquisition came up, went down or failed; ``problem`` says why in plain words."""

    def __init__(self, running: bool, problem: str = "") -> None:
        super().__init__()
        self.running = running
        self.problem = problem


class BatchSelected(Message):
    """A batch was created, opened or started on a screen: the App makes it the reactor's."""

    def __init__(self, batch: BatchView, reactor: str) -> None:
        super().__init__()
        self.batch = batch
        self.reactor = reactor


class SampleSaved(Message):
    """An offline sample was stored: the App puts it on the OD600 plot and hands it to the
    alarm engine's model-versus-sample check."""

    def __init__(self, sample: SampleView, reactor: str) -> None:
        super().__init__()
        self.sample = sample
        self.reactor = reactor
