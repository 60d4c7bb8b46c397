"""The Modbus source: register decoding, the Hamilton ARC map, polling on a grid, and a real
pymodbus server over TCP and over a pseudo-terminal pair (RTU)."""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bptwin.database.reading import Quality
from bptwin.drivers.base import DriverThread
from bptwin.drivers.field_points import PointRefused
from bptwin.drivers.modbus_registers import (
    Span,
    decode_hamilton_block,
    decode_registers,
    encode_registers,
    hamilton_block_words,
    plan_reads,
)
from bptwin.drivers.modbus_source import ModbusOptions, ModbusSourceDriver, PollSchedule
from bptwin.drivers.sources import DriverConfigError, plan_sources
from tests.driver_sinks import Collector, wait_for
from tests.fixtures.modbus_server import ModbusDevices
from tests.fixtures.pty_pair import PtyPair


def options(**values: Any) -> ModbusOptions:
    base: dict[str, Any] = {"name": "probes", "host": "127.0.0.1", "reactors": ["R1"]}
    return ModbusOptions.model_validate(base | values)


# -- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("byte_order", "word_order", "words"),
    [
        ("big", "big", [0x47F1, 0x2000]),  # ABCD, the Modbus convention
        ("big", "little", [0x2000, 0x47F1]),  # CDAB, low word first (Hamilton, many PLCs)
        ("little", "big", [0xF147, 0x0020]),  # BADC
        ("little", "little", [0x0020, 0xF147]),  # DCBA
    ],
)
def test_a_float_decodes_in_each_of_the_four_byte_and_word_orders(
    byte_order: Any, word_order: Any, words: list[int]
) -> None:
    assert decode_registers(words, "float32", byte_order, word_order) == 123456.0
    assert encode_registers(123456.0, "float32", byte_order, word_order) == words


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int16", -12345),
        ("uint16", 54321),
        ("int32", -7_000_000),
        ("uint32", 4_000_000_000),
        ("int64", -(2**40)),
        ("uint64", 2**60),
        ("float64", 0.1 + 0.2),
    ],
)
def test_every_register_type_round_trips(kind: str, value: float) -> None:
    for byte_order in ("big", "little"):
        for word_order in ("big", "little"):
            words = encode_registers(value, kind, byte_order, word_order)  # type: ignore[arg-type]
            assert decode_registers(words, kind, byte_order, word_order) == value  # type: ignore[arg-type]


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf])
def test_a_float_register_holding_nan_or_infinity_is_refused(special: float) -> None:
    words = list(struct.unpack(">HH", struct.pack(">f", special)))
    with pytest.raises(PointRefused) as refused:
        decode_registers(words, "float32", "big", "big")
    assert refused.value.reason == "not_finite"


def test_hamilton_block_value_status_and_unit() -> None:
    good = decode_hamilton_block(hamilton_block_words(6.93, "ph"), "ph", "hamilton-arc")
    assert good.quality is Quality.GOOD and good.value == pytest.approx(6.93, abs=1e-5)
    calibration_due = hamilton_block_words(6.93, "ph", status=0x04)
    assert decode_hamilton_block(calibration_due, "ph", "hamilton-arc").quality is Quality.UNCERTAIN
    sensor_error = hamilton_block_words(6.93, "ph", status=0x10)
    assert decode_hamilton_block(sensor_error, "ph", "hamilton-arc").quality is Quality.BAD
    beyond_its_range = hamilton_block_words(15.2, "ph", low=0.0, high=14.0)
    assert decode_hamilton_block(beyond_its_range, "ph", "hamilton-arc").quality is Quality.BAD
    # A DO probe set to mg/L (0x80) must not be stored as %sat.
    with pytest.raises(PointRefused) as refused:
        decode_hamilton_block(hamilton_block_words(8.1, "do", unit=0x80), "do", "hamilton-arc")
    assert refused.value.reason == "wrong_unit"


def test_contiguous_registers_share_one_request_and_gaps_do_not() -> None:
    spans = [
        Span(1, "holding", 0, 2, 0),
        Span(1, "holding", 2, 2, 1),
        Span(1, "holding", 4, 1, 2),
        Span(1, "holding", 10, 2, 3),  # a gap: its own request
        Span(1, "input", 0, 2, 4),  # another table
        Span(2, "holding", 0, 2, 5),  # another device
    ]
    requests = plan_reads(spans)
    assert [(r.device_id, r.table, r.address, r.count) for r in requests] == [
        (1, "holding", 0, 5),
        (1, "holding", 10, 2),
        (1, "input", 0, 2),
        (2, "holding", 0, 2),
    ]
    assert [s.index for s in requests[0].spans] == [0, 1, 2]
    assert len(plan_reads([Span(1, "holding", a, 2, a) for a in range(0, 400, 2)])) == 4  # <= 125


def test_the_poll_grid_does_not_drift_and_counts_what_it_skips() -> None:
    now = [100.0]
    schedule = PollSchedule(1.0, clock=lambda: now[0])
    assert schedule.delay() == 0.0  # the first poll at once
    now[0] += 0.3  # the poll took 0.3 s: wait the rest of the second, not another second
    assert schedule.delay() == pytest.approx(0.7)
    now[0] = 102.0 + 0.05
    assert schedule.delay() == 0.0  # slightly late: poll now, the grid stays at 103
    now[0] = 102.4
    assert schedule.delay() == pytest.approx(0.6)
    now[0] = 106.5  # stalled for 3.5 s: 104 and 105 are skipped, 106 runs late
    assert schedule.delay() == 0.0
    assert schedule.missed == 2
    now[0] = 106.6
    assert schedule.delay() == pytest.approx(0.4)


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"registers": [{"channel": "ph", "type": "float32"}]}, "needs its 'address'"),
        (
            {"registers": [{"channel": "ph", "map": "hamilton-arc", "address": 5}]},
            "fixes the layout",
        ),
        ({"registers": [{"channel": "air_flow", "map": "hamilton-arc"}]}, "gives ph, do"),
        ({"registers": [{"channel": "pH", "address": 0}]}, "unknown channel"),
        (
            {"interval_s": 1.0, "timeout_s": 2.0, "registers": [{"channel": "ph", "address": 0}]},
            "must be shorter than interval_s",
        ),
        ({"host": "", "registers": [{"channel": "ph", "address": 0}]}, "needs 'host'"),
        (
            {"reactors": ["R1", "R2"], "registers": [{"channel": "ph", "address": 0}]},
            "give it a 'reactor'",
        ),
        ({"registers": [{"channel": "ph", "address": 0, "unit": "mV"}]}, None),
    ],
)
def test_register_settings_that_cannot_work_are_refused_by_name(
    values: dict[str, Any], message: str | None
) -> None:
    if message is None:  # refused when the source is planned (the unit is checked there)
        with pytest.raises(DriverConfigError, match="is stored in 'pH'"):
            plan_sources(
                [{"name": "p", "kind": "modbus", "host": "h", "reactors": ["R1"], **values}],
                reactors=["R1"],
                bus_is_mqtt=False,
            )
        return
    with pytest.raises(ValueError, match=message):
        options(**values)


def test_a_source_owns_exactly_the_channels_its_registers_feed() -> None:
    plan = plan_sources(
        [
            {
                "name": "probes",
                "kind": "modbus",
                "host": "10.0.0.7",
                "registers": [
                    {"channel": "ph", "reactor": "R1", "map": "hamilton-arc", "device_id": 1},
                    {"channel": "do", "reactor": "R1", "map": "hamilton-arc", "device_id": 2},
                    {"channel": "ph", "reactor": "R2", "map": "hamilton-arc", "device_id": 3},
                    {"channel": "do", "reactor": "R2", "map": "hamilton-arc", "device_id": 4},
                ],
            },
            {"name": "rest", "kind": "simulated"},
        ],
        reactors=["R1", "R2", "R3"],
        bus_is_mqtt=False,
    )
    owners = plan.owners
    assert owners[("R1", "ph")] == owners[("R2", "do")] == "probes"
    assert owners[("R3", "ph")] == "rest"  # the source named R1 and R2 only
    with pytest.raises(DriverConfigError, match="no point reads do of R2"):
        plan_sources(
            [
                {
                    "name": "probes",
                    "kind": "modbus",
                    "host": "h",
                    "registers": [
                        {"channel": "ph", "reactor": "R1", "address": 0},
                        {"channel": "do", "reactor": "R1", "address": 2},
                        {"channel": "ph", "reactor": "R2", "address": 4},
                    ],
                }
            ],
            reactors=["R1", "R2"],
            bus_is_mqtt=False,
        )


# -- against a real server ---------------------------------------------------------------------


@pytest.fixture
def devices() -> Iterator[ModbusDevices]:
    served = ModbusDevices((1, 2, 5)).serve_tcp()
    try:
        yield served
    finally:
        served.close()


def lab_registers() -> list[dict[str, Any]]:
    return [
        {"channel": "ph", "map": "hamilton-arc", "device_id": 1},
        {"channel": "temp_ph_probe", "map": "hamilton-arc-temperature", "device_id": 1},
        {"channel": "do", "map": "hamilton-arc", "device_id": 2},
        # A mass-flow controller: input registers, float low word first, in mL/min.
        {
            "channel": "air_flow",
            "device_id": 5,
            "table": "input",
            "address": 0,
            "word_order": "little",
            "scale": 0.001,
            "unit": "L/min",
        },
        {
            "channel": "stirrer_speed",
            "device_id": 5,
            "table": "holding",
            "address": 10,
            "type": "uint16",
        },
    ]


def test_probes_and_a_flow_controller_over_tcp_become_readings(devices: ModbusDevices) -> None:
    devices.set_hamilton(1, "ph", 6.95)
    devices.set_hamilton_temperature(1, 30.2)
    devices.set_hamilton(2, "do", 87.5, status=0x08)  # a warning: uncertain
    devices.set_value(5, "input", 0, 1250.0, word_order="little")
    devices.set_words(5, "holding", 10, [812])
    sink = Collector()
    driver = ModbusSourceDriver(
        sink,
        options(port=devices.port, interval_s=0.2, timeout_s=0.15, registers=lab_registers()),
    )
    assert len(driver.requests) == 5  # two Hamilton blocks, one probe, the MFC in two tables
    with DriverThread(driver):
        wait_for(
            lambda: all(sink.of(c) for c in ("ph", "do", "air_flow", "stirrer_speed")), "readings"
        )
    ph, do = sink.of("ph")[0], sink.of("do")[0]
    assert (ph.reactor, ph.unit, ph.quality) == ("R1", "pH", Quality.GOOD)
    assert ph.value == pytest.approx(6.95, abs=1e-5)
    assert do.quality is Quality.UNCERTAIN and do.value == pytest.approx(87.5)
    assert sink.of("temp_ph_probe")[0].value == pytest.approx(30.2, abs=1e-4)
    assert sink.of("air_flow")[0].value == pytest.approx(1.25)
    assert sink.of("stirrer_speed")[0].value == 812.0
    assert driver.stats.rejected == 0
    assert abs(ph.timestamp - time.time()) < 60  # stamped by the host clock at the answer


def test_exception_answers_and_timeouts_are_counted_per_reading_they_cost(
    devices: ModbusDevices,
) -> None:
    devices.set_hamilton(1, "ph", 7.0)
    registers = [
        {"channel": "ph", "map": "hamilton-arc", "device_id": 1},
        {"channel": "do", "device_id": 2, "address": 0},
        # Runs past the device's memory (asked before the slow device 2, which holds the line).
        {"channel": "air_flow", "device_id": 1, "address": 2999},
    ]
    devices.delay_s[2] = 0.2  # device 2 answers after the driver gave up (0.1 s)
    sink = Collector()
    driver = ModbusSourceDriver(
        sink, options(port=devices.port, interval_s=0.5, timeout_s=0.1, registers=registers)
    )
    with DriverThread(driver):
        wait_for(
            lambda: {"timeout", "modbus_exception"} <= set(driver.stats.rejected_by_reason),
            "a timeout and an exception",
        )
        wait_for(lambda: len(sink.of("ph")) >= 2, "pH goes on meanwhile")
    assert not sink.of("do") and not sink.of("air_flow")  # nothing stored as if it were right
    assert driver.stats.connected is False


def test_the_grid_holds_when_each_poll_takes_a_third_of_the_interval(
    devices: ModbusDevices,
) -> None:
    """A loop that slept a full interval after each poll would fall behind by the poll's time."""
    devices.set_hamilton(1, "ph", 7.0)
    devices.delay_s[1] = 0.15
    sink = Collector()
    driver = ModbusSourceDriver(
        sink,
        options(
            port=devices.port,
            interval_s=0.5,
            timeout_s=0.4,
            registers=[{"channel": "ph", "map": "hamilton-arc", "device_id": 1}],
        ),
    )
    with DriverThread(driver):
        wait_for(lambda: len(sink.of("ph")) >= 1, "the first reading")
        first = sink.of("ph")[0].timestamp
        wait_for(lambda: len(sink.of("ph")) >= 9, "nine readings")
        elapsed = time.time() - first
        slots = driver.polls + driver.missed_polls
    # Polls plus skipped slots follow the wall clock at one per interval (a drifting loop
    # would have made about 0.5 / 0.65 as many).
    assert abs(slots - 1 - elapsed / 0.5) <= 1.5, (slots, elapsed)


def test_a_server_that_goes_away_and_comes_back_is_reconnected(devices: ModbusDevices) -> None:
    devices.set_hamilton(1, "ph", 7.0)
    sink = Collector()
    driver = ModbusSourceDriver(
        sink,
        options(
            port=devices.port,
            interval_s=0.2,
            timeout_s=0.1,
            registers=[{"channel": "ph", "map": "hamilton-arc", "device_id": 1}],
        ),
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    with DriverThread(driver):
        wait_for(lambda: driver.stats.connected and sink.of("ph"), "the first reading")
        devices.stop()
        wait_for(lambda: not driver.stats.connected, "the driver to notice")
        before = len(sink.of("ph"))
        devices.set_hamilton(1, "ph", 6.5)
        devices.serve_tcp(devices.port)
        wait_for(lambda: driver.stats.reconnects >= 1, "a reconnect")
        wait_for(lambda: len(sink.of("ph")) > before, "readings again")
    assert sink.of("ph")[-1].value == pytest.approx(6.5)
    assert driver.stats.errors >= 1  # the loss and the failed attempts, counted


def test_probes_on_an_rtu_line_over_a_pseudo_terminal_pair() -> None:
    with PtyPair() as cable:
        devices = ModbusDevices((1, 2)).serve_rtu(cable.a, stopbits=2)
        try:
            devices.set_hamilton(1, "ph", 6.8)
            devices.set_hamilton(2, "do", 40.0)
            sink = Collector()
            driver = ModbusSourceDriver(
                sink,
                ModbusOptions.model_validate(
                    {
                        "name": "rs485",
                        "transport": "rtu",
                        "serial_port": cable.b,
                        "baudrate": 19200,
                        "stopbits": 2,
                        "interval_s": 0.3,
                        "timeout_s": 0.2,
                        "reactors": ["R1"],
                        "registers": [
                            {"channel": "ph", "map": "hamilton-arc", "device_id": 1},
                            {"channel": "do", "map": "hamilton-arc", "device_id": 2},
                            {"channel": "air_flow", "device_id": 7, "address": 0},  # nobody
                        ],
                    }
                ),
            )
            with DriverThread(driver):
                wait_for(lambda: sink.of("ph") and sink.of("do"), "pH and DO over RTU")
                wait_for(
                    lambda: sum(driver.stats.rejected_by_reason.values()) >= 1,
                    "the absent device counted",
                )
            assert sink.of("ph")[0].value == pytest.approx(6.8, abs=1e-5)
            assert sink.of("do")[0].value == pytest.approx(40.0)
            assert not sink.of("air_flow")
        finally:
            devices.close()
