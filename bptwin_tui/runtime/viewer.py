"""A viewer of a running acquisition: the TUI attaches to ``bptwin serve`` instead of competing.

When another process holds a reactor's acquisition lock (``acquisition_lock.py``),
``bptwin run`` does not start a second acquisition: :func:`station_for` hands the App a
:class:`ViewerStation`, which has the Station's face (``start``, ``stop``, ``snapshot``,
``warnings``, ``control``, ``alarm_actions``, ``history``, ``notebook``) but acquires
nothing. It subscribes to the acquisition's readings, predictions, alarm transitions and
status on the bus, starts from the alarm history in the notebook, and writes notebook
entries like any station. Its alarm actions and a supervisor's confirmation of closed-loop
control are signed commands that the engine carries out (``runtime/viewer_commands.py``).
Closing it changes nothing for the acquisition.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from bptwin.database.bus import topics
from bptwin.database.reading import Reading, ReadingError, decode_json, parse_timestamp
from bptwin.tui.runtime.acquisition_lock import STATE_RUNNING, AcquisitionOwner, owner_from_payload
from bptwin.tui.runtime.viewer_commands import CommandSender, ViewerAlarms, ViewerControl
from bptwin.tui.settings import Settings, SettingsError
from bptwin.twin.alarms import AlarmBoard, AlarmPayloadError, AlarmTransition, alarms_pattern
from bptwin.twin.history import History
from bptwin.twin.live import LatestValues, LinkState, LiveSnapshot

if TYPE_CHECKING:
    from bptwin.database.bus import Bus, Subscription
    from bptwin.eln.services import NotebookService
    from bptwin.tui.runtime.station import Station
    from bptwin.twin.predictor import Prediction

log = logging.getLogger(__name__)

VIEWER_SOURCE = "viewer"


def station_for(settings: Settings) -> Station | ViewerStation:
    """The acquisition, or a viewer of it when another process already runs a reactor.

    Meant as the App's ``station_factory`` (it runs on the App's station worker thread).
    """
    from bptwin.tui.runtime.acquisition_lock import acquisition_owner
    from bptwin.tui.runtime.station import Station

    for reactor in settings.station.reactors:
        try:
            owner = acquisition_owner(settings, reactor)
        except SettingsError:
            owner = None  # the broker is away: Station.start names the setting
        if owner is not None:
            return ViewerStation(settings, owner)
    return Station(settings)


class ViewerStation:
    """Live view of an acquisition that runs in another process (see the module docstring)."""

    def __init__(self, settings: Settings, owner: AcquisitionOwner) -> None:
        self.settings = settings
        self.owner = owner
        self.latest = LatestValues()
        self.history = History(settings.station.reactors)
        self.warnings: list[str] = []
        self.bus: Bus | None = None
        self.notebook: NotebookService | None = None
        self.board = AlarmBoard()
        self.rejected = 0  # messages from the bus that could not be read
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self.backfill: threading.Thread | None = None
        # The last claim of each reactor's acquisition: where alarm commands go, and whether
        # that engine is there to answer.
        self.engines: dict[str, AcquisitionOwner] = {owner.reactor: owner}
        self.commands = CommandSender(
            bus=lambda: self.bus,
            prefix=settings.bus.prefix,
            engine=self.engines.get,
            on_rejected=self._reject,
            timeout_s=settings.commands.timeout_s,
            broker=f"{settings.bus.host}:{settings.bus.port}",
        )
        self.actions = ViewerAlarms(self.commands, self.board.active_alarms)
        # A supervisor's confirmation of closed-loop control, taken by the engine.
        self.control = ViewerControl(
            self.commands,
            lambda: self.notebook,
            minutes=settings.control.confirmation_minutes,
        )
        self.latest.set_problem(VIEWER_SOURCE, self.banner)
        # The App reloads a batch's samples into the history after an entry here: tell the
        # engine, which adapts its nowcast to them (runtime/sample_feed.py).
        self._samples_told: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
        self.history.add_sample_listener(self._samples_changed)

    @property
    def banner(self) -> str:
        """What the screen says about this window: whose acquisition it shows."""
        return f"viewer of {self.owner.describe()}: acquisition runs there"

    @property
    def alarm_actions(self) -> ViewerAlarms:
        """Acknowledge, shelve, unshelve: signed commands the acquisition's engine carries out."""
        return self.actions

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        from bptwin.tui.runtime.station import build_bus, start_bus

        self._load_command_key()
        self.notebook = self._open_notebook()
        self._restore_alarms()
        self._backfill_history()
        if self.settings.bus.backend == "local":
            self.warnings.append(
                "bus.backend = 'local': a viewer sees no live data of another process; "
                "configure MQTT (docs/operations.md) to watch the running acquisition"
            )
        prefix = self.settings.bus.prefix
        self.bus = build_bus(self.settings)  # no outbox: its commands go now or are refused
        subscribe = self.bus.subscribe
        self._subscriptions += [
            self.bus.subscribe_readings(self._on_reading, prefix=prefix),
            subscribe(f"{prefix}/{topics.CONTRACT_VERSION}/+/predictions/+", self._on_prediction),
            subscribe(alarms_pattern(prefix=prefix), self._on_alarm),
            subscribe(f"{prefix}/{topics.CONTRACT_VERSION}/+/status/acquisition", self._on_status),
            subscribe(topics.command_results_pattern("+", prefix), self.commands.on_result, qos=1),
        ]
        start_bus(self.settings, self.bus)

    def stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        if self.bus is not None:
            self.bus.stop()
        if self.notebook is not None:
            self.notebook.engine.dispose()

    def snapshot(self) -> LiveSnapshot:
        if self.bus is not None:
            from bptwin.tui.runtime.health import bus_link

            self.latest.set_link(bus_link(self.settings, self.bus))
            refused = self.bus.stats.malformed + self.rejected
            self.latest.set_problem("input", f"rejected input: {refused}" if refused else None)
        return self.latest.snapshot()

    # -- start-up state from the stores ----------------------------------------------------------

    def _load_command_key(self) -> None:
        """The operators' command key; without it the viewer shows alarms but cannot act."""
        from bptwin.tui.runtime.wiring import load_command_key
        from bptwin.twin.setpoints import ControlKeyError

        try:
            self.commands.key = load_command_key(self.settings)
        except ControlKeyError as exc:
            self.commands.key_problem = f": {exc}"
            self.warnings.append(f"{exc}; alarm actions from this viewer are refused")

    def _open_notebook(self) -> NotebookService | None:
        from bptwin.database.relational import DatabaseUnavailableError
        from bptwin.eln.services import NotebookService

        try:
            return NotebookService.from_url(self.settings.notebook_url())
        except DatabaseUnavailableError as exc:
            self.warnings.append(f"notebook.url: {exc}; no alarm history, no notebook entries")
            self.latest.set_link(LinkState("notebook", False, 0, str(exc)))
            return None

    def _backfill_history(self) -> None:
        """The running batches' trends so far, read from the store beside the live view."""
        notebook = self.notebook
        if notebook is None:
            return
        from bptwin.tui.export import reading_store
        from bptwin.tui.runtime.trend_backfill import (
            backfill_in_background,
            backfill_running_batches,
        )

        settings, until = self.settings, time.time()

        def work() -> None:
            with reading_store(settings, None) as store:
                backfill_running_batches(
                    self.history, store, notebook, settings.station.reactors, now=until
                )

        self.backfill = backfill_in_background(work)

    def _restore_alarms(self) -> None:
        """The alarms as the notebook has them, before the first transition from the bus."""
        if self.notebook is None:
            return
        from bptwin.twin.alarms import transitions_from_events

        try:
            events = self.notebook.alarms.list_alarm_events()
        except Exception as exc:  # the live view works without the history
            self.warnings.append(f"alarm history not read from the notebook: {exc}")
            return
        for transition in transitions_from_events(events):
            self.board.apply(transition)
        self._publish_alarms()

    # -- bus handlers (the bus's dispatcher thread) ----------------------------------------------

    def _on_reading(self, reading: Reading) -> None:
        self.latest.add(reading)
        self.history.add_reading(reading)

    def _on_prediction(self, topic: str, payload: bytes) -> None:
        try:
            prediction = decode_prediction(topic, payload)
        except (ValueError, TypeError, ReadingError) as exc:
            self._reject(topic, exc)
            return
        self.latest.set_prediction(prediction)
        self.history.add_prediction(prediction)
        if prediction.model_version:
            self.latest.model_version = prediction.model_version

    def _on_alarm(self, topic: str, payload: bytes) -> None:
        try:
            transition = AlarmTransition.from_payload(payload)
        except AlarmPayloadError as exc:
            self._reject(topic, exc)
            return
        if self.board.apply(transition) is not None:
            self._publish_alarms()

    def _on_status(self, topic: str, payload: bytes) -> None:
        reactor = topic.split("/")[2]
        owner = owner_from_payload(reactor, payload) if payload else None
        if owner is None:
            return
        self.engines[reactor] = owner
        if owner.state == STATE_RUNNING:
            self.owner = owner
            self.latest.set_problem(VIEWER_SOURCE, self.banner)
        else:
            self.latest.set_problem(
                VIEWER_SOURCE,
                f"viewer: the acquisition on {owner.describe()} is {owner.state}; "
                "restart 'bptwin run' to acquire here",
            )

    def _samples_changed(self, reactor: str, times: list[float], od600: list[float]) -> None:
        """Say on the bus that ``reactor``'s samples changed (only when they did): the engine
        re-reads them from the notebook. Without the broker the engine's poll finds them."""
        from bptwin.tui.runtime.sample_feed import samples_hint, samples_topic

        samples = (tuple(times), tuple(od600))
        bus = self.bus
        if bus is None or self._samples_told.get(reactor) == samples:
            return
        try:
            bus.publish(samples_topic(reactor, self.settings.bus.prefix), samples_hint(len(times)))
        except Exception as exc:  # no outbox here: the engine's poll reads them later
            log.warning("viewer: samples of %s not announced to the engine: %s", reactor, exc)
            return
        self._samples_told[reactor] = samples

    def _publish_alarms(self) -> None:
        self.latest.set_alarms(self.board.active_alarms(), self.board.counts())

    def _reject(self, topic: str, error: Exception) -> None:
        with self._lock:
            self.rejected += 1
        log.warning("viewer: unreadable message on %s rejected: %s", topic[:200], error)


def decode_prediction(topic: str, payload: bytes) -> Prediction:
    """A Prediction from the payload of twin.serving.prediction_payload (forecast left out;
    adaptation, drift and top contributions kept for the dashboard's model line)."""
    from bptwin.twin.predictor import Prediction

    data: Any = decode_json(payload)
    if not isinstance(data, dict):
        raise ValueError(f"prediction payload must be a JSON object, got {type(data).__name__}")
    parts = topic.split("/")
    if len(parts) < 5 or parts[3] != "predictions":
        raise ValueError(f"not a prediction topic: {topic[:200]!r}")

    def number(key: str) -> float:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"prediction field {key!r} must be a number, got {value!r:.40}")
        if not math.isfinite(value):
            raise ValueError(f"prediction field {key!r} must be finite")
        return float(value)

    version = data.get("model_version", "")
    used = data.get("samples_used", 0)
    drift = data.get("drift", "")
    model_od600 = data.get("model_od600")
    return Prediction(
        timestamp=parse_timestamp(data.get("ts")),
        od600=number("value"),
        lower=number("lower"),
        upper=number("upper"),
        model_version=version if isinstance(version, str) else "",
        reactor=parts[2],
        window_index=index if isinstance(index := data.get("window_index"), int) else -1,
        fallback=bool(data.get("fallback", False)),
        model_od600=number("model_od600") if model_od600 is not None else math.nan,
        samples_used=used if isinstance(used, int) and not isinstance(used, bool) else 0,
        attributions=_attributions(data.get("top_contributions")),
        drift=drift[:MAX_DRIFT_TEXT] if isinstance(drift, str) else "",
    )


MAX_DRIFT_TEXT = 300  # a reason is a sentence; more is cut, never shown whole
MAX_FEATURE_NAME = 64


def _attributions(entries: object) -> tuple[tuple[str, float], ...]:
    """The top contributions of a prediction payload; malformed entries are left out."""
    if not isinstance(entries, list):
        return ()
    kept = []
    for entry in entries[:3]:
        if not isinstance(entry, dict):
            continue
        name, value = entry.get("feature"), entry.get("ln_od600")
        if (
            isinstance(name, str)
            and 0 < len(name) <= MAX_FEATURE_NAME
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        ):
            kept.append((name, float(value)))
    return tuple(kept)
