"""A browser session's alarm actions: refused unless its WriteGuard granted writing.

The notebook side is eln.read_only_notebook; this wraps the station's alarm actions (the alarm
screen's ``AlarmActions``) the same way, so a viewer in a browser can see every alarm but
acknowledge, shelve or unshelve none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bptwin.eln.read_only_notebook import WriteGuard
    from bptwin.twin.alarms import AlarmView


class GuardedAlarms:
    """Alarm actions that pass only for the operator the guard granted writing."""

    def __init__(self, inner: Any, guard: WriteGuard) -> None:
        self.inner = inner
        self.guard = guard

    def acknowledge(self, alarm_id: str, actor: str) -> object:
        self.guard.check(actor)
        return self.inner.acknowledge(alarm_id, actor)

    def shelve(self, alarm_id: str, actor: str, reason: str, until: float) -> object:
        self.guard.check(actor)
        return self.inner.shelve(alarm_id, actor, reason, until)

    def unshelve(self, alarm_id: str, actor: str) -> object:
        self.guard.check(actor)
        return self.inner.unshelve(alarm_id, actor)

    def active_alarms(self) -> Sequence[AlarmView]:
        return self.inner.active_alarms()

    def feed_sample(self, *args: Any) -> object:
        """An offline sample reaches the engine only from a session that may write."""
        if self.guard.read_only:
            return ()
        return self.inner.feed_sample(*args)
