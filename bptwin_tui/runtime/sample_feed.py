"""Every offline sample of a reactor's running batch reaches that reactor's adaptation.

The acquiring process (``bptwin run`` or a headless ``bptwin serve``) adapts the OD600
nowcast to the batch's own samples (``Predictor.note_samples``). The notebook is the one
source of those samples, whoever wrote them: the TUI's sample screen, a viewer in another
process, a replay, an API client, a write queued while the database was away. A
:class:`SampleFeed` reads the reactor's running batch's samples from the notebook and hands
them to the predictor:

* at start (samples entered before a restart);
* when told a reactor's samples changed: by this process (the App reloads the batch's samples
  into the trend history after an entry) or by a viewer over the bus, on
  ``<prefix>/v1/<reactor>/notebook/samples`` (docs/mqtt.md). The message is only a hint to
  reload: the values are read from the notebook, so a message from anyone on the broker can
  make the engine re-read, never inject a value;
* every ``SAMPLE_POLL_S`` in any case (a replay's samples, a queued write landing later,
  a writer that says nothing).

No trend history is needed: a headless station keeps none.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bptwin.database.bus import topics

if TYPE_CHECKING:
    from bptwin.database.bus import Bus, Subscription
    from bptwin.eln.services import NotebookService

log = logging.getLogger(__name__)

SAMPLE_POLL_S = 15.0  # the longest a sample waits for the nowcast when nobody says it came
SAMPLES_EVENT = "samples"

SampleSink = Callable[[str, list[float], list[float]], None]
SampleSource = Callable[[str], "tuple[list[float], list[float]] | None"]


def samples_topic(reactor: str, prefix: str = topics.DEFAULT_PREFIX) -> str:
    """``<prefix>/v1/<reactor>/notebook/samples``: the reactor's samples changed, re-read."""
    return f"{topics.reactor_root(reactor, prefix)}/notebook/{SAMPLES_EVENT}"


def samples_hint(count: int) -> bytes:
    """The hint's payload: how many samples the sender sees (informative; the engine
    re-reads the notebook and never takes the payload for values)."""
    return json.dumps({"count": count}).encode()


def running_batch_samples(
    notebook: NotebookService, reactors: list[str]
) -> Callable[[str], tuple[list[float], list[float]] | None]:
    """A source of each reactor's running batch's samples (times in Unix s, OD600); None when
    the reactor runs no batch. Samples without a usable OD600 are left out."""
    from bptwin.tui.runtime.trend_backfill import running_batches, unix_time

    def read(reactor: str) -> tuple[list[float], list[float]] | None:
        batch = running_batches(notebook, reactors).get(reactor)
        if batch is None:
            return None
        times: list[float] = []
        values: list[float] = []
        for sample in notebook.samples.list_samples(batch.number):
            od600 = sample.od600
            if od600 is None or not math.isfinite(od600) or od600 <= 0:
                continue
            times.append(unix_time(sample.taken_at))
            values.append(float(od600))
        return times, values

    return read


class SampleFeed:
    """Reads the samples of the reactors told (or all, at start and every poll) on a thread of
    its own and hands them to ``sink`` (``Predictor.note_samples``: idempotent)."""

    def __init__(
        self,
        source: SampleSource,
        sink: SampleSink,
        reactors: Iterable[str],
        *,
        poll_s: float = SAMPLE_POLL_S,
    ) -> None:
        self.source = source
        self.sink = sink
        self.reactors = list(reactors)
        self.poll_s = poll_s
        self.loads = 0  # reactors read and handed over (tests, diagnostics)
        self.failures = 0
        self.last_problem = ""
        self._pending: set[str] = set(self.reactors)  # everything at start
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def changed(self, reactor: str | None = None) -> None:
        """``reactor``'s samples changed (None: any reactor's); any thread, never blocks."""
        if reactor is not None and reactor not in self.reactors:
            return
        with self._lock:
            self._pending.update(self.reactors if reactor is None else (reactor,))
        self._wake.set()

    def subscribe(self, bus: Bus, prefix: str) -> Subscription:
        """Reload a reactor when a viewer says its samples changed."""
        head = f"{prefix}/{topics.CONTRACT_VERSION}/"

        def on_hint(topic: str, _payload: bytes) -> None:
            reactor = topic[len(head) :].split("/", 1)[0] if topic.startswith(head) else ""
            self.changed(reactor)  # an unknown reactor is ignored

        return bus.subscribe(f"{head}+/notebook/{SAMPLES_EVENT}", on_hint, qos=1)

    def start(self) -> SampleFeed:
        self._thread = threading.Thread(target=self._run, name="sample-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.load_pending()
            if self._wake.wait(self.poll_s):
                self._wake.clear()
            else:
                self.changed()  # the poll: every reactor

    def load_pending(self) -> None:
        """Read and hand over the reactors waiting (the feed's thread; tests call it too)."""
        with self._lock:
            reactors, self._pending = sorted(self._pending), set()
        for reactor in reactors:
            try:
                samples = self.source(reactor)
            except Exception as exc:  # the notebook away or a bad row: try at the next poll
                problem = f"samples of {reactor} not read: {exc}"
                # Said once per outage, not at every poll while the database is away.
                log.log(logging.DEBUG if self.last_problem else logging.WARNING, "%s", problem)
                # The problem before the count: a reader that sees the count sees its reason.
                self.last_problem = problem
                self.failures += 1
                continue
            self.last_problem = ""
            if samples is None:
                continue  # no running batch: the adapter keeps what it had
            self.sink(reactor, *samples)
            self.loads += 1
