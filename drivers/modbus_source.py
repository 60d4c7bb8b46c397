"""Modbus source: probes and mass-flow controllers polled over Modbus TCP or RTU (pymodbus).

A source of kind ``modbus`` (docs/drivers.md, "Modbus source") is one link - a TCP endpoint
or a serial line with its devices - and a list of ``registers`` (points), each feeding one
channel of one reactor through a generic map or a probe family's map
(drivers/modbus_registers.py). The driver polls every point once per ``interval_s`` on a fixed
grid of the monotonic clock (a slow answer delays one poll, never the ones after it; a poll
that cannot start in its slot is skipped and counted in ``missed_polls``), stamping readings
with the host clock when the answer arrived.

Counted and shown (``rejected_by_reason``, on the status strip and in ``/metrics``):
``modbus_exception`` (the device answered with an exception code), ``timeout`` (no answer),
``not_finite`` (a float register holding NaN or infinity), ``wrong_unit`` (a probe set to
another unit than the channel's), ``wrong_type``. A lost link is closed and reopened with
back-off (database/backoff.py), each reopening counted in ``reconnects``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from bptwin.database.backoff import Backoff
from bptwin.database.reading import Quality, Reading
from bptwin.drivers.base import ReadingSink
from bptwin.drivers.field_points import (
    PointOptions,
    PointRefused,
    bad_reading,
    point_reading,
    probe_answer,
)
from bptwin.drivers.modbus_registers import (
    HAMILTON_ARC,
    MAX_DEVICE_ID,
    PROBE_MAPS,
    TYPE_LAYOUT,
    ByteOrder,
    ReadRequest,
    RegisterType,
    Span,
    Table,
    decode_hamilton_block,
    decode_registers,
    plan_reads,
)
from bptwin.drivers.sources import (
    PointDriverTiming,
    PointSourceDriver,
    PointSourceKind,
    PointSourceOptions,
    register_kind,
)

if TYPE_CHECKING:
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient
    from typing_extensions import Unpack

# Polls in a row in which no request was answered: the link is dead (a half-open TCP
# connection after a gateway rebooted, a USB-serial adapter pulled out); reopen it.
DEAD_POLLS_BEFORE_RECONNECT = 3
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


# -- settings ------------------------------------------------------------------------------------


class ModbusPoint(PointOptions):
    """One register map entry: a generic map, or a probe family's (``map``)."""

    device_id: int = Field(1, ge=1, le=MAX_DEVICE_ID)
    map: Literal["generic", "hamilton-arc", "hamilton-arc-temperature"] = "generic"
    table: Table = "holding"
    address: int | None = Field(None, ge=0, le=65535)
    type: RegisterType = "float32"
    byte_order: ByteOrder = "big"
    word_order: ByteOrder = "big"

    @model_validator(mode="after")
    def _map_complete(self) -> ModbusPoint:
        layout = {"table", "address", "type", "byte_order", "word_order"}
        if self.map == "generic":
            if self.address is None:
                raise ValueError("a generic register needs its 'address' (0-based, as on the wire)")
            width = TYPE_LAYOUT[self.type][1]
            if self.address + width > 65536:
                raise ValueError(f"a {self.type} at {self.address} runs past register 65535")
            return self
        fixed = sorted(layout & self.model_fields_set)
        if fixed:
            raise ValueError(f"map {self.map!r} fixes the layout; remove {fixed}")
        if self.channel not in HAMILTON_ARC[self.map].unit_codes:
            allowed = ", ".join(HAMILTON_ARC[self.map].unit_codes)
            raise ValueError(f"map {self.map!r} gives {allowed}, not {self.channel}")
        return self

    def span(self, index: int) -> Span:
        if self.map == "generic":
            assert self.address is not None
            return Span(self.device_id, self.table, self.address, TYPE_LAYOUT[self.type][1], index)
        block = HAMILTON_ARC[self.map]
        return Span(self.device_id, block.table, block.start, block.length, index)


class ModbusOptions(PointSourceOptions):
    points_key = "registers"
    kind: Literal["modbus"] = "modbus"
    transport: Literal["tcp", "rtu"] = "tcp"
    # tcp: a device or gateway
    host: str = ""
    port: int = Field(502, ge=1, le=65535)
    # rtu: a serial line (RS-485 adapter) with one or more devices
    serial_port: str = ""
    baudrate: int = Field(19200, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    interval_s: float = Field(1.0, ge=0.05, le=3600, allow_inf_nan=False)
    timeout_s: float = Field(0.5, gt=0, le=30, allow_inf_nan=False)
    registers: list[ModbusPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _link_complete(self) -> ModbusOptions:
        if self.transport == "tcp" and not self.host:
            raise ValueError("transport 'tcp' needs 'host'")
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("transport 'rtu' needs 'serial_port'")
        if self.timeout_s >= self.interval_s:
            raise ValueError(
                f"timeout_s {self.timeout_s} must be shorter than interval_s {self.interval_s}, "
                "or one silent device would stretch every poll"
            )
        return self

    def describe_link(self) -> str:
        if self.transport == "tcp":
            return f"modbus tcp {self.host}:{self.port}"
        return (
            f"modbus rtu {self.serial_port} {self.baudrate} "
            f"{self.bytesize}{self.parity}{self.stopbits}"
        )


# -- polling ---------------------------------------------------------------------------------------


class PollSchedule:
    """Poll instants on a fixed grid ``start + k * interval`` of a monotonic clock.

    :meth:`delay` says how long to wait for the next slot; a slot already past by more than
    one interval is skipped and counted in :attr:`missed` (the grid never shifts, so polls
    do not drift however long each one takes).
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next: float | None = None
        self.missed = 0

    def delay(self) -> float:
        now = self._clock()
        if self._next is None:
            self._next = now
        late = now - self._next
        if late > self.interval_s:
            skipped = math.floor(late / self.interval_s)
            self._next += skipped * self.interval_s
            self.missed += skipped
        wait = max(0.0, self._next - now)
        self._next += self.interval_s
        return wait

    def restart(self) -> None:
        """A new grid from the next call (after a reconnect)."""
        self._next = None


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll gave: readings emitted, requests that failed and how."""

    emitted: int
    timeouts: int
    requests: int


class ModbusSourceDriver(PointSourceDriver):
    """Polls the registers of one Modbus link (a TCP endpoint or a serial line)."""

    def __init__(
        self,
        sink: ReadingSink,
        options: ModbusOptions,
        *,
        name: str = "modbus",
        monotonic: Callable[[], float] = time.monotonic,
        **timing: Unpack[PointDriverTiming],
    ) -> None:
        super().__init__(sink, options, name=name, **timing)
        self.options = options
        self.schedule = PollSchedule(options.interval_s, monotonic)
        self.points = list(options.registers)
        self.requests = plan_reads([p.span(i) for i, p in enumerate(self.points)])
        self.polls = 0
        # The latest problem of each point that failed its last poll ("R1/ph" -> why).
        self.point_problems: dict[str, str] = {}

    @property
    def missed_polls(self) -> int:
        """Poll slots skipped because the previous poll (or a reconnect) ran past them."""
        return self.schedule.missed

    def make_client(self) -> ModbusTcpClient | ModbusSerialClient:
        """A pymodbus client for the link; no retries (each miss is counted, 1 Hz is kept)."""
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient

        options = self.options
        if options.transport == "tcp":
            return ModbusTcpClient(
                options.host, port=options.port, timeout=options.timeout_s, retries=0
            )
        return ModbusSerialClient(
            options.serial_port,
            baudrate=options.baudrate,
            bytesize=options.bytesize,
            parity=options.parity,
            stopbits=options.stopbits,
            timeout=options.timeout_s,
            retries=0,
        )

    def run(self, stop: threading.Event) -> None:
        # pymodbus logs every missing answer at ERROR; the driver counts them and logs at a
        # rate limit instead, naming the source and the request.
        logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        ever_connected = False
        while not stop.is_set():
            client = self.make_client()
            try:
                connected = bool(client.connect())
            except Exception as exc:  # a serial port that vanished raises from pyserial
                connected = False
                self._count_error("connect", f"{self.options.describe_link()}: {exc}")
            if not connected:
                self._count_error("connect", f"cannot reach {self.options.describe_link()}")
                _close(client)
                backoff.wait(stop)
                continue
            self._set_connected(True, reconnect=ever_connected)
            ever_connected = True
            backoff.reset()
            try:
                self._poll_until_lost(client, stop)
            finally:
                self._set_connected(False)
                _close(client)
            if not stop.is_set():
                backoff.wait(stop)

    def _poll_until_lost(
        self, client: ModbusTcpClient | ModbusSerialClient, stop: threading.Event
    ) -> None:
        from pymodbus.exceptions import ConnectionException

        self.schedule.restart()
        dead_polls = 0
        while not stop.wait(self.schedule.delay()):
            try:
                outcome = self.poll_once(client)
            except (ConnectionException, OSError) as exc:
                self._count_error("lost", f"{self.options.describe_link()} lost: {exc}")
                return
            everything_timed_out = outcome.requests > 0 and outcome.timeouts == outcome.requests
            dead_polls = dead_polls + 1 if everything_timed_out else 0
            if dead_polls >= DEAD_POLLS_BEFORE_RECONNECT:
                self._count_error(
                    "silent",
                    f"{self.options.describe_link()}: no answer to {dead_polls} polls; reopening",
                )
                return

    def poll_once(self, client: ModbusTcpClient | ModbusSerialClient) -> PollOutcome:
        """Send every request once and emit what came back; ConnectionException when lost."""
        from pymodbus.exceptions import ConnectionException, ModbusIOException

        self.polls += 1
        emitted = timeouts = 0
        for request in self.requests:
            try:
                registers = self._read(client, request)
            except ConnectionException:
                raise
            except ModbusIOException as exc:
                timeouts += 1
                self._refuse_request(request, "timeout", f"no answer: {exc}")
                self._drop_late_answers(client)
                continue
            if registers is None:
                continue
            arrived_at = self._clock()
            for span in request.spans:
                emitted += self._emit_point(span, request.words_of(span, registers), arrived_at)
        return PollOutcome(emitted, timeouts, len(self.requests))

    def _drop_late_answers(self, client: ModbusTcpClient | ModbusSerialClient) -> None:
        """After a timeout, an answer may still come: it must not be taken for the next one.

        TCP: close the socket (the next request opens a fresh one, the late answer dies with
        the old). RTU frames carry no transaction id: empty the receive buffer.
        """
        if self.options.transport == "tcp":
            _close(client)
            return
        port: Any = getattr(client, "socket", None)
        with contextlib.suppress(Exception):
            if port is not None:
                port.reset_input_buffer()

    def _read(
        self, client: ModbusTcpClient | ModbusSerialClient, request: ReadRequest
    ) -> list[int] | None:
        """The registers of ``request``, or None when the device answered with an exception."""
        read = (
            client.read_holding_registers
            if request.table == "holding"
            else client.read_input_registers
        )
        response = read(request.address, count=request.count, device_id=request.device_id)
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            name = EXCEPTION_NAMES.get(code, "unknown")
            self._refuse_request(request, "modbus_exception", f"exception {code} ({name})")
            return None
        registers = list(getattr(response, "registers", []) or [])
        if len(registers) < request.count:
            self._refuse_request(
                request, "wrong_type", f"{len(registers)} registers for {request.count} asked"
            )
            return None
        return registers

    def _refuse_request(self, request: ReadRequest, reason: str, detail: str) -> None:
        """Count a failed request once per point it carried (each is a missing reading)."""
        channels = ", ".join(self._point_label(s.index) for s in request.spans)
        for span in request.spans:
            self.point_problems[self._point_label(span.index)] = f"{request.describe()}: {detail}"
            self._reject(reason, f"{request.describe()} ({channels}): {detail}")

    def _point_label(self, index: int) -> str:
        return self._label(index, self.points[index].channel)

    def _emit_point(self, span: Span, words: Sequence[int], arrived_at: float) -> int:
        point = self.points[span.index]
        reactor = self._reactors[span.index]
        try:
            reading = self._decode(point, reactor, words, arrived_at)
        except PointRefused as exc:
            self.point_problems[self._point_label(span.index)] = f"device {point.device_id}: {exc}"
            self._reject(exc.reason, f"{reactor}/{point.channel} device {point.device_id}: {exc}")
            return 0
        self.point_problems.pop(self._point_label(span.index), None)
        return int(self._emit(reading))

    def _decode(
        self, point: ModbusPoint, reactor: str, words: Sequence[int], arrived_at: float
    ) -> Reading:
        if point.map == "generic":
            raw = decode_registers(words, point.type, point.byte_order, point.word_order)
            return point_reading(point, reactor, arrived_at, raw)
        probe = decode_hamilton_block(words, point.channel, point.map)
        if probe.quality is Quality.BAD:
            return bad_reading(point, reactor, arrived_at)
        return point_reading(point, reactor, arrived_at, probe.value, probe.quality)


class ModbusKind(PointSourceKind):
    name = "modbus"
    options_model = ModbusOptions
    driver_class = ModbusSourceDriver


register_kind(ModbusKind())


def probe_modbus(options: ModbusOptions, name: str = "modbus") -> tuple[bool, str]:
    """One poll of every register (``bptwin doctor``): reachable, and what each point says."""
    readings: list[Reading] = []
    driver = ModbusSourceDriver(readings.append, options, name=name)
    logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)
    client = driver.make_client()
    try:
        if not client.connect():
            return False, f"cannot reach {options.describe_link()}"
        driver.poll_once(client)
    except Exception as exc:  # a vanished port, a refused connection: the doctor says why
        return False, f"{options.describe_link()}: {exc}"
    finally:
        _close(client)
    problems = dict(sorted(driver.point_problems.items()))
    return probe_answer(
        options.describe_link(), readings, len(driver.points), "registers", problems
    )


def _close(client: ModbusTcpClient | ModbusSerialClient) -> None:
    """Close the link (pymodbus leaves ``close`` untyped)."""
    closer: Any = client
    closer.close()


__all__ = [
    "PROBE_MAPS",
    "ModbusKind",
    "ModbusOptions",
    "ModbusPoint",
    "ModbusSourceDriver",
    "PollSchedule",
    "probe_modbus",
]
