"""Runs the digital shadow beside acquisition: features, alarms, predictions; stored, published.

The bus thread only enqueues readings; this worker's thread does the feature and alarm work,
the inference worker predicts, and everything produced goes to the recorder (time series),
the bus (predictions, alarm transitions) and the notebook (alarm events).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import TYPE_CHECKING

from bptwin.database.bus import topics
from bptwin.database.reading import Reading
from bptwin.twin.alarms import AlarmTransition, transition_message
from bptwin.twin.features import ProcessState
from bptwin.twin.live import LatestValues
from bptwin.twin.shadow import Shadow, ShadowOutput, derived_readings

if TYPE_CHECKING:
    from bptwin.database.bus import Bus
    from bptwin.database.recorder import Recorder
    from bptwin.eln.direct_notebook import DirectNotebook
    from bptwin.tui.runtime.clock import StationClock
    from bptwin.tui.runtime.control_loop import StationControl
    from bptwin.tui.runtime.notifications import Notifier
    from bptwin.tui.runtime.prometheus import StationMetrics
    from bptwin.twin.history import History
    from bptwin.twin.predictor import InferenceWorker, Prediction

log = logging.getLogger(__name__)

TICK_S = 1.0


class ShadowWorker:
    """Owns the shadow's thread; ``submit`` never blocks the caller."""

    def __init__(
        self,
        shadow: Shadow,
        *,
        latest: LatestValues,
        recorder: Recorder,
        bus: Bus,
        prefix: str,
        notebook: DirectNotebook | None = None,
        inference: InferenceWorker | None = None,
        control: StationControl | None = None,
        history: History | None = None,
        notifier: Notifier | None = None,
        metrics: StationMetrics | None = None,
        clock: StationClock | None = None,
        max_pending: int = 500_000,
    ) -> None:
        self.shadow = shadow
        self.latest = latest
        self.recorder = recorder
        self.bus = bus
        self.prefix = prefix
        self.notebook = notebook
        self.inference = inference
        self.control = control
        self.history = history
        self.notifier = notifier
        self.metrics = metrics
        # Each reactor's clock follows its stream (runtime/clock.py); told of every reading.
        self.clock = clock
        self._queue: queue.Queue[Reading] = queue.Queue(max_pending)
        self._stop = threading.Event()
        # Set when the station stops acquiring on purpose (quitting): from then on silence is
        # the station's own doing, not a sensor's, so no time-based alarm is raised.
        self._acquisition_ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self.dropped = 0
        self.windows = 0
        self.transitions = 0
        self._last_stream_ts = -math.inf
        self._last_stream_wall = time.monotonic()

    def start(self) -> ShadowWorker:
        self._thread.start()
        return self

    def submit(self, reading: Reading) -> None:
        try:
            self._queue.put_nowait(reading)
        except queue.Full:
            self.dropped += 1

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def end_acquisition(self) -> None:
        """The station is stopping its drivers: stop judging staleness and frozen values.

        Readings still queued are fed (their alarms are real); only the clock-driven checks
        stop, so quitting the app raises no ``sensor_stale`` alarm into the record.
        """
        self._acquisition_ended.set()

    @property
    def acquisition_ended(self) -> bool:
        return self._acquisition_ended.is_set()

    def stream_now(self) -> float:
        """The station's notion of now: the stream's own clock, moving on in real time.

        A replayed or accelerated batch is stamped behind or ahead of the wall clock; closing
        windows and judging staleness must follow those stamps, and still notice when the
        stream stops. Before the first reading it is the wall clock.
        """
        if self._last_stream_ts == -math.inf:
            return time.time()
        return self._last_stream_ts + (time.monotonic() - self._last_stream_wall)

    def _run(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while not self._stop.is_set():
            try:
                reading = self._queue.get(timeout=0.2)
            except queue.Empty:
                reading = None
            if reading is not None:
                self._feed(reading)
                # Drain what is waiting in one go before looking at the clock again.
                for _ in range(10_000):
                    try:
                        self._feed(self._queue.get_nowait())
                    except queue.Empty:
                        break
            if time.monotonic() >= next_tick and not self._acquisition_ended.is_set():
                next_tick = time.monotonic() + TICK_S
                self._handle(self.shadow.tick(self.stream_now()))
        while True:
            try:
                self._feed(self._queue.get_nowait())
            except queue.Empty:
                break
        self._handle(self.shadow.flush())

    def _feed(self, reading: Reading) -> None:
        if self.clock is not None:
            self.clock.observe(reading.reactor, reading.timestamp)
        if reading.timestamp > self._last_stream_ts:
            self._last_stream_ts = reading.timestamp
            self._last_stream_wall = time.monotonic()
        try:
            output = self.shadow.feed(reading)
        except Exception as exc:  # one bad reading must not stop the shadow
            log.exception("shadow: reading %s/%s failed", reading.reactor, reading.channel)
            self.latest.set_problem("shadow", f"feature pipeline error: {exc}")
            return
        if output:
            self._handle(output)

    def _handle(self, output: ShadowOutput) -> None:
        for state in output.states:
            self._on_state(state)
        for transition in output.transitions:
            self._on_transition(transition)
        if output.transitions:
            self._alarms_changed()

    def _alarms_changed(self) -> None:
        engine = self.shadow.alarms
        counts = engine.counts()
        self.latest.set_alarms(engine.active_alarms(), counts)
        if self.metrics is not None:
            self.metrics.set_alarm_counts(counts.by_state, counts.by_priority)

    def _on_state(self, state: ProcessState) -> None:
        self.windows += 1
        self.latest.set_state(state)
        if self.history is not None:
            self.history.add_state(state)
        for reading in derived_readings(state):
            self.recorder.add(reading)
        if self.inference is not None:
            self.inference.submit(state)
        if self.control is not None:
            try:
                self.control.on_state(state)
                self.latest.set_advice(
                    state.reactor,
                    self.control.advice(state.reactor),
                    self.control.status(state.reactor),
                )
            except Exception as exc:  # advice is an aid: its failure must not stop the shadow
                log.exception("control advice failed")
                self.latest.set_problem("control", f"control advice failed: {exc}")

    def publish_transitions(self, transitions: tuple[AlarmTransition, ...]) -> None:
        """Store and publish transitions made outside the shadow thread (operator actions)."""
        for transition in transitions:
            self._on_transition(transition)
        self._alarms_changed()

    def _on_transition(self, transition: AlarmTransition) -> None:
        self.transitions += 1
        if self.notifier is not None:
            self.notifier.notify_transition(transition)  # queued: never waits for delivery
        try:
            topic, payload = transition_message(transition, self.prefix)
            self.bus.publish(topic, payload, qos=1)
        except Exception as exc:
            log.error("alarm %s not published: %s", transition.alarm_id, exc)
        if self.notebook is None:
            return
        from bptwin.eln.write_queue import NotebookWriteQueued

        try:
            self.notebook.record_alarm_event(**transition.event_fields())
            self.latest.set_problem("notebook", None)
        except NotebookWriteQueued:
            # Saved on disk and written when the database is back; the link state shows it.
            self.latest.set_problem("notebook", None)
        except Exception as exc:
            log.error("alarm %s not written to the notebook: %s", transition.alarm_id, exc)
            self.latest.set_problem("notebook", f"alarm events not stored: {exc}")

    def on_prediction(self, prediction: Prediction, state: ProcessState) -> None:
        """Sink of the inference worker (runs on its thread): UI state, store, bus."""
        # Imported here: twin.serving pulls in LightGBM, which the UI must not wait for.
        from bptwin.twin.serving import prediction_payload, prediction_readings

        self.latest.set_prediction(prediction)
        if self.history is not None:
            self.history.add_prediction(prediction)
        self.latest.set_problem("model", None)
        for reading in prediction_readings(prediction, prediction.reactor or state.reactor):
            self.recorder.add(reading)
        topic = topics.prediction_topic(prediction.reactor or state.reactor, "od600", self.prefix)
        try:
            self.bus.publish(topic, prediction_payload(prediction), qos=1)
        except Exception as exc:
            log.error("prediction not published: %s", exc)
        if prediction.drift:
            # The drift watch tripped: an alarm asks for a sample (once per batch).
            from bptwin.twin.alarm_rules import EVENT_MODEL_DRIFT

            raised = self.shadow.alarms.feed_event(
                prediction.reactor or state.reactor,
                EVENT_MODEL_DRIFT,
                prediction.timestamp,
                message=f"OD600 model outside what it learnt ({prediction.drift}): take a sample",
            )
            if raised:
                self.publish_transitions(raised)

    def on_prediction_error(self, state: ProcessState, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.prediction_failed()
        self.latest.set_problem("model", f"prediction failed: {exc}")
