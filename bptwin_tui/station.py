"""Wiring: builds the bus, stores and drivers named in the settings and runs them.

``drivers -> bus -> recorder -> time-series store``; the same station serves the TUI
(``bptwin run``) and the headless service (``bptwin serve``).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.database.reading import Reading
from bptwin.database.recorder import Recorder
from bptwin.tui.control_loop import StationControl
from bptwin.tui.metrics import MetricsRegistry
from bptwin.tui.settings import Settings, SettingsError
from bptwin.tui.shadow_worker import ShadowWorker
from bptwin.twin.history import History
from bptwin.twin.live import LatestValues, LinkState, LiveSnapshot

if TYPE_CHECKING:
    from bptwin.database.bus import Bus, Subscription
    from bptwin.database.timeseries import TimeSeriesStore
    from bptwin.drivers.base import Driver, DriverThread
    from bptwin.eln.services import NotebookService
    from bptwin.eln.write_queue import SpooledNotebook
    from bptwin.tui.alarm_actions import StationAlarms
    from bptwin.tui.lock import AcquisitionLock
    from bptwin.twin.notify import Notifier
    from bptwin.twin.predictor import InferenceWorker

log = logging.getLogger(__name__)


class Station:
    """One acquisition for the configured reactors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.latest = LatestValues()
        # Trend history for the dashboard's plots (bounded: a 30 h batch of every channel).
        self.history = History(settings.station.reactors)
        # Counters and gauges for the Prometheus endpoint of `bptwin serve` ([metrics]).
        self.metrics = MetricsRegistry(stale_after_s=settings.metrics.stale_after_s)
        self.notifier: Notifier | None = None
        self.bus: Bus | None = None
        self.store: TimeSeriesStore | None = None
        self.recorder: Recorder | None = None
        self._subscriptions: list[Subscription] = []
        self._driver_threads: list[DriverThread] = []
        self.warnings: list[str] = []
        self.shadow_worker: ShadowWorker | None = None
        self.inference: InferenceWorker | None = None
        self.control: StationControl | None = None
        self._simulated: list[Driver] = []
        # The notebook with store-and-forward (eln.write_queue): alarm events, samples, notes.
        self.notebook: SpooledNotebook | None = None
        self._locks: list[AcquisitionLock] = []
        # Reactors acquired here: recorded as acquired, their echo from the bus is skipped.
        self._local_reactors: set[str] = set()
        self.backfill: threading.Thread | None = None

    def start(self) -> None:
        """Open everything or raise SettingsError naming the setting that does not work.

        Raises AcquisitionLockedError (a SettingsError) when another acquisition runs one of
        the reactors (bptwin_tui.lock).
        """
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.take_acquisition_locks()
        try:
            self._start_locked()
        except BaseException:
            self.stop()  # a station that did not start holds nothing (threads, locks)
            raise

    def _start_locked(self) -> None:
        self.upgrade_notebook()
        self.store = build_store(self.settings)
        self.warnings += check_store_reachable(self.settings, self.store)
        self.recorder = Recorder(self.store)
        outbox = self.settings.spool_dir() / "bus-outbox.sqlite"
        self.bus = build_bus(self.settings, outbox_path=outbox)
        prefix = self.settings.bus.prefix
        self.start_shadow()
        self.start_backfill()
        # Subscribed before the connection: a resumed MQTT session delivers what the broker
        # kept for us while this process was away right after CONNACK.
        self._subscriptions.append(
            self.bus.subscribe_readings(
                self._record_from_bus,
                prefix=prefix,
                skip_reactor=self._local_reactors.__contains__,  # our own, recorded already
            )
        )
        drivers = self.build_drivers()
        # Known before any message arrives: the outbox of an earlier run replays our own
        # readings, which are in the store already.
        self._local_reactors.update(driver.reactor for driver in drivers)
        start_bus(self.settings, self.bus)
        from bptwin.drivers.base import DriverThread

        for driver in drivers:
            self._driver_threads.append(DriverThread(driver).start())
        if self.settings.acquisition.source == "simulated":
            self._follow_setpoints()

    def start_backfill(self) -> None:
        """The running batches' stored trends into the history, beside acquisition.

        Not for the simulated and replayed sources: each start of those is a batch of its own,
        so the store's older readings belong to another batch.
        """
        if self.settings.acquisition.source in {"simulated", "replay"}:
            return
        from bptwin.tui.backfill import backfill_in_background, backfill_running_batches

        store, notebook, until = self.store, self.notebook, time.time()
        assert store is not None and notebook is not None
        # Up to now only: what arrives from here on reaches the history live.
        self.backfill = backfill_in_background(
            lambda: backfill_running_batches(
                self.history, store, notebook.service, self.settings.station.reactors, now=until
            )
        )

    def _follow_setpoints(self) -> None:
        """Let the simulated reactors obey setpoints published on the bus (control mode 1)."""
        from bptwin.twin.actuation import SetpointCommand

        assert self.bus is not None
        drivers = {thread.driver.reactor: thread.driver for thread in self._driver_threads}
        prefix = self.settings.bus.prefix

        def apply(topic: str, payload: bytes) -> None:
            try:
                command = SetpointCommand.from_message(topic, payload)
            except ValueError as exc:
                log.warning("setpoint refused: %s", exc)
                return
            simulator = getattr(drivers.get(command.reactor), "simulator", None)
            if simulator is not None:
                simulator.apply_setpoint(command.parameter, command.value)

        pattern = f"{prefix}/v1/+/setpoints/+"
        self._subscriptions.append(self.bus.subscribe(pattern, apply))

    def start_shadow(self) -> None:
        """Features, alarms and (when a model loads) predictions for every reactor."""
        from bptwin.eln.services import NotebookService
        from bptwin.twin.alarm_rules import AlarmConfigError, rules_from_config
        from bptwin.twin.shadow import Shadow

        assert self.bus is not None and self.recorder is not None
        try:
            rules = rules_from_config(self.settings.alarms)
        except AlarmConfigError as exc:
            raise SettingsError(str(exc)) from None
        shadow = Shadow(self.settings.station.reactors, alarm_rules=rules)
        from bptwin.eln.write_queue import SpooledNotebook

        notebook = SpooledNotebook(
            NotebookService.from_url(self.settings.notebook_url()),
            self.settings.spool_dir() / "notebook.sqlite",
        )
        self.notebook = notebook
        self.control = build_control(self.settings, self.bus, notebook.service)
        self.notifier = self.start_notifier()
        self.shadow_worker = ShadowWorker(
            shadow,
            latest=self.latest,
            history=self.history,
            recorder=self.recorder,
            bus=self.bus,
            prefix=self.settings.bus.prefix,
            notebook=notebook,
            control=self.control,
            notifier=self.notifier,
            metrics=self.metrics,
        )
        self.inference = self.start_inference(self.shadow_worker)
        self.shadow_worker.inference = self.inference
        self.shadow_worker.start()

    def start_inference(self, shadow_worker: ShadowWorker) -> InferenceWorker | None:
        from bptwin.twin.predictor import InferenceWorker, load_predictor
        from bptwin.twin.registry import ModelError

        try:
            predictor = load_predictor(self.settings.model.path, self.settings.data_dir)
        except ModelError as exc:
            problem = f"model.path: {exc}; no OD600 prediction"
            self.warnings.append(problem)
            self.latest.set_problem("model", problem)
            return None
        self.latest.model_version = predictor.version
        return InferenceWorker(
            predictor,
            [shadow_worker.on_prediction],
            on_error=shadow_worker.on_prediction_error,
            on_latency=self.metrics.observe_prediction_latency,
        ).start()

    def start_notifier(self) -> Notifier | None:
        """Critical alarms beyond the screen ([notify]: webhook, MQTT topic, mail), if set."""
        from bptwin.tui.settings_ops import notifier_from_settings

        bus = self.bus
        assert bus is not None

        def publish(topic: str, payload: bytes) -> None:
            bus.publish(topic, payload, qos=1)

        notifier = notifier_from_settings(
            self.settings.notify, publish=publish, station=self.settings.station.name
        )
        if notifier is None:
            return None
        self.metrics.add_gauge(
            "bptwin_notifications_accepted",
            "Alarm notifications queued for delivery since start",
            lambda: float(notifier.stats.accepted),
        )
        self.metrics.add_gauge(
            "bptwin_notifications_dropped",
            "Alarm notifications dropped because the queue was full",
            lambda: float(notifier.stats.dropped),
        )
        return notifier.start()

    def build_drivers(self) -> list[Driver]:
        from bptwin.drivers.factory import DriverConfigError, build_drivers

        acquisition = self.settings.acquisition
        assert self.bus is not None
        drivers: list[Driver] = []
        try:
            # One driver per reactor; the simulated reactors differ by seed.
            for index, reactor in enumerate(self.settings.station.reactors):
                drivers += build_drivers(
                    acquisition.source,
                    self._publish,
                    reactor=reactor,
                    speed=acquisition.speed,
                    seed=acquisition.seed + index,
                    replay_file=acquisition.replay_file,
                    topic_map=acquisition.topic_map,
                    serial_port=acquisition.serial.port,
                    baudrate=acquisition.serial.baudrate,
                    bus=self.bus,
                    bus_is_mqtt=self.settings.bus.backend == "mqtt",
                    prefix=self.settings.bus.prefix,
                )
                if acquisition.source in {"serial", "replay", "mqtt"}:
                    break  # these sources name their reactor themselves
        except DriverConfigError as exc:
            raise SettingsError(str(exc)) from None
        return drivers

    def upgrade_notebook(self) -> list[str]:
        from bptwin.database.migrate import upgrade
        from bptwin.database.relational import DatabaseUnavailable

        try:
            return upgrade(self.settings.notebook_url())
        except DatabaseUnavailable as exc:
            raise SettingsError(f"notebook.url: {exc}") from None

    def take_acquisition_locks(self) -> None:
        """One acquisition per reactor, here or on any machine on the broker."""
        from bptwin.tui.lock import acquire_acquisition_lock

        try:
            for reactor in self.settings.station.reactors:
                self._locks.append(acquire_acquisition_lock(self.settings, reactor))
        except BaseException:
            self.release_acquisition_locks()
            raise

    def release_acquisition_locks(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks.clear()

    def _publish(self, reading: Reading) -> None:
        """Sink of the local drivers: recorded here at once, then published for others.

        Recording does not wait for the broker's echo, so acquisition, the shadow and the
        store go on while the broker is away; the publish waits in the bus outbox.
        """
        assert self.bus is not None
        self._local_reactors.add(reading.reactor)
        self._record(reading)
        try:
            self.bus.publish_reading(reading, prefix=self.settings.bus.prefix)
        except Exception as exc:  # recorded already: a failed publish costs only the viewers
            log.error("reading %s/%s not published: %s", reading.reactor, reading.channel, exc)

    def _record_from_bus(self, reading: Reading) -> None:
        """Readings of sensors that publish on the broker themselves (not our own echo).

        Written to the store before the handler returns, i.e. before the bus acknowledges
        the message to the broker: an acknowledged reading is on disk, even after SIGKILL.
        """
        if reading.reactor in self._local_reactors:
            return
        self._record(reading, durable=True)

    def _record(self, reading: Reading, *, durable: bool = False) -> None:
        self.latest.add(reading)
        self.metrics.reading_received(reading)
        self.history.add_reading(reading)
        if durable and self.store is not None:
            from bptwin.database.timeseries import TimeSeriesError

            try:
                self.store.write([reading])
            except TimeSeriesError as exc:  # the recorder keeps it in memory and retries
                log.error(
                    "reading %s/%s not stored at once: %s", reading.reactor, reading.channel, exc
                )
                if self.recorder is not None:
                    self.recorder.add(reading)
        elif self.recorder is not None:
            self.recorder.add(reading)
        if self.shadow_worker is not None:
            self.shadow_worker.submit(reading)

    def snapshot(self) -> LiveSnapshot:
        self.update_links()
        return self.latest.snapshot()

    def update_links(self) -> None:
        """Bus, time-series store and notebook: up or down, and how much waits on disk."""
        if self.bus is not None:
            self.latest.set_link(bus_link(self.settings, self.bus))
        if self.store is not None:
            status = self.store.status()
            buffered = self.recorder.stats().buffered if self.recorder else 0
            waiting = status.pending + status.spooled + buffered
            detail = "" if status.link_ok else f"{status.last_error or 'unreachable'}; spooled"
            self.latest.set_link(LinkState("timeseries", status.link_ok, waiting, detail))
        if self.notebook is not None:
            state = self.notebook.status()
            detail = "" if state.up else f"{state.last_error or 'unreachable'}; queued"
            if state.rejected:
                detail = f"{detail}; {state.rejected} refused on replay".lstrip("; ")
            self.latest.set_link(LinkState("notebook", state.up, state.waiting, detail))
        rejected = self.rejected_inputs()
        total = sum(rejected.values())
        self.latest.set_problem(
            "input",
            f"rejected input: {total} ("
            + ", ".join(f"{source} {count}" for source, count in sorted(rejected.items()))
            + ")"
            if total
            else None,
        )

    def rejected_inputs(self) -> dict[str, int]:
        """Inputs refused with a reason since start, by source and reason (all logged too).

        MQTT payloads that are not a valid reading (bus), lines or messages a driver refused
        (e.g. a serial checksum), notebook writes refused for their values.
        """
        counts: dict[str, int] = {}
        if self.bus is not None and self.bus.stats.malformed:
            counts["mqtt payload"] = self.bus.stats.malformed
        for thread in self._driver_threads:
            driver = thread.driver
            for reason, count in driver.stats.rejected_by_reason.items():
                key = f"{driver.name} {reason}"
                counts[key] = counts.get(key, 0) + count
        if self.notebook is not None and self.notebook.refused_inputs:
            counts["notebook form"] = self.notebook.refused_inputs
        return counts

    def watch_metrics(self, registry: MetricsRegistry) -> None:
        """Bus, store, spool depths and rejected inputs on the Prometheus endpoint."""
        if self.bus is not None:
            registry.watch_bus(self.bus)
        if self.store is not None:
            registry.watch_store(self.store)
        registry.add_gauge(
            "bptwin_inputs_rejected",
            "Inputs refused with a reason since start (payloads, lines, form values)",
            lambda: float(sum(self.rejected_inputs().values())),
        )
        registry.add_gauge(
            "bptwin_bus_outbox_depth",
            "MQTT publishes waiting in the durable outbox for the broker",
            lambda: float(getattr(self.bus, "outbox_depth", 0)),
        )
        registry.add_gauge(
            "bptwin_notebook_spool_depth",
            "Notebook writes queued on disk while the database is away",
            lambda: float(self.notebook.status().waiting if self.notebook else 0),
        )

    @property
    def alarm_actions(self) -> StationAlarms | None:
        """The operator's acknowledge/shelve/unshelve on this station's alarm engine."""
        if self.shadow_worker is None:
            return None
        from bptwin.tui.alarm_actions import StationAlarms

        return StationAlarms(self.shadow_worker)

    def stop_drivers(self) -> None:
        """End acquisition only (the rest keeps running until ``stop``)."""
        for thread in self._driver_threads:
            thread.stop()
        self._driver_threads.clear()

    def stop(self) -> None:
        """Stop drivers first so every emitted reading still reaches the store."""
        self.stop_drivers()
        if self.bus is not None:
            # Let the handlers see what was published so far before the shadow stops.
            self.bus.drain(timeout=10.0)
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        if self.shadow_worker is not None:
            self.shadow_worker.stop()
        if self.inference is not None:
            self.inference.stop()
        if self.notifier is not None:
            self.notifier.stop(timeout=5.0)
        if self.bus is not None:
            # After the shadow: its last alarm transitions and predictions still go out.
            self.bus.stop()
        if self.recorder is not None:
            self.recorder.flush(timeout=10.0)
            self.recorder.close()
        if self.store is not None:
            self.store.flush(timeout=10.0)
            self.store.close()
        if self.notebook is not None:
            self.notebook.close()  # what is still queued stays on disk for the next start
        close_bus = getattr(self.bus, "close", None)
        if close_bus is not None:
            close_bus()
        self.release_acquisition_locks()


def build_store(settings: Settings) -> TimeSeriesStore:
    from bptwin.database.timeseries import TimeSeriesError

    section = settings.timeseries
    try:
        if section.backend == "embedded":
            from bptwin.database.timeseries.embedded import EmbeddedStore

            return EmbeddedStore(settings.timeseries_path())
        from bptwin.database.timeseries.influx import InfluxStore
        from bptwin.database.timeseries.influx_common import InfluxConfig, InfluxConfigError

        try:
            config = InfluxConfig(
                url=section.url,
                api_version=section.api_version,  # type: ignore[arg-type]
                token=section.token.get_secret_value() if section.token else None,
                org=section.org or None,
                bucket=section.bucket or None,
                database=section.database or None,
                username=section.username or None,
                password=section.password.get_secret_value() if section.password else None,
            )
        except InfluxConfigError as exc:
            raise SettingsError(f"timeseries: {exc}") from None
        return InfluxStore(
            config,
            settings.spool_dir() / "influx.sqlite",
            batch_size=section.batch_size,
            flush_interval=section.flush_interval_s,
        )
    except TimeSeriesError as exc:
        raise SettingsError(f"timeseries: {exc}") from None


def build_control(settings: Settings, bus: Bus, notebook: NotebookService | None) -> StationControl:
    from bptwin.twin.actuation import ControlMode
    from bptwin.twin.actuation import ControlSettings as ActuationSettings

    section = settings.control
    return StationControl(
        settings.station.reactors,
        bus=bus,
        prefix=settings.bus.prefix,
        settings=ActuationSettings(
            mode=ControlMode(section.mode),
            enabled=section.enabled,
            confirmation_minutes=section.confirmation_minutes,
        ),
        notebook=notebook,
    )


def check_store_reachable(settings: Settings, store: TimeSeriesStore) -> list[str]:
    """A warning naming the key when InfluxDB does not answer at start (readings are spooled)."""
    ping = getattr(store, "ping", None)
    if ping is None:
        return []
    from bptwin.database.timeseries import TimeSeriesError

    try:
        ping()
    except TimeSeriesError as exc:
        return [
            f"timeseries.url: {exc}; readings are spooled to {settings.spool_dir()} "
            "and written when the server answers"
        ]
    return []


def bus_link(settings: Settings, bus: Bus) -> LinkState:
    """The bus as the status strip shows it: broker reachable, messages waiting in the outbox."""
    if settings.bus.backend == "local":
        return LinkState("bus", bus.connected, 0, "in-process")
    waiting = int(getattr(bus, "outbox_depth", 0))
    where = f"{settings.bus.host}:{settings.bus.port}"
    detail = where if bus.connected else f"broker {where} unreachable; messages kept on disk"
    return LinkState("bus", bus.connected, waiting, detail)


def start_bus(settings: Settings, bus: Bus) -> None:
    """Connect the bus, or raise SettingsError naming the broker setting that does not work."""
    try:
        bus.start()
    except OSError as exc:
        raise SettingsError(
            f"bus.host/bus.port: cannot reach the MQTT broker at "
            f"{settings.bus.host}:{settings.bus.port}: {exc}"
        ) from None


def build_bus(settings: Settings, *, outbox_path: Path | None = None) -> Bus:
    """The configured bus; MQTT with ``outbox_path`` stores and forwards its QoS 1 publishes."""
    section = settings.bus
    if section.backend == "local":
        from bptwin.database.bus import LocalBus

        return LocalBus()
    from bptwin.database.bus import MqttBus

    return MqttBus(
        section.host,
        section.port,
        client_id=section.client_id or None,
        username=section.username or None,
        password=section.password.get_secret_value() if section.password else None,
        tls=section.tls,
        ca_file=str(section.ca_file) if section.ca_file else None,
        outbox_path=outbox_path,
        # A setpoint delayed by an outage could act on a changed batch: sent now or refused.
        not_queued=(f"{section.prefix}/v1/+/setpoints/+",),
    )
