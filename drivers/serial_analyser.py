"""Driver for an off-gas O2/CO2 analyser on a serial port (pyserial).

Reads the line protocol of ``docs/serial-protocol.md``; every good ``$OGA`` sentence gives an
``offgas_o2`` and an ``offgas_co2`` reading, every good ``$OGF`` an ``offgas_flow`` reading,
timestamped by the host clock when the line arrived. Garbled lines are counted by reason and
skipped. When the port vanishes (USB adapter pulled, device file gone) the driver closes it
and reopens with exponential backoff, counting each successful reconnect.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import serial

from bptwin.database.backoff import Backoff
from bptwin.database.channels import channel
from bptwin.database.reading import Quality, Reading
from bptwin.drivers.base import Driver, ReadingSink
from bptwin.drivers.serial_protocol import (
    MAX_LINE_BYTES,
    SEQ_MODULUS,
    FlowSentence,
    GasSentence,
    Sentence,
    SerialParseError,
    parse_line,
)

_O2_UNIT = channel("offgas_o2").unit
_CO2_UNIT = channel("offgas_co2").unit
_FLOW_UNIT = channel("offgas_flow").unit


class LineSplitter:
    """Splits a byte stream into lines; a run longer than ``max_bytes`` is cut and marked.

    Returns ``(line, overlong)`` pairs; an overlong line is reported once (without its bytes)
    and everything up to the next newline is dropped.
    """

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        lines: list[tuple[bytes, bool]] = []
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._max_bytes:
                    if not self._discarding:
                        lines.append((bytes(self._buffer[:40]), True))
                    self._discarding = True
                    self._buffer.clear()
                return lines
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            if self._discarding:
                self._discarding = False  # the tail of an overlong line: already counted
                continue
            if len(line) > self._max_bytes:
                lines.append((line[:40], True))
            elif line.strip():
                lines.append((line, False))

    def clear(self) -> None:
        self._buffer.clear()
        self._discarding = False


class SerialAnalyserDriver(Driver):
    """Off-gas analyser on ``port``, e.g. ``/dev/ttyUSB0`` or a ``/dev/serial/by-id/...`` link."""

    def __init__(
        self,
        sink: ReadingSink,
        *,
        port: str,
        reactor: str = "R1",
        baudrate: int = 9600,
        name: str = "offgas-analyser",
        read_timeout_s: float = 0.2,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, reactor, sink)
        self.port = port
        self.baudrate = baudrate
        self.read_timeout_s = read_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._clock = clock
        self._splitter = LineSplitter()
        # Sentences the analyser numbered that never arrived intact (garbled or lost).
        self.missed_sentences = 0
        self._last_seq: int | None = None

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        ever_opened = False
        while not stop.is_set():
            try:
                # exclusive: a second acquisition on the same port would steal half the lines.
                link = serial.Serial(
                    self.port, self.baudrate, timeout=self.read_timeout_s, exclusive=True
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                self._count_error("open", f"cannot open {self.port}: {exc}")
                backoff.wait(stop)
                continue
            self._set_connected(True, reconnect=ever_opened)
            ever_opened = True
            backoff.reset()
            self._splitter.clear()
            self._last_seq = None  # what was sent while the port was away is not "missed"
            try:
                self._read_until_lost(link, stop)
            except (serial.SerialException, OSError) as exc:
                self._count_error("lost", f"port {self.port} lost: {exc}")
            finally:
                self._set_connected(False)
                with contextlib.suppress(OSError):  # closing a vanished device may fail too
                    link.close()
            if not stop.is_set():
                backoff.wait(stop)

    def _read_until_lost(self, link: serial.Serial, stop: threading.Event) -> None:
        while not stop.is_set():
            # in_waiting keeps whole bursts together; read(1) blocks at most read_timeout_s.
            data = link.read(link.in_waiting or 1)
            if not data:
                continue
            arrived_at = self._clock()
            for line, overlong in self._splitter.feed(data):
                if overlong:
                    self._reject("too_long", f"line longer than {MAX_LINE_BYTES} bytes: {line!r}")
                else:
                    self.handle_line(line, arrived_at)

    def handle_line(self, line: bytes, arrived_at: float) -> int:
        """Parse one line and emit its readings; returns how many readings were emitted."""
        try:
            sentence = parse_line(line)
        except SerialParseError as exc:
            self._reject(exc.reason, str(exc))
            return 0
        if self._last_seq is not None:
            self.missed_sentences += (sentence.seq - self._last_seq - 1) % SEQ_MODULUS
        self._last_seq = sentence.seq
        return sum(self._emit(reading) for reading in self.readings_of(sentence, arrived_at))

    def readings_of(self, sentence: Sentence, timestamp: float) -> list[Reading]:
        """The readings one sentence stands for (NaN values when the analyser reports a fault)."""
        quality = sentence.status.quality
        bad = quality is Quality.BAD
        if isinstance(sentence, GasSentence):
            return [
                Reading(
                    timestamp,
                    self.reactor,
                    "offgas_o2",
                    float("nan") if bad else sentence.o2,
                    _O2_UNIT,
                    quality,
                ),
                Reading(
                    timestamp,
                    self.reactor,
                    "offgas_co2",
                    float("nan") if bad else sentence.co2,
                    _CO2_UNIT,
                    quality,
                ),
            ]
        assert isinstance(sentence, FlowSentence)
        value = float("nan") if bad else sentence.flow
        return [Reading(timestamp, self.reactor, "offgas_flow", value, _FLOW_UNIT, quality)]
