"""The one-line AlarmBanner any screen can mount, and the rule it shows: the newest
unacknowledged critical alarm.

Light on purpose: the dashboard mounts it in its first frame, so the alarm engine's modules
(twin.alarms, twin.alarm_rules) are only named for the type checker here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from textual.widgets import Static

from bptwin.screens.safe_text import escape

if TYPE_CHECKING:
    from bptwin.twin.alarms import AlarmView

# Priority is a str enum (twin.alarm_rules.Priority): its members equal their values.
CRITICAL = "critical"


def hms(at: float | None) -> str:
    """Unix seconds as the UTC clock time, '—' for none."""
    if at is None:
        return "—"
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%H:%M:%S")


def newest_unacknowledged_critical(alarms: Sequence[AlarmView]) -> list[AlarmView]:
    """Unacknowledged critical alarms, newest first."""
    views = [v for v in alarms if v.priority == CRITICAL and v.unacknowledged]
    return sorted(views, key=lambda v: -(v.raised_at or v.changed_at))


class AlarmBanner(Static):
    """One line with the newest unacknowledged critical alarm; rings the bell when a new one
    arrives. Hidden while there is none. Yield it right after the Header (Header docks on top;
    two docked widgets would overlap) and feed it with :meth:`show_alarms`."""

    DEFAULT_CSS = """
    AlarmBanner { height: 1; padding: 0 1; background: $error; color: $text;
        text-style: bold; display: none; }
    AlarmBanner.-on { display: block; }
    """

    def __init__(self, *, id: str | None = "alarm-banner") -> None:
        super().__init__("", id=id)
        self._seen: frozenset[str] = frozenset()

    def show_alarms(self, alarms: Sequence[AlarmView]) -> None:
        critical = newest_unacknowledged_critical(alarms)
        ids = frozenset(view.alarm_id for view in critical)
        if ids - self._seen:
            self.app.bell()
        self._seen = ids
        self.set_class(bool(critical), "-on")
        if not critical:
            self.update("")
            return
        newest = critical[0]
        more = f" (+{len(critical) - 1} more)" if len(critical) > 1 else ""
        self.update(
            escape(f"CRITICAL {newest.reactor} {hms(newest.raised_at)} {newest.message}{more}")
        )
