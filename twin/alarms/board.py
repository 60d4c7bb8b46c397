"""The operator's picture of the alarms: views rebuilt from transitions alone.

The engine keeps one board of its own; a viewer (the TUI attached to ``bptwin serve``) keeps
one fed from the bus. Both list the alarms not in normal, most urgent first.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from bptwin.twin.alarm_rules import PRIORITY_RANK, Priority
from bptwin.twin.alarms.model import (
    AlarmCounts,
    AlarmState,
    AlarmTransition,
    AlarmView,
    identity_of,
)


def _sort_key(view: AlarmView) -> tuple[int, float]:
    # Most urgent first, newest first within a priority.
    return (PRIORITY_RANK[view.priority], -(view.raised_at or view.changed_at))


def _superseded(t: AlarmTransition, view: AlarmView) -> bool:
    """An older transition, or a redelivered one of the same instant (an event's raise and
    return share their time; a repeated raise must not undo the return)."""
    if t.at != view.changed_at:
        return t.at < view.changed_at
    return t.from_state is not view.state


class AlarmBoard:
    """Alarm views rebuilt from transitions: the engine's snapshot, or a viewer's from the bus."""

    def __init__(self, *, ignore_older: bool = True) -> None:
        # A viewer ignores transitions older than what it shows (bus redelivery); the engine's
        # own board takes every transition in the order made, whatever the clocks say.
        self._ignore_older = ignore_older
        self._views: dict[str, AlarmView] = {}
        self._lock = threading.Lock()

    def apply(self, transition: AlarmTransition) -> AlarmView | None:
        """Update the view of the transition's alarm (the new view, or None if ignored)."""
        t = transition
        with self._lock:
            old = self._views.get(t.alarm_id)
            if old is not None and self._ignore_older and _superseded(t, old):
                return None
            if old is None:
                old = AlarmView(
                    **identity_of(t),
                    state=t.from_state,
                    condition_active=False,
                    raised_at=None,
                    changed_at=t.at,
                    value=t.value,
                    message=t.message,
                )
            view = replace(
                old,
                priority=t.priority,
                state=t.to_state,
                condition_active=t.condition_active,
                changed_at=t.at,
                value=t.value if t.value is not None else old.value,
                message=t.message,
            )
            if t.to_state is AlarmState.ACTIVE_UNACK and not old.condition_active:
                view = replace(view, raised_at=t.at, acknowledged_by=None, acknowledged_at=None)
            if t.to_state is AlarmState.ACTIVE_ACK:
                view = replace(view, acknowledged_by=t.actor, acknowledged_at=t.at)
            if t.to_state is AlarmState.SHELVED:
                view = replace(
                    view, shelved_by=t.actor, shelve_reason=t.reason, shelved_until=t.shelved_until
                )
            elif old.state is AlarmState.SHELVED:
                view = replace(view, shelved_by=None, shelve_reason=None, shelved_until=None)
            self._views[t.alarm_id] = view
            return view

    def get(self, alarm_id: str) -> AlarmView | None:
        with self._lock:
            return self._views.get(alarm_id)

    def active_alarms(self) -> tuple[AlarmView, ...]:
        """Alarms not in normal (annunciated, shelved, out of service), by priority, time."""
        with self._lock:
            views = [v for v in self._views.values() if v.state is not AlarmState.NORMAL]
        return tuple(sorted(views, key=_sort_key))

    def counts(self) -> AlarmCounts:
        with self._lock:
            views = list(self._views.values())
        by_state = {state.value: 0 for state in AlarmState}
        by_priority = {priority.value: 0 for priority in Priority}
        for view in views:
            by_state[view.state.value] += 1
            if view.annunciated:
                by_priority[view.priority.value] += 1
        unacked = [v for v in views if v.unacknowledged]
        return AlarmCounts(
            by_state=by_state,
            by_priority=by_priority,
            unacknowledged=len(unacked),
            critical_unacknowledged=sum(v.priority is Priority.CRITICAL for v in unacked),
        )
