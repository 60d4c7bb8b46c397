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
    from bptwin.tui.runtime.station import Station
    from bptwin.tui.runtime.viewer import ViewerStation
    from bptwin.tui.settings import Settings
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


# Sources a browser session may run in its own process: they acquire nothing real.
IN_PROCESS_SOURCES = frozenset({"simulated", "replay", "none"})


def web_station_for(settings: Settings) -> Station | ViewerStation:
    """A browser session's station: a viewer of the running acquisition, never a real one.

    Closing a browser tab ends its process; an acquisition of real instruments started there
    would stop with it. So a real source is only watched (``bptwin serve`` runs it); a simulated
    or replayed batch, which belongs to the session, may run in the session.
    """
    from bptwin.tui.runtime.viewer import ViewerStation, station_for
    from bptwin.tui.settings import SettingsError

    station = station_for(settings)
    if isinstance(station, ViewerStation) or settings.acquisition.source in IN_PROCESS_SOURCES:
        return station
    raise SettingsError(
        f"acquisition.source = {settings.acquisition.source!r}: a browser session does not "
        "acquire, and no acquisition is running to watch; start 'bptwin serve' on the station"
    )
