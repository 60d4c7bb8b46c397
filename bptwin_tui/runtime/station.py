"""The station's life cycle: start its parts in order, keep them connected, stop them in reverse.

``drivers -> bus -> recorder -> time-series store``; the same station serves the TUI
(``bptwin run``) and the headless service (``bptwin serve``). The parts come from
``runtime/wiring.py``, readings flow through ``runtime/pipeline.py``, and what an operator sees
of the links comes from ``runtime/health.py``.

A station starts and acquires with any server away: readings wait in the stores' spool, notebook
writes in the notebook queue and publishes in the bus outbox, and a background *link keeper*
migrates the notebook and connects the broker once they answer. Only a configuration error
(``SettingsError``) or another live acquisition of a reactor stops a start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bptwin.database.backoff import Backoff
from bptwin.tui.runtime.clock import StationClock
from bptwin.tui.runtime.health import Health, HealthView
from bptwin.tui.runtime.pipeline import ReadingPipeline
from bptwin.tui.runtime.prometheus import StationMetrics
from bptwin.tui.runtime.wiring import Runtime, build_bus, build_runtime
from bptwin.tui.settings import Settings, SettingsError
from bptwin.twin.history import History
from bptwin.twin.live import LatestValues, LiveSnapshot

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.database.recorder import Recorder
    from bptwin.database.timeseries import TimeSeriesStore
    from bptwin.drivers.base import DriverThread
    from bptwin.drivers.intake import ReadingIntake
    from bptwin.eln.write_queue import SpooledNotebook
    from bptwin.tui.runtime.acquisition_lock import AcquisitionLock, AcquisitionOwner
    from bptwin.tui.runtime.alarm_actions import StationAlarms
    from bptwin.tui.runtime.control_loop import StationControl
    from bptwin.tui.runtime.notifications import Notifier
    from bptwin.tui.runtime.replay_session import ReplaySession
    from bptwin.tui.runtime.sample_feed import SampleFeed
    from bptwin.tui.runtime.shadow_worker import ShadowWorker
    from bptwin.twin.predictor import InferenceWorker, Predictor

log = logging.getLogger(__name__)

__all__ = ["LinkKeeper", "Station", "build_bus", "connect_bus", "start_bus"]


class Station:
    """One acquisition for the configured reactors."""

    def __init__(self, settings: Settings, *, keep_trends: bool = True) -> None:
        self.settings = settings
        self.latest = LatestValues()
        # Trend history for the dashboard's plots (bounded: a 30 h batch of every channel,
        # about 28 MB per reactor when full). A headless station (`bptwin serve`) keeps none:
        # no screen reads it, and viewers fill their own from the stores.
        self.history: History | None = History(settings.station.reactors) if keep_trends else None
        # Counters and gauges for the Prometheus endpoint of `bptwin serve` ([metrics]).
        self.metrics = StationMetrics()
        self.pipeline = ReadingPipeline()
        # Each reactor's time for its records (runtime/clock.py): the wall clock for a real
        # acquisition, the stream's own time line for a simulated or replayed one.
        self.clock = StationClock()
        self.runtime: Runtime | None = None
        self.warnings: list[str] = []
        # Set when another live acquisition of a reactor turns up after start: serve exits.
        self.conflict: str | None = None
        self.conflicted = threading.Event()
        self._locks: list[AcquisitionLock] = []
        self._keeper = LinkKeeper()
        self._schema_problem: str | None = None
        self._started_at = time.time()
        # Hands each running batch's samples to the predictor (runtime/sample_feed.py).
        self.sample_feed: SampleFeed | None = None
        self.health_view = HealthView(
            lambda: self.runtime,
            schema_problem=lambda: self._schema_problem,
            urgent=self._urgent_problems,
            waiting=self._waiting_steps,
        )
        self.metrics.set_health(self.health_view.health)

    # -- the parts (None before start) --

    @property
    def bus(self) -> Bus | None:
        return self.runtime.bus if self.runtime else None

    @property
    def store(self) -> TimeSeriesStore | None:
        return self.runtime.store if self.runtime else None

    @property
    def recorder(self) -> Recorder | None:
        return self.runtime.recorder if self.runtime else None

    @property
    def notebook(self) -> SpooledNotebook | None:
        return self.runtime.notebook if self.runtime else None

    @property
    def control(self) -> StationControl | None:
        return self.runtime.control if self.runtime else None

    @property
    def shadow_worker(self) -> ShadowWorker | None:
        return self.runtime.shadow_worker if self.runtime else None

    @property
    def inference(self) -> InferenceWorker | None:
        return self.runtime.inference if self.runtime else None

    @property
    def notifier(self) -> Notifier | None:
        return self.runtime.notifier if self.runtime else None

    @property
    def intake(self) -> ReadingIntake | None:
        """Where readings enter: sources, their drivers and admission (drivers/intake.py)."""
        return self.runtime.intake if self.runtime else None

    @property
    def driver_threads(self) -> list[DriverThread]:
        """The running drivers' threads (empty before start and after ``stop_drivers``)."""
        return list(self.runtime.driver_threads) if self.runtime else []

    @property
    def backfill(self) -> threading.Thread | None:
        return self.runtime.backfill if self.runtime else None

    @property
    def replays(self) -> list[ReplaySession]:
        """Dataset batches replayed with their samples (runtime/replay_session.py)."""
        return list(self.runtime.replays) if self.runtime else []

    @property
    def locks(self) -> list[AcquisitionLock]:
        return list(self._locks)

    # -- start --

    def start(self) -> None:
        """Start every part in order; raise SettingsError for a setting that cannot work.

        Raises AcquisitionLockedError (a SettingsError) when another live acquisition runs
        one of the reactors (runtime/acquisition_lock.py). A server that does not answer is
        no error: the station starts degraded and connects when it can.
        """
        self._started_at = time.time()
        try:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                f"station.data_dir: cannot create {self.settings.data_dir}: {exc.strerror or exc}"
            ) from None
        self.take_acquisition_locks()
        try:
            self.runtime = build_runtime(
                self.settings,
                sink=self.pipeline.from_driver,
                latest=self.latest,
                history=self.history,
                metrics=self.metrics,
                keep_trends=self.history is not None,
            )
            self.pipeline.attach(self.runtime)
            self._use_clock(self.runtime)
            self._start_parts(self.runtime)
        except BaseException:
            self.stop()  # a station that did not start holds nothing (threads, locks)
            raise

    @property
    def simulated(self) -> bool:
        """Every source re-bases its stamps (simulated or replayed): a run of its own."""
        return self.runtime is not None and self.runtime.intake.plan.stamps_from_station_only

    def _use_clock(self, runtime: Runtime) -> None:
        """A simulated or replayed run stamps everything on its own time line: readings,
        alarms, acknowledgements and the notebook entries the station writes."""
        self.clock.follow_stream = runtime.intake.plan.stamps_from_station_only
        runtime.shadow_worker.clock = self.clock
        if self.clock.follow_stream:
            runtime.notebook.service.clock = self.clock.now_utc
            reactors = ", ".join(self.settings.station.reactors)
            self.latest.set_problem(
                "simulation",
                f"SIMULATED run on reactor {reactors}: its own clock, never a real batch's record",
            )

    def _start_parts(self, runtime: Runtime) -> None:
        self._upgrade_notebook()
        if runtime.replays:  # before any reading flows: it may move the replays' clock
            from bptwin.tui.runtime.replay_session import line_up_replays

            line_up_replays(runtime)
        self.warnings += check_store_reachable(self.settings, runtime.store)
        self._start_shadow(runtime)
        if self._schema_problem is None:
            self._start_backfill(runtime)
        # Subscribed before the connection: a resumed MQTT session delivers what the broker
        # kept for us while this process was away right after CONNACK. The intake gates and
        # admits what arrives (our own echo and locally owned channels are dropped).
        runtime.subscriptions += runtime.intake.connect_bus(
            runtime.bus,
            self.pipeline.from_bus,
            prefix=self.settings.bus.prefix,
            bus_is_mqtt=self.settings.bus.backend == "mqtt",
        )
        if not runtime.intake.start_watcher():  # counting other reactors' readings
            self._keeper.add("bus watcher", runtime.intake.start_watcher)
        if not connect_bus(self.settings, runtime.bus):
            self.warnings.append(
                f"bus.host/bus.port: the MQTT broker at {self.settings.bus.host}:"
                f"{self.settings.bus.port} does not answer; publishes wait in the outbox and "
                "the station connects when it is back"
            )
            self._keeper.add("bus", lambda: connect_bus(self.settings, runtime.bus))
        from bptwin.drivers.base import DriverThread

        for driver in runtime.drivers:
            runtime.driver_threads.append(DriverThread(driver).start())
        if runtime.intake.plan.simulated:
            self._follow_setpoints(runtime)
        if runtime.commands is not None:  # viewers' commands (runtime/operator_commands.py)
            runtime.subscriptions += runtime.commands.start().subscribe(runtime.bus)
        self._keeper.start()

    def _upgrade_notebook(self) -> None:
        """Migrate the notebook now, or once its database answers (writes queue meanwhile)."""
        from bptwin.database.migrate import upgrade
        from bptwin.database.relational import DatabaseUnavailable

        url = self.settings.notebook_url()
        try:
            upgrade(url)
            return
        except DatabaseUnavailable as exc:
            self._schema_problem = f"notebook database unreachable at start ({exc})"
        self.warnings.append(
            f"notebook.url: {self._schema_problem}; notebook writes are queued on disk and "
            "written once it answers"
        )

        def migrate_when_back() -> bool:
            try:
                upgrade(url)
            except DatabaseUnavailable as exc:
                self._schema_problem = f"notebook database unreachable ({exc})"
                return False
            self._schema_problem = None
            log.warning("notebook database reachable again: schema current, replaying the queue")
            if self.runtime is not None:
                self._start_backfill(self.runtime)
            return True

        self._keeper.add("notebook", migrate_when_back)

    def _start_shadow(self, runtime: Runtime) -> None:
        """Predictions (when a model loads), alarm notifications, then the shadow's thread."""
        runtime.inference = self.start_inference(runtime.shadow_worker)
        runtime.shadow_worker.inference = runtime.inference
        if runtime.inference is not None:
            self._start_sample_feed(runtime, runtime.inference.predictor)
        if runtime.notifier is not None:
            runtime.notifier.start()
        runtime.shadow_worker.start()

    def _start_sample_feed(self, runtime: Runtime, predictor: Predictor) -> None:
        """The running batches' offline samples, read from the notebook whoever wrote them,
        adapt the nowcast (bptwin.twin.adaptation), with or without a trend history."""
        from bptwin.tui.runtime.sample_feed import SampleFeed, running_batch_samples

        reactors = list(self.settings.station.reactors)
        feed = SampleFeed(
            running_batch_samples(runtime.notebook.service, reactors),
            predictor.note_samples,
            reactors,
        )
        # The App reloads a batch's samples into the history after each entry here; a viewer
        # says so on the bus.
        if self.history is not None:
            self.history.add_sample_listener(lambda reactor, _t, _v: feed.changed(reactor))
        runtime.subscriptions.append(feed.subscribe(runtime.bus, self.settings.bus.prefix))
        self.sample_feed = feed.start()

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

    def _start_backfill(self, runtime: Runtime) -> None:
        """The running batches' stored trends into the history, beside acquisition.

        Not for the simulated and replayed sources: each start of those is a batch of its own,
        so the store's older readings belong to another batch. Up to the start only: what
        arrived since reached the history live.
        """
        history = self.history
        if history is None or runtime.intake.plan.stamps_from_station_only:
            return
        from bptwin.tui.runtime.trend_backfill import (
            backfill_in_background,
            backfill_running_batches,
        )

        until = self._started_at
        runtime.backfill = backfill_in_background(
            lambda: backfill_running_batches(
                history,
                runtime.store,
                runtime.notebook.service,
                self.settings.station.reactors,
                now=until,
            )
        )

    def _follow_setpoints(self, runtime: Runtime) -> None:
        """Let the simulated reactors obey verified setpoints: mode 1 only (docs/control.md)."""
        # Only drivers that simulate a reactor (another source may acquire it too); their
        # simulator is made when the driver starts, so it is looked up per setpoint.
        simulated = {d.reactor: d for d in runtime.drivers if hasattr(d, "simulator")}
        runtime.subscriptions.append(
            runtime.control.follow_setpoints(
                runtime.bus, lambda reactor: getattr(simulated.get(reactor), "simulator", None)
            )
        )

    def take_acquisition_locks(self) -> None:
        """One acquisition per reactor, here or on any machine on the broker."""
        from bptwin.tui.runtime.acquisition_lock import acquire_acquisition_lock

        try:
            for reactor in self.settings.station.reactors:
                self._locks.append(
                    acquire_acquisition_lock(
                        self.settings,
                        reactor,
                        wait_for_broker=False,
                        on_conflict=self._on_conflict,
                    )
                )
        except BaseException:
            self.release_acquisition_locks()
            raise

    def release_acquisition_locks(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks.clear()

    def _on_conflict(self, owner: AcquisitionOwner) -> None:
        """Another live acquisition of a reactor turned up on the broker: stop acquiring."""
        self.conflict = (
            f"reactor {owner.reactor}: another acquisition runs on {owner.describe()}; "
            "this one stopped acquiring (two acquisitions of one reactor are refused)"
        )
        log.error("%s", self.conflict)
        self.stop_drivers()
        self.conflicted.set()

    def _urgent_problems(self) -> list[str]:
        return [self.conflict] if self.conflict else []

    def _waiting_steps(self) -> list[str]:
        return [
            f"reactor {lock.reactor}: acquisition claim not yet on the broker (unreachable)"
            for lock in self._locks
            if lock.claim_pending
        ]

    # -- running --

    def snapshot(self) -> LiveSnapshot:
        self.update_links()
        return self.latest.snapshot()

    def update_links(self) -> None:
        """Bus, time-series store and notebook: up or down, and how much waits on disk."""
        self.health_view.update()

    def health(self) -> Health:
        return self.health_view.health()

    def rejected_inputs(self) -> dict[str, int]:
        """Inputs refused with a reason since start, by source and reason (all logged too)."""
        return self.health_view.rejected_inputs()

    def watch_metrics(self, metrics: StationMetrics) -> None:
        """Bus, store, admission, spool depths and rejected inputs on the Prometheus endpoint."""
        runtime = self.runtime
        if runtime is None:
            return
        metrics.watch_bus(runtime.bus)
        metrics.watch_store(runtime.store)
        metrics.watch_admission(runtime.intake.admission)
        metrics.add_gauge(
            "bptwin_inputs_rejected",
            "Inputs refused with a reason since start (payloads, lines, form values)",
            lambda: float(sum(self.rejected_inputs().values())),
        )
        metrics.add_gauge(
            "bptwin_bus_outbox_depth",
            "MQTT publishes waiting in the durable outbox for the broker",
            lambda: float(getattr(runtime.bus, "outbox_depth", 0)),
        )
        metrics.add_gauge(
            "bptwin_notebook_spool_depth",
            "Notebook writes queued on disk while the database is away",
            lambda: float(runtime.notebook.status().waiting),
        )

    @property
    def alarm_actions(self) -> StationAlarms | None:
        """The operator's acknowledge/shelve/unshelve on this station's alarm engine."""
        if self.runtime is None:
            return None
        from bptwin.tui.runtime.alarm_actions import StationAlarms

        return StationAlarms(self.runtime.shadow_worker)

    # -- stop --

    def stop_drivers(self) -> None:
        """End acquisition only (the rest keeps running until ``stop``)."""
        runtime = self.runtime
        if runtime is None:
            return
        threads, runtime.driver_threads = runtime.driver_threads, []
        for thread in threads:
            thread.stop()

    def stop(self) -> None:
        """Stop in reverse order of start: drivers first, so every reading reaches a store."""
        self._keeper.stop()
        runtime = self.runtime
        if runtime is not None:
            self._stop_parts(runtime)
        self.release_acquisition_locks()

    def _stop_parts(self, runtime: Runtime) -> None:
        # Quitting silences every sensor at once: that is no alarm of the batch.
        runtime.shadow_worker.end_acquisition()
        self.stop_drivers()
        if runtime.bus.connected:
            # Let the handlers see what was published so far before the shadow stops.
            runtime.bus.drain(timeout=10.0)
        for subscription in runtime.subscriptions:
            subscription.cancel()
        runtime.subscriptions.clear()
        runtime.intake.disconnect_bus()
        if runtime.commands is not None:
            runtime.commands.stop()
        runtime.shadow_worker.stop()
        if self.sample_feed is not None:
            self.sample_feed.stop()
        if runtime.inference is not None:
            runtime.inference.stop()
        if runtime.notifier is not None:
            runtime.notifier.stop(timeout=5.0)
        # After the shadow: its last alarm transitions and predictions still go out.
        runtime.bus.stop()
        runtime.recorder.flush(timeout=10.0)
        runtime.recorder.close()
        # Spooled readings are on disk already: with the server away, waiting would only
        # hold up the stop (and the UI that asked for it).
        runtime.store.flush(timeout=10.0 if runtime.store.status().link_ok else 0.5)
        runtime.store.close()
        runtime.notebook.close()  # what is still queued stays on disk for the next start
        close_bus = getattr(runtime.bus, "close", None)
        if close_bus is not None:
            close_bus()


class LinkKeeper:
    """Retries the links that were down at start (broker, notebook) with back-off, in a thread."""

    def __init__(self, *, initial_s: float = 1.0, maximum_s: float = 30.0) -> None:
        self._tasks: dict[str, tuple[Callable[[], bool], Backoff]] = {}
        self._initial_s = initial_s
        self._maximum_s = maximum_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, attempt: Callable[[], bool]) -> None:
        """``attempt()`` returns True once the link works; it is then never called again."""
        self._tasks[name] = (attempt, Backoff(self._initial_s, self._maximum_s))

    @property
    def pending(self) -> list[str]:
        return list(self._tasks)

    def start(self) -> None:
        if self._tasks and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="link-keeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None

    def _run(self) -> None:
        due = {name: time.monotonic() for name in self._tasks}
        while self._tasks and not self._stop.is_set():
            now = time.monotonic()
            for name, (attempt, backoff) in list(self._tasks.items()):
                if due[name] > now:
                    continue
                try:
                    done = attempt()
                except Exception:  # a surprise must not end the keeper: try again later
                    log.exception("reconnecting %s failed", name)
                    done = False
                if done:
                    del self._tasks[name]
                else:
                    due[name] = time.monotonic() + backoff.next_delay()
            if self._tasks:
                self._stop.wait(max(0.05, min(due[n] for n in self._tasks) - time.monotonic()))


def connect_bus(settings: Settings, bus: Bus) -> bool:
    """Connect the bus: True when connected, False when the broker does not answer.

    Raises SettingsError when the broker answers but refuses us (user, password, TLS file):
    waiting would not help.
    """
    try:
        bus.start()
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        raise SettingsError(
            f"bus.host/bus.port: the MQTT broker at {settings.bus.host}:{settings.bus.port} "
            f"refused this station: {exc}"
        ) from None
    except OSError as exc:
        log.warning(
            "MQTT broker %s:%s unreachable (%s); retrying",
            settings.bus.host,
            settings.bus.port,
            exc,
        )
        return False
    return True


def start_bus(settings: Settings, bus: Bus) -> None:
    """Connect the bus now, or raise SettingsError naming the broker setting (viewers)."""
    try:
        bus.start()
    except OSError as exc:
        raise SettingsError(
            f"bus.host/bus.port: cannot reach the MQTT broker at "
            f"{settings.bus.host}:{settings.bus.port}: {exc}"
        ) from None


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
