"""The reading pipeline: every reading, from a local driver or from the bus, to where it goes.

``drivers -> admission -> record (live values, metrics, history, recorder -> store, shadow) ->
bus``; readings that sensors publish on the broker themselves come in through
:meth:`ReadingPipeline.from_bus`. Both are admitted before they get here (the runtime's intake,
drivers/intake.py: clock skew, unknown reactors and channels, one owner per channel).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bptwin.database.reading import Reading

if TYPE_CHECKING:
    from bptwin.tui.runtime.wiring import Runtime

log = logging.getLogger(__name__)


class ReadingPipeline:
    """Routes readings through a runtime's parts; attached once the runtime is built."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    def attach(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def from_driver(self, reading: Reading) -> None:
        """Sink of the local drivers (admitted already): recorded here, then published.

        Recording does not wait for the broker's echo, so acquisition, the shadow and the
        store go on while the broker is away; the publish waits in the bus outbox.
        """
        runtime = self.runtime
        if runtime is None:
            return
        self.record(reading)
        try:
            runtime.bus.publish_reading(reading, prefix=runtime.settings.bus.prefix)
        except Exception as exc:  # recorded already: a failed publish costs only the viewers
            log.error("reading %s/%s not published: %s", reading.reactor, reading.channel, exc)

    def from_bus(self, reading: Reading) -> None:
        """Admitted readings of sources that publish bptwin's topics themselves.

        The intake's gate dropped this station's own echo and any channel a local source owns.

        Written to the store before the handler returns, i.e. before the bus acknowledges
        the message to the broker: an acknowledged reading is on disk, even after SIGKILL.
        """
        if self.runtime is None:
            return
        self.record(reading, durable=True)

    def record(self, reading: Reading, *, durable: bool = False) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        runtime.latest.add(reading)
        runtime.metrics.reading_received(reading)
        if runtime.history is not None:
            runtime.history.add_reading(reading)
        if durable:
            from bptwin.database.timeseries import TimeSeriesError

            try:
                runtime.store.write([reading])
            except TimeSeriesError as exc:  # the recorder keeps it in memory and retries
                log.error(
                    "reading %s/%s not stored at once: %s", reading.reactor, reading.channel, exc
                )
                runtime.recorder.add(reading)
        else:
            runtime.recorder.add(reading)
        runtime.shadow_worker.submit(reading)
