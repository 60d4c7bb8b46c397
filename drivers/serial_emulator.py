"""A pretend off-gas analyser: writes the serial protocol into a pseudo-terminal.

The driver opens :attr:`PtyAnalyser.port` exactly as it would open ``/dev/ttyUSB0``. Used by the
tests (exact lines, garbled lines, a port that vanishes) and for demos::

    python -m bptwin.drivers.serial_emulator --link /tmp/bptwin-analyser --speed 60

then point ``[drivers.serial] port`` at ``/tmp/bptwin-analyser``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import math
import os
import random
import signal
import threading
import tty
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bptwin.drivers.serial_protocol import (
    CO2_RANGE,
    FLOW_RANGE,
    O2_RANGE,
    SEQ_MODULUS,
    FlowSentence,
    GasSentence,
    Sentence,
    Status,
    format_sentence,
)

if TYPE_CHECKING:
    from bptwin.twin.sim_config import SimulationConfig

# (o2 %v/v, co2 %v/v, outlet flow L/min or None)
AnalyserValues = tuple[float, float, float | None]


class PtyAnalyser:
    """The analyser's end of a pseudo-terminal pair; ``port`` is the path a driver opens.

    With ``link`` the port is also reachable through that symlink, which survives
    :meth:`reopen` - the way ``/dev/serial/by-id/...`` survives unplugging a USB adapter.
    """

    def __init__(self, link: str | Path | None = None) -> None:
        self.link = Path(link) if link is not None else None
        self._seq = 0
        self.garbled = 0  # lines deliberately broken by run(garble_rate=...)
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw mode so that \r is not turned into \n before a driver configures the port;
        # the slave stays open here to keep that setting.
        tty.setraw(self._slave)
        flags = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.port = os.ttyname(self._slave)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            self.link.symlink_to(self.port)

    @property
    def path(self) -> str:
        """The symlink when there is one, else the pty's own path."""
        return str(self.link) if self.link is not None else self.port

    def write(self, data: bytes) -> int:
        """Write raw bytes; like a real UART, bytes nobody reads are dropped, never block."""
        with self._lock:
            try:
                return os.write(self._master, data)
            except (BlockingIOError, OSError):
                return 0

    def send(self, sentence: Sentence) -> bytes:
        line = format_sentence(sentence)
        self.write(line)
        return line

    def next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % SEQ_MODULUS
        return seq

    def send_gas(self, o2: float, co2: float, status: Status = Status.OK) -> bytes:
        return self.send(GasSentence(self.next_seq(), o2, co2, status))

    def send_flow(self, flow: float, status: Status = Status.OK) -> bytes:
        return self.send(FlowSentence(self.next_seq(), flow, status))

    def gas_sentence(self, o2: float, co2: float) -> GasSentence:
        """What the instrument reports for these values: clamped to its range, FLT for NaN."""
        if math.isnan(o2) or math.isnan(co2):
            return GasSentence(self.next_seq(), 0.0, 0.0, Status.FLT)
        return GasSentence(self.next_seq(), _clamp(o2, O2_RANGE), _clamp(co2, CO2_RANGE), Status.OK)

    def flow_sentence(self, flow: float) -> FlowSentence:
        if math.isnan(flow):
            return FlowSentence(self.next_seq(), 0.0, Status.FLT)
        return FlowSentence(self.next_seq(), _clamp(flow, FLOW_RANGE), Status.OK)

    def vanish(self) -> None:
        """Pull the plug: close both ends and remove the symlink; the driver's reads fail."""
        with self._lock:
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._master = self._slave = -1
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def reopen(self) -> None:
        """Plug back in: a new pty pair behind the same symlink."""
        with self._lock:
            self._open()

    def close(self) -> None:
        self.vanish()

    def __enter__(self) -> PtyAnalyser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self,
        values: Iterable[AnalyserValues],
        stop: threading.Event,
        *,
        period_s: float = 1.0,
        garble_rate: float = 0.0,
        seed: int = 0,
    ) -> int:
        """Send one ``$OGA`` (and ``$OGF`` when flow is given) per value every ``period_s``.

        ``garble_rate`` is the fraction of lines sent with one flipped byte, for demos of
        the driver's error counting. Returns the number of value sets sent.
        """
        rng = random.Random(seed)
        sent = 0
        for o2, co2, flow in values:
            if stop.is_set():
                break
            lines = [format_sentence(self.gas_sentence(o2, co2))]
            if flow is not None:
                lines.append(format_sentence(self.flow_sentence(flow)))
            for line in lines:
                if rng.random() < garble_rate:
                    line = _garble(line, rng)
                    self.garbled += 1
                self.write(line)
            sent += 1
            if period_s > 0 and stop.wait(period_s):
                break
        return sent


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    # Round first: a value that rounds up past the range end would be refused by the driver.
    return min(max(round(value, 3), bounds[0]), bounds[1])


def _garble(line: bytes, rng: random.Random) -> bytes:
    position = rng.randrange(1, len(line) - 2)
    return line[:position] + bytes([line[position] ^ 0x04]) + line[position + 1 :]


def simulator_values(
    seed: int = 0, config: SimulationConfig | None = None
) -> Iterator[AnalyserValues]:
    """Off-gas values of a simulated batch, one per simulated second (needs twin.simulator)."""
    from bptwin.drivers.simulated import simulator_channel_values

    for values in simulator_channel_values(seed=seed, config=config):
        o2, co2 = values.get("offgas_o2"), values.get("offgas_co2")
        if o2 is None or co2 is None:
            continue
        yield o2, co2, values.get("offgas_flow")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Emulate the off-gas analyser on a pty.")
    parser.add_argument("--link", default="/tmp/bptwin-analyser", help="symlink to the pty")
    parser.add_argument("--seed", type=int, default=0, help="simulated batch seed")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument("--garble-rate", type=float, default=0.0, help="fraction of bad lines")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with PtyAnalyser(args.link) as analyser:
        print(f"analyser on {analyser.port} (link {analyser.path}); Ctrl-C to stop", flush=True)
        period = 1.0 / args.speed if args.speed > 0 else 0.0
        try:
            analyser.run(
                simulator_values(args.seed), stop, period_s=period, garble_rate=args.garble_rate
            )
        except KeyboardInterrupt:
            stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
