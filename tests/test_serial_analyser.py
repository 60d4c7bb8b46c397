"""The serial off-gas analyser driver over a real pseudo-terminal pair."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from bptwin.database.reading import Quality
from bptwin.drivers.base import DriverThread
from bptwin.drivers.serial_analyser import LineSplitter, SerialAnalyserDriver
from bptwin.drivers.serial_emulator import PtyAnalyser
from bptwin.drivers.serial_protocol import Status, frame
from tests.driver_sinks import WAIT_S, Collector, wait_for


@pytest.fixture
def analyser(tmp_path: Path):
    with PtyAnalyser(tmp_path / "analyser") as pty:
        yield pty


def start_driver(port: str, sink: Collector) -> tuple[SerialAnalyserDriver, DriverThread]:
    driver = SerialAnalyserDriver(
        sink, port=port, reactor="R7", read_timeout_s=0.05, backoff_initial_s=0.05
    )
    thread = DriverThread(driver).start()
    wait_for(lambda: driver.stats.connected, "the driver to open the port")
    return driver, thread


def test_only_good_lines_become_readings_and_the_rest_are_counted(analyser: PtyAnalyser) -> None:
    sink = Collector()
    driver, thread = start_driver(analyser.path, sink)
    try:
        good = analyser.send_gas(20.512, 0.734)
        garbled = b"$OGA,1,20.5\x00\xff12,0.7*33\r\n"
        bad_checksum = good.replace(good[-4:-2], b"00" if good[-4:-2] != b"00" else b"11")
        out_of_range = frame(b"OGA,2,20.500,35.000,OK")
        negative_o2 = frame(b"OGA,3,-1.000,0.500,OK")
        unknown = frame(b"XYZ,1,2")
        noise = b"\x07\x08 line noise without end" * 5 + b"\r\n"
        for line in (garbled, bad_checksum, out_of_range, negative_o2, unknown, noise):
            analyser.write(line)
        analyser.send_flow(2.25)
        analyser.send_gas(20.400, 0.800, Status.WARM)
        # Split across writes: the driver must reassemble, not reject, a line in pieces.
        split = frame(b"OGA,99,20.300,0.900,OK")
        analyser.write(split[:10])
        time.sleep(0.1)  # let the driver read the first piece on its own
        analyser.write(split[10:])
        wait_for(lambda: len(sink.snapshot()) >= 7, "seven readings")
        wait_for(lambda: driver.stats.rejected >= 6, "six rejected lines")
    finally:
        assert thread.stop()

    readings = sink.snapshot()
    got = [(r.channel, r.value, r.quality) for r in readings]
    assert got == [
        ("offgas_o2", 20.512, Quality.GOOD),
        ("offgas_co2", 0.734, Quality.GOOD),
        ("offgas_flow", 2.25, Quality.GOOD),
        ("offgas_o2", 20.4, Quality.UNCERTAIN),
        ("offgas_co2", 0.8, Quality.UNCERTAIN),
        ("offgas_o2", 20.3, Quality.GOOD),
        ("offgas_co2", 0.9, Quality.GOOD),
    ]
    assert {r.reactor for r in readings} == {"R7"}
    assert readings[0].unit == "%v/v" and readings[2].unit == "L/min"
    # Host clock at arrival: within the test's lifetime, non-decreasing.
    assert all(abs(r.timestamp - time.time()) < 60 for r in readings)
    assert [r.timestamp for r in readings] == sorted(r.timestamp for r in readings)
    stats = driver.stats
    assert stats.emitted == 7
    assert stats.rejected == 6
    assert dict(stats.rejected_by_reason) == {
        "format": 1,
        "too_long": 1,
        "checksum": 1,
        "range": 2,
        "unknown_sentence": 1,
    }


def test_fault_status_gives_bad_quality_without_a_value(analyser: PtyAnalyser) -> None:
    sink = Collector()
    _driver, thread = start_driver(analyser.path, sink)
    try:
        analyser.send_gas(20.9, 0.04, Status.FLT)
        wait_for(lambda: len(sink.snapshot()) == 2, "two readings")
    finally:
        thread.stop()
    assert all(r.quality is Quality.BAD and math.isnan(r.value) for r in sink.snapshot())


def test_port_vanishing_and_returning_is_a_counted_reconnect(analyser: PtyAnalyser) -> None:
    sink = Collector()
    driver, thread = start_driver(analyser.path, sink)
    try:
        analyser.send_gas(20.0, 1.0)
        wait_for(lambda: len(sink.snapshot()) == 2, "readings before the port vanishes")
        analyser.vanish()
        wait_for(lambda: not driver.stats.connected, "the driver to notice the lost port")
        assert driver.stats.reconnects == 0
        analyser.reopen()
        wait_for(lambda: driver.stats.connected, "the driver to reopen the port")
        analyser.send_gas(19.0, 2.0)
        wait_for(lambda: len(sink.snapshot()) == 4, "readings after the reconnect")
    finally:
        assert thread.stop()
    assert [r.value for r in sink.snapshot()] == [20.0, 1.0, 19.0, 2.0]
    stats = driver.stats
    assert stats.reconnects == 1
    assert stats.errors >= 1  # the lost port, and failed opens while it was gone


def test_missing_port_at_start_is_retried_not_fatal(tmp_path: Path) -> None:
    sink = Collector()
    link = tmp_path / "late-analyser"
    driver = SerialAnalyserDriver(sink, port=str(link), backoff_initial_s=0.02, backoff_max_s=0.05)
    thread = DriverThread(driver).start()
    try:
        wait_for(lambda: driver.stats.errors >= 2, "failed opens to be counted")
        assert thread.is_alive
        with PtyAnalyser(link) as late:
            wait_for(lambda: driver.stats.connected, "the driver to find the port")
            late.send_gas(20.9, 0.04)
            wait_for(lambda: len(sink.snapshot()) == 2, "readings from the late port")
    finally:
        assert thread.stop()
    assert driver.stats.reconnects == 0  # the first successful open is a connect, not a reconnect
    assert thread.failure is None


def test_stop_ends_the_loop_while_the_port_is_silent(analyser: PtyAnalyser) -> None:
    _driver, thread = start_driver(analyser.path, Collector())
    assert thread.stop(timeout=WAIT_S)
    assert not thread.is_alive


def test_line_splitter_cuts_overlong_runs_once() -> None:
    splitter = LineSplitter(max_bytes=20)
    out = splitter.feed(b"x" * 50)
    out += splitter.feed(b"y" * 50 + b"\r\n$OK*00\r\n")
    assert [overlong for _, overlong in out] == [True, False]
    assert out[1][0] == b"$OK*00\r\n"


def test_emulator_fed_by_the_simulator_through_the_pty(analyser: PtyAnalyser) -> None:
    pytest.importorskip("bptwin.twin.simulator")
    import itertools

    from bptwin.drivers.serial_emulator import simulator_values

    values = list(itertools.islice(simulator_values(seed=6), 40))
    sink = Collector()
    driver, thread = start_driver(analyser.path, sink)
    try:
        sent = analyser.run(values, threading.Event(), period_s=0.005, garble_rate=0.2, seed=1)
        analyser.send_gas(1.0, 1.0)  # sentinel: once it is in, every line before it was read
        wait_for(
            lambda: any(r.value == 1.0 for r in sink.snapshot() if r.channel == "offgas_o2"),
            "the sentinel line",
        )
    finally:
        assert thread.stop()
    lines = 2 * sent  # one $OGA and one $OGF per simulated second
    assert sent == 40 and analyser.garbled > 0
    assert driver.stats.rejected == analyser.garbled
    o2_got = [r.value for r in sink.snapshot() if r.channel == "offgas_o2"][:-1]
    flow_got = [r.value for r in sink.snapshot() if r.channel == "offgas_flow"]
    # Every intact line arrived: intact $OGA lines + intact $OGF lines = lines - garbled.
    assert len(o2_got) + len(flow_got) == lines - analyser.garbled
    # ... carrying the simulator's values, in order (garbled seconds are simply missing).
    o2_sent = iter(round(o2, 3) for o2, _co2, _flow in values)
    assert all(any(value == candidate for candidate in o2_sent) for value in o2_got)


def test_emulator_command_line_feeds_the_driver(tmp_path: Path) -> None:
    pytest.importorskip("bptwin.twin.simulator")
    import signal
    import subprocess
    import sys

    link = tmp_path / "demo-analyser"
    command = [sys.executable, "-m", "bptwin.drivers.serial_emulator", "--link", str(link)]
    process = subprocess.Popen(
        [*command, "--speed", "50", "--seed", "2"],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert str(link) in banner
        sink = Collector()
        driver, thread = start_driver(str(link), sink)
        try:
            wait_for(lambda: len(sink.snapshot()) >= 9, "three seconds of analyser lines")
        finally:
            assert thread.stop()
        assert {r.channel for r in sink.snapshot()} == {"offgas_o2", "offgas_co2", "offgas_flow"}
        assert driver.stats.rejected == 0
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_S) == 0
    assert not link.exists()  # the emulator removes its link on the way out


def test_sequence_gaps_count_sentences_that_never_arrived() -> None:
    sink = Collector()
    driver = SerialAnalyserDriver(sink, port="/dev/null")
    for seq in (65533, 65534, 1, 2, 5):  # wraps after 65535; 65535, 0, 3 and 4 are missing
        driver.handle_line(frame(f"OGA,{seq},20.9,0.04,OK".encode()), arrived_at=1.78e9)
    driver.handle_line(frame(b"OGA,6,20.9,0.04,OK")[:-5] + b"00\r\n", arrived_at=1.78e9)
    driver.handle_line(frame(b"OGF,7,2.0,OK"), arrived_at=1.78e9)
    assert driver.missed_sentences == 5  # 65535, 0, 3, 4 and the garbled 6
    assert driver.stats.emitted == 11 and driver.stats.rejected == 1


def test_a_second_driver_cannot_share_the_port(analyser: PtyAnalyser) -> None:
    first_sink, second_sink = Collector(), Collector()
    first, first_thread = start_driver(analyser.path, first_sink)
    second = SerialAnalyserDriver(second_sink, port=analyser.path, backoff_initial_s=0.02)
    second_thread = DriverThread(second).start()
    try:
        wait_for(lambda: second.stats.errors >= 2, "the second driver's refused opens")
        analyser.send_gas(20.1, 0.5)
        wait_for(lambda: len(first_sink.snapshot()) == 2, "the first driver's readings")
        assert not second.stats.connected
    finally:
        assert second_thread.stop() and first_thread.stop()
    assert second_sink.snapshot() == [] and first.stats.emitted == 2
