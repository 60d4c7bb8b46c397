"""The alarm screen: active, unacknowledged and shelved alarms by priority and time; acknowledge,
shelve, unshelve, history (the one-line AlarmBanner any screen can mount is screens.alarm_banner's).

Alarm actions go through :class:`AlarmActions` (the station implements it on its alarm engine;
twin.alarms.AlarmEngine fits as it is). Acknowledging offers a deviation prefilled with the
alarm, its time span and the values of the channels involved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Static

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.eln import deviation_guide
from bptwin.eln.notebook import Notebook
from bptwin.eln.records import AlarmEventView
from bptwin.screens.alarm_banner import AlarmBanner, hms
from bptwin.screens.deviations import FORM_CSS, DeviationFormScreen
from bptwin.screens.entry_widgets import EntryForm, LabelledField
from bptwin.screens.live import current_snapshot, follow_snapshots
from bptwin.screens.notebook_screen import NotebookScreen
from bptwin.screens.safe_text import escape
from bptwin.twin.alarm_rules import PRIORITY_RANK, Priority
from bptwin.twin.alarms import AlarmState, AlarmView
from bptwin.twin.live import LiveSnapshot

DEFAULT_SHELVE_MIN = 60.0
OUTCOME_S = 15.0  # how long an action's outcome stays under the alarm list
MAX_SHELVE_MIN = 24 * 60.0

STATE_LABELS = {
    AlarmState.ACTIVE_UNACK: "ACTIVE UNACK",
    AlarmState.ACTIVE_ACK: "active ack",
    AlarmState.RETURNED_UNACK: "RETURNED UNACK",
    AlarmState.SHELVED: "shelved",
    AlarmState.OUT_OF_SERVICE: "out of service",
    AlarmState.NORMAL: "normal",
}


class AlarmActions(Protocol):
    """What the alarm screen needs of the alarm engine (the station implements it; a viewer
    implements it with commands to the engine, which may take seconds to be answered).

    Actions raise ValueError (twin.alarms.AlarmActionError) with a plain message when they
    cannot apply; their return value is not used. The screen calls them off the UI thread.
    """

    def acknowledge(self, alarm_id: str, actor: str) -> object: ...

    def shelve(self, alarm_id: str, actor: str, reason: str, until: float) -> object: ...

    def unshelve(self, alarm_id: str, actor: str) -> object: ...

    def active_alarms(self) -> Sequence[AlarmView]:
        """Every alarm not in normal, most urgent and newest first."""
        ...


def shown_alarms(alarms: Sequence[AlarmView]) -> list[AlarmView]:
    """Active, unacknowledged and shelved alarms: by priority, then newest first."""
    views = [view for view in alarms if view.state is not AlarmState.NORMAL]
    return sorted(views, key=lambda v: (PRIORITY_RANK[v.priority], -(v.raised_at or v.changed_at)))


def deviation_draft(
    alarm: AlarmView, snapshot: LiveSnapshot | None, now: float
) -> deviation_guide.DeviationDraft:
    """A deviation prefilled from an alarm: its text, time span and the channels involved."""
    start = alarm.raised_at or alarm.changed_at
    lines = [f"Alarm {alarm.alarm_id} ({alarm.priority.value}): {alarm.message}"]
    values = []
    if snapshot is not None:
        for name in deviation_guide.related_channels(alarm.channel):
            reading = snapshot.latest.get((alarm.reactor, name))
            if reading is not None:
                unit = CHANNELS_BY_NAME[name].unit if name in CHANNELS_BY_NAME else reading.unit
                values.append(f"{name} {reading.value:.4g} {unit}".rstrip())
    if values:
        lines.append(f"Channels at {hms(snapshot.taken_at if snapshot else now)} UTC: ")
        lines[-1] += ", ".join(values)
    return deviation_guide.DeviationDraft(
        level=deviation_guide.suggested_level(alarm.priority.value),
        category="alarm",
        title=alarm.message[:200] or alarm.alarm_id,
        description=" ".join(lines),
        started_at=datetime.fromtimestamp(start, tz=timezone.utc),
        ended_at=None
        if alarm.condition_active
        else datetime.fromtimestamp(alarm.changed_at, tz=timezone.utc),
    )


class ShelveScreen(ModalScreen[tuple[str, float] | None]):
    """Reason and duration (minutes) for shelving one alarm."""

    DEFAULT_CSS = (
        FORM_CSS
        + """
    ShelveScreen { align: center middle; }
    ShelveScreen > Vertical { width: 70; height: auto; border: round $warning;
        background: $surface; padding: 0 1; }
    """
    )
    BINDINGS = [
        Binding("ctrl+s", "save", "Shelve"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, alarm: AlarmView) -> None:
        super().__init__()
        self.alarm = alarm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(escape(f"Shelve {self.alarm.alarm_id}"), classes="entry-title")
            yield LabelledField("Reason", "shelve-reason", width=40)
            yield LabelledField(
                "Duration min",
                "shelve-minutes",
                value=f"{DEFAULT_SHELVE_MIN:g}",
                hint=f"at most {MAX_SHELVE_MIN:g}",
                width=8,
            )
            yield Static("ctrl+s shelve · esc cancel", classes="entry-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#shelve-reason", Input).focus()

    def action_save(self) -> None:
        reason_field = self.query_one("#shelve-reason-field", LabelledField)
        minutes_field = self.query_one("#shelve-minutes-field", LabelledField)
        reason_field.clear_error()
        minutes_field.clear_error()
        reason = reason_field.value.strip()
        if not reason:
            reason_field.show_error("give the reason for shelving")
            return
        try:
            minutes = float(minutes_field.value.strip().replace(",", "."))
        except ValueError:
            minutes_field.show_error("duration must be a number of minutes")
            return
        if not 0 < minutes <= MAX_SHELVE_MIN:
            minutes_field.show_error(f"duration must be above 0 and at most {MAX_SHELVE_MIN:g}")
            return
        self.dismiss((reason, minutes))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDeviationScreen(ModalScreen[bool]):
    """After an acknowledgement: open a deviation for this alarm? (y / n)."""

    DEFAULT_CSS = """
    ConfirmDeviationScreen { align: center middle; }
    ConfirmDeviationScreen > Static { width: 60; height: auto; border: round $primary;
        background: $surface; padding: 0 1; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes, log a deviation"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, alarm: AlarmView) -> None:
        super().__init__()
        self.alarm = alarm

    def compose(self) -> ComposeResult:
        yield Static(
            escape(
                f"Acknowledged {self.alarm.alarm_id}.\n"
                "Open a deviation prefilled with this alarm? [y]es / [n]o"
            )
        )
        yield Footer()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AlarmHistoryScreen(NotebookScreen[None]):
    """Alarm transitions stored in the notebook, newest first."""

    MESSAGE_SELECTOR = "#alarm-history-status"
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(
        self,
        notebook: Notebook,
        operator: str,
        *,
        reactor: str | None,
        batch_number: int | None,
    ) -> None:
        """``reactor`` None: the transitions of every reactor."""
        super().__init__(notebook, operator, batch_number=batch_number)
        self.only_reactor = reactor

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="alarm-history", cursor_type="row", zebra_stripes=True)
        yield Static("", id="alarm-history-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Alarm history"
        table = self.query_one(DataTable)
        for label, key, width in (
            ("Time UTC", "time", 14),
            ("Alarm", "alarm", 20),
            ("Prio", "priority", 8),
            ("State", "state", 15),
            ("By", "actor", 8),
            ("Message", "message", 40),
        ):
            table.add_column(label, key=key, width=width)
        table.focus()

        def read() -> list[AlarmEventView]:
            return self.notebook.list_alarm_events(
                reactor=self.only_reactor, batch_number=self.batch_number
            )

        self.load(read, self._show_events, group="alarm-history")

    def _show_events(self, events: list[AlarmEventView]) -> None:
        table = self.query_one(DataTable)
        for event in events:
            table.add_row(
                event.occurred_at.strftime("%m-%d %H:%M:%S"),
                escape(f"{event.reactor}/{event.rule}"),
                escape(event.priority),
                escape(event.state),
                escape(event.actor or "system"),
                escape(event.message),
            )
        self._say(f"{len(events)} transitions" if events else "No alarm transitions stored yet.")


class AlarmScreen(EntryForm[None]):
    """Active, unacknowledged and shelved alarms by priority and time, with their actions."""

    DEFAULT_CSS = """
    AlarmScreen #alarms { height: 1fr; }
    AlarmScreen #alarm-detail { height: auto; max-height: 5; padding: 0 1;
        border-top: solid $primary; }
    AlarmScreen #alarm-detail.-error { color: $error; }
    """
    MESSAGE_SELECTOR = "#alarm-detail"
    BINDINGS = [
        # The app's letters (d dashboard, s samples, a alarms...) work here too: the screen's
        # own actions take keys the app does not use.
        Binding("enter", "acknowledge", "Ack", priority=True),
        Binding("ctrl+s", "shelve", "Shelve"),
        Binding("u", "unshelve", "Unshelve"),
        Binding("ctrl+d", "deviation", "Deviation"),
        Binding("h", "history", "History"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self,
        actions: AlarmActions,
        operator: str,
        *,
        notebook: Notebook | None = None,
        batch_number: int | None = None,
        reactor: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``reactor`` None shows every reactor; ``clock`` gives the shelve start (Unix s)."""
        super().__init__()
        self.actions = actions
        self.operator = operator
        self.notebook = notebook
        self.batch_number = batch_number
        self.reactor = reactor
        self.snapshot: LiveSnapshot | None = None
        self.clock = clock
        self.alarms: list[AlarmView] = []
        # The last action: (alarm id, what became of it, an error?, when: monotonic s).
        self._outcome: tuple[str, str, bool, float] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield AlarmBanner()
        yield DataTable(id="alarms", cursor_type="row", zebra_stripes=True)
        yield Static("", id="alarm-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Alarms"
        self.sub_title = f"{self.reactor or 'all reactors'} · {self.operator}"
        table = self.query_one(DataTable)
        for label, key, width in (
            ("Prio", "priority", 8),
            ("Raised", "raised", 8),
            ("State", "state", 14),
            ("Alarm", "alarm", 16),
            ("Value", "value", 7),
            ("Message", "message", 60),
        ):
            table.add_column(label, key=key, width=width)
        table.focus()
        self.refresh_alarms()  # from the engine itself; later ones come with the snapshots
        self.snapshot = current_snapshot(self)
        follow_snapshots(self, self._snapshot_changed, at_once=False)

    # ---- data -----------------------------------------------------------------------------

    def _snapshot_changed(self, snapshot: LiveSnapshot) -> None:
        self.snapshot = snapshot
        self.show_alarms(snapshot.alarms)

    def refresh_alarms(self) -> None:
        """Re-read the alarms from the actions object (after an action, or on demand)."""
        self.show_alarms(self.actions.active_alarms())

    def show_alarms(self, alarms: Sequence[AlarmView]) -> None:
        if self.reactor is not None:
            alarms = [view for view in alarms if view.reactor == self.reactor]
        self.query_one(AlarmBanner).show_alarms(alarms)
        table = self.query_one(DataTable)
        selected = self.selected()
        self.alarms = shown_alarms(alarms)
        table.clear()
        for view in self.alarms:
            priority = view.priority.value
            if view.priority is Priority.CRITICAL:
                priority = f"[b red]{priority}[/]"
            elif view.priority is Priority.WARNING:
                priority = f"[yellow]{priority}[/]"
            state = STATE_LABELS.get(view.state, view.state.value)
            if view.unacknowledged:
                state = f"[b]{state}[/]"
            table.add_row(
                priority,
                hms(view.raised_at or view.changed_at),
                state,
                escape(f"{view.reactor}/{view.rule}/{view.condition}"),
                "" if view.value is None else f"{view.value:.4g}",
                escape(view.message),
                key=view.alarm_id,
            )
        if selected is not None and selected.alarm_id in table.rows:
            table.move_cursor(row=table.get_row_index(selected.alarm_id))
        self._show_detail()

    def selected(self) -> AlarmView | None:
        if not self.alarms:
            return None
        row = self.query_one(DataTable).cursor_row
        return self.alarms[min(max(row, 0), len(self.alarms) - 1)]

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        view = self.selected()
        outcome = self._outcome
        if outcome is not None and time.monotonic() - outcome[3] > OUTCOME_S:
            outcome = self._outcome = None
        if outcome is not None and (view is None or view.alarm_id == outcome[0]):
            # The last action's outcome stays beside the alarm while the list refreshes.
            detail = "" if view is None else f"\n{self._detail(view)}"
            self._say(outcome[1] + detail, error=outcome[2])
            return
        if view is None:
            self._say("No active, unacknowledged or shelved alarms.")
            return
        self._say(self._detail(view))

    def _detail(self, view: AlarmView) -> str:
        text = f"{view.alarm_id} · {view.priority.value} · {STATE_LABELS[view.state]}"
        if view.acknowledged_by:
            text += f" · acknowledged by {view.acknowledged_by} at {hms(view.acknowledged_at)}"
        if view.state is AlarmState.SHELVED:
            text += (
                f" · shelved by {view.shelved_by} until {hms(view.shelved_until)}: "
                f"{view.shelve_reason}"
            )
        return text

    def _tell(self, alarm_id: str, text: str, *, error: bool = False) -> None:
        """The outcome of an action on ``alarm_id``, kept in view for ``OUTCOME_S``."""
        self._outcome = (alarm_id, text, error, time.monotonic())
        self._show_detail()

    def _run(
        self,
        alarm_id: str,
        action: Callable[[], Any],
        done: str,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Carry out an alarm action off the UI thread, then say how it went.

        In a viewer the action is a command to the engine and waits for its answer; the screen
        stays live meanwhile. ``then`` runs after a success.
        """
        self._tell(alarm_id, f"{done.rstrip('.')}: sending…")

        def work() -> None:
            try:
                action()
            except (ValueError, PermissionError) as error:
                problem: str | None = str(error) or type(error).__name__
            except Exception as error:  # the screen must survive a surprise and say it
                problem = f"{type(error).__name__}: {error}"
            else:
                problem = None
            self.app.call_from_thread(self._finish, alarm_id, done, problem, then)

        self.run_worker(work, thread=True, group="alarm-action", exit_on_error=False)

    def _finish(
        self, alarm_id: str, done: str, problem: str | None, then: Callable[[], None] | None
    ) -> None:
        if not self.is_attached:
            return
        if problem is not None:
            self._tell(alarm_id, problem, error=True)
            return
        self._outcome = (alarm_id, done, False, time.monotonic())
        self.refresh_alarms()
        if then is not None:
            then()

    # ---- actions --------------------------------------------------------------------------

    def action_acknowledge(self) -> None:
        view = self.selected()
        if view is None:
            return
        if not view.unacknowledged:
            self._tell(view.alarm_id, f"{view.alarm_id} needs no acknowledgement.", error=True)
            return

        def offer_deviation() -> None:
            if self.notebook is None or self.batch_number is None:
                return

            def answered(yes: bool | None) -> None:
                if yes:
                    self.open_deviation(view)

            self.app.push_screen(ConfirmDeviationScreen(view), answered)

        self._run(
            view.alarm_id,
            lambda: self.actions.acknowledge(view.alarm_id, self.operator),
            f"Acknowledged {view.alarm_id}.",
            offer_deviation,
        )

    def action_shelve(self) -> None:
        view = self.selected()
        if view is None:
            return

        def shelve(result: tuple[str, float] | None) -> None:
            if result is None:
                return
            reason, minutes = result
            until = self.clock() + minutes * 60.0
            self._run(
                view.alarm_id,
                lambda: self.actions.shelve(view.alarm_id, self.operator, reason, until),
                f"Shelved {view.alarm_id} for {minutes:g} min.",
            )

        self.app.push_screen(ShelveScreen(view), shelve)

    def action_unshelve(self) -> None:
        view = self.selected()
        if view is None:
            return
        self._run(
            view.alarm_id,
            lambda: self.actions.unshelve(view.alarm_id, self.operator),
            f"Unshelved {view.alarm_id}.",
        )

    def action_deviation(self) -> None:
        view = self.selected()
        if view is not None:
            self.open_deviation(view)

    def open_deviation(self, view: AlarmView) -> None:
        if self.notebook is None or self.batch_number is None:
            self._say("No batch is open: a deviation needs a batch.", error=True)
            return
        draft = deviation_draft(view, self.snapshot, self.clock())

        def logged(result: object) -> None:
            if result is not None:
                # An outcome, like an acknowledgement's: the list's next refresh keeps it.
                self._tell(
                    view.alarm_id,
                    f"Deviation {getattr(result, 'id', '')} logged for {view.alarm_id}.",
                )

        self.app.push_screen(
            DeviationFormScreen(self.notebook, self.batch_number, self.operator, draft), logged
        )

    def action_history(self) -> None:
        if self.notebook is None:
            self._say("No notebook: the history is stored there.", error=True)
            return
        self.app.push_screen(
            AlarmHistoryScreen(
                self.notebook,
                self.operator,
                reactor=self.reactor,
                batch_number=self.batch_number,
            )
        )
