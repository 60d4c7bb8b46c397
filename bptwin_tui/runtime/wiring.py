"""Wiring: the parts of a station built from the settings, none of them started.

:func:`build_runtime` turns ``Settings`` into a :class:`Runtime` (bus, stores, notebook queue,
shadow, control, notifier, the reading intake and its drivers) or raises ``SettingsError``
naming the setting that cannot work. Building opens local files only (the stores' and queues'
files in the data folder); it connects to no server and acquires nothing, so every
configuration error surfaces here, before anything runs, and a server that is away can never
look like one. Starting is ``runtime/station.py``'s job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.database.reading import Reading
from bptwin.tui.runtime.control_loop import StationControl
from bptwin.tui.runtime.prometheus import StationMetrics
from bptwin.tui.runtime.stores import build_store
from bptwin.tui.settings import Settings, SettingsError, require_file
from bptwin.twin.history import History
from bptwin.twin.live import LatestValues

if TYPE_CHECKING:
    from bptwin.database.bus import Bus, Subscription
    from bptwin.database.recorder import Recorder
    from bptwin.database.timeseries import TimeSeriesStore
    from bptwin.drivers.base import Driver, DriverThread
    from bptwin.drivers.intake import ReadingIntake
    from bptwin.eln.services import NotebookService
    from bptwin.eln.write_queue import SpooledNotebook
    from bptwin.tui.runtime.notifications import Notifier
    from bptwin.tui.runtime.operator_commands import OperatorCommands
    from bptwin.tui.runtime.replay_session import ReplaySession
    from bptwin.tui.runtime.shadow_worker import ShadowWorker
    from bptwin.twin.predictor import InferenceWorker
    from bptwin.twin.setpoints import ControlKey
    from bptwin.twin.shadow import Shadow

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything one station runs; built by :func:`build_runtime`, started by the Station."""

    settings: Settings
    latest: LatestValues
    # Trends for a screen; None in a headless serve (viewers read the stores instead).
    history: History | None
    metrics: StationMetrics
    bus: Bus
    store: TimeSeriesStore
    recorder: Recorder
    notebook: SpooledNotebook
    control: StationControl
    shadow: Shadow
    shadow_worker: ShadowWorker
    notifier: Notifier | None
    # Where readings enter: sources, their drivers and admission (drivers/intake.py).
    intake: ReadingIntake
    drivers: list[Driver]
    # Dataset batches replayed by replay sources: samples into the notebook, their constants.
    replays: list[ReplaySession] = field(default_factory=list)
    inference: InferenceWorker | None = None
    driver_threads: list[DriverThread] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    backfill: threading.Thread | None = None
    # Alarm actions and control confirmations sent by viewers over the bus ([commands]
    # key_file); None without a key.
    commands: OperatorCommands | None = None


def build_runtime(
    settings: Settings,
    *,
    sink: Callable[[Reading], None],
    latest: LatestValues | None = None,
    history: History | None = None,
    metrics: StationMetrics | None = None,
    keep_trends: bool = True,
) -> Runtime:
    """Every part of the station, built and not started; ``sink`` takes the drivers' readings
    once admitted (drivers/intake.py).

    Raises SettingsError naming the setting that cannot work (alarm rules, driver settings,
    the store's configuration). Parts built before the error are closed again.
    """
    from bptwin.database.recorder import Recorder
    from bptwin.tui.runtime.replay_session import bind_drivers, replay_sessions
    from bptwin.tui.runtime.shadow_worker import ShadowWorker

    latest = latest or LatestValues()
    history = (history or History(settings.station.reactors)) if keep_trends else None
    metrics = metrics or StationMetrics()
    intake = build_intake(settings)
    replays = replay_sessions(
        intake.plan, operator=settings.station.operator, history=history, latest=latest
    )
    shadow = build_shadow(settings, replays)
    opened: list[Callable[[], None]] = []
    try:
        store = build_store(settings)
        opened.append(store.close)
        recorder = Recorder(store)
        opened.append(recorder.close)
        bus = build_bus(settings, outbox_path=settings.spool_dir() / "bus-outbox.sqlite")
        if (close_bus := getattr(bus, "close", None)) is not None:
            opened.append(close_bus)
        notebook = build_notebook(settings)
        opened.append(notebook.close)
        control = build_control(settings, bus, notebook.service)
        notifier = build_notifier(settings, bus, metrics)
        shadow_worker = ShadowWorker(
            shadow,
            latest=latest,
            history=history,
            recorder=recorder,
            bus=bus,
            prefix=settings.bus.prefix,
            notebook=notebook,
            control=control,
            notifier=notifier,
            metrics=metrics,
        )
        drivers = build_drivers(settings, intake, sink, bus, replays)
        bind_drivers(replays, drivers)
        commands = build_operator_commands(settings, bus, shadow_worker, notebook, control)
    except BaseException:
        for close in reversed(opened):
            close()
        raise
    return Runtime(
        settings=settings,
        latest=latest,
        history=history,
        metrics=metrics,
        bus=bus,
        store=store,
        recorder=recorder,
        notebook=notebook,
        control=control,
        shadow=shadow,
        shadow_worker=shadow_worker,
        notifier=notifier,
        intake=intake,
        drivers=drivers,
        replays=replays,
        commands=commands,
    )


def build_shadow(settings: Settings, replays: Sequence[ReplaySession] = ()) -> Shadow:
    """Features and the alarm engine for every reactor; a bad ``[alarms]`` table is named.

    The features take ``[process]`` and ``[volume]``; a replayed dataset batch's reactor takes
    the batch's own constants over them.
    """
    from bptwin.twin.alarm_rules import AlarmConfigError, rules_from_config
    from bptwin.twin.process_inputs import feature_config
    from bptwin.twin.shadow import Shadow

    try:
        rules = rules_from_config(settings.alarms)
    except AlarmConfigError as exc:
        raise SettingsError(str(exc)) from None
    constants = settings.process_constants()
    try:
        station_config = feature_config(constants)
    except ValueError as exc:
        raise SettingsError(f"process/volume: {exc}") from None
    configs = {session.reactor: session.feature_config(constants) for session in replays}
    return Shadow(
        settings.station.reactors,
        alarm_rules=rules,
        feature_config=lambda reactor: configs.get(reactor, station_config),
    )


def build_notebook(settings: Settings) -> SpooledNotebook:
    """The notebook with store-and-forward (eln.write_queue): alarm events, samples, notes.

    Connects lazily: a database that is away queues the writes instead of failing the start.
    """
    from bptwin.database.relational import make_engine
    from bptwin.eln.services import NotebookService
    from bptwin.eln.write_queue import SpooledNotebook

    # Not checked now: a database that is away must not stop the start (writes queue).
    engine = make_engine(settings.notebook_url(), check=False)
    return SpooledNotebook(NotebookService(engine), settings.spool_dir() / "notebook.sqlite")


def load_command_key(settings: Settings) -> ControlKey | None:
    """The operators' command key ([commands] key_file), None when not configured.

    Raises ControlKeyError naming ``commands.key_file`` when the file cannot be used.
    """
    from bptwin.twin.setpoints import ControlKey

    path = settings.commands.key_file
    return None if path is None else ControlKey.from_file(path, "commands.key_file", shared=True)


def build_operator_commands(
    settings: Settings,
    bus: Bus,
    shadow_worker: ShadowWorker,
    notebook: SpooledNotebook,
    control: StationControl,
) -> OperatorCommands | None:
    """The engine's service for viewers' alarm actions and control confirmations; None
    without a command key."""
    from bptwin.tui.runtime.alarm_actions import StationAlarms
    from bptwin.tui.runtime.operator_commands import OperatorCommands
    from bptwin.twin.setpoints import ControlKeyError

    try:
        key = load_command_key(settings)
    except ControlKeyError as exc:
        raise SettingsError(str(exc)) from None
    if key is None:
        return None
    return OperatorCommands(
        key,
        settings.station.reactors,
        bus=bus,
        prefix=settings.bus.prefix,
        actions=StationAlarms(shadow_worker),
        notebook=lambda: notebook.service,
        engine_now=shadow_worker.shadow.alarms.now,
        control=control,
        max_skew_s=settings.commands.max_skew_s,
    )


def build_notifier(settings: Settings, bus: Bus, metrics: StationMetrics) -> Notifier | None:
    """Critical alarms beyond the screen ([notify]: webhook, MQTT topic, mail), if set."""
    from bptwin.tui.settings_ops import notifier_from_settings

    def publish(topic: str, payload: bytes) -> None:
        bus.publish(topic, payload, qos=1)

    notifier = notifier_from_settings(
        settings.notify, publish=publish, station=settings.station.name
    )
    if notifier is None:
        return None
    metrics.add_gauge(
        "bptwin_notifications_accepted",
        "Alarm notifications queued for delivery since start",
        lambda: float(notifier.stats.accepted),
    )
    metrics.add_gauge(
        "bptwin_notifications_dropped",
        "Alarm notifications dropped because the queue was full",
        lambda: float(notifier.stats.dropped),
    )
    return notifier


def build_intake(settings: Settings) -> ReadingIntake:
    """The acquisition plan (one source or ``[[acquisition.sources]]``) with its admission.

    SettingsError names the source setting that cannot work (two owners of one channel, a
    source kind that needs the MQTT bus, both forms at once).
    """
    return settings.acquisition.intake(
        settings.station.reactors, bus_is_mqtt=settings.bus.backend == "mqtt"
    )


def build_drivers(
    settings: Settings,
    intake: ReadingIntake,
    sink: Callable[[Reading], None],
    bus: Bus,
    replays: Sequence[ReplaySession] = (),
) -> list[Driver]:
    """Every local source's drivers (not started); each reading is admitted, then ``sink``.

    A replay source of a dataset batch replays the recording its session loaded.
    """
    from bptwin.drivers.sources import DriverConfigError

    try:
        return intake.build_drivers(
            sink,
            bus=bus,
            bus_is_mqtt=settings.bus.backend == "mqtt",
            prefix=settings.bus.prefix,
            replays={session.source.name: session.loaded for session in replays},
        )
    except DriverConfigError as exc:
        raise SettingsError(str(exc)) from None


def build_control(settings: Settings, bus: Bus, notebook: NotebookService | None) -> StationControl:
    """Advice and (mode 1) signed setpoints; SettingsError names an unusable control key."""
    from bptwin.tui.runtime.control_loop import load_control_key
    from bptwin.twin.actuation import ControlKeyError, ControlMode
    from bptwin.twin.actuation import ControlSettings as ActuationSettings

    section = settings.control
    control_settings = ActuationSettings(
        mode=ControlMode(section.mode),
        enabled=section.enabled,
        confirmation_minutes=section.confirmation_minutes,
    )
    try:
        key = load_control_key(section.key_file, control_settings)
    except ControlKeyError as exc:
        raise SettingsError(str(exc)) from None
    return StationControl(
        settings.station.reactors,
        bus=bus,
        prefix=settings.bus.prefix,
        settings=control_settings,
        notebook=notebook,
        key=key,
    )


def build_bus(settings: Settings, *, outbox_path: Path | None = None) -> Bus:
    """The configured bus; MQTT with ``outbox_path`` stores and forwards its QoS 1 publishes."""
    section = settings.bus
    if section.backend == "local":
        from bptwin.database.bus import LocalBus

        return LocalBus()
    from bptwin.database.bus import MqttBus

    require_file("bus.ca_file", section.ca_file)
    try:
        return MqttBus(
            section.host,
            section.port,
            client_id=section.client_id or None,
            username=section.username or None,
            password=section.password.get_secret_value() if section.password else None,
            tls=section.tls,
            ca_file=str(section.ca_file) if section.ca_file else None,
            outbox_path=outbox_path,
            # A setpoint or an operator's command delayed by an outage could act on a changed
            # batch or alarm: sent now or refused.
            not_queued=(f"{section.prefix}/v1/+/setpoints/+", f"{section.prefix}/v1/+/commands/#"),
        )
    except OSError as exc:  # the outbox file cannot be opened: the data folder is the problem
        raise SettingsError(f"station.data_dir: {exc}") from None
