"""Messages that carry immutable state from the App's workers to the screens."""

from __future__ import annotations

from textual.message import Message

from bptwin.twin.live import LiveSnapshot


class LiveUpdate(Message):
    """A new snapshot of the latest readings; newer ones replace older ones in the queue."""

    # The App forwards snapshots to the screen on top; bubbling back up would loop.
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
