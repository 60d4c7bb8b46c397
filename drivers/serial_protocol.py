"""The off-gas analyser's line protocol: parse and format NMEA-style ASCII sentences.

Specified in ``docs/serial-protocol.md``. Two sentences, one per line, ``\\r\\n`` terminated::

    $OGA,<seq>,<o2 %v/v>,<co2 %v/v>,<status>*<checksum>
    $OGF,<seq>,<outlet flow L/min>,<status>*<checksum>

``checksum`` is the XOR of every byte between ``$`` and ``*``, as two hex digits.
:func:`parse_line` either returns a sentence or raises :class:`SerialParseError`, whatever
bytes it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from bptwin.database.reading import Quality

MAX_LINE_BYTES = 82  # NMEA 0183's limit, including "$" and "\r\n"
SEQ_MODULUS = 65536

# The analyser's measuring ranges (docs/serial-protocol.md). A value outside them that
# passed the checksum is still wrong, so the whole sentence is refused.
O2_RANGE = (0.0, 100.0)
CO2_RANGE = (0.0, 20.0)
FLOW_RANGE = (0.0, 15.0)

_NUMBER = r"-?\d{1,3}(?:\.\d{1,4})?"
_FRAME = re.compile(rb"\$([A-Z0-9,.\-]{1,76})\*([0-9A-Fa-f]{2})")
_GAS = re.compile(rf"OGA,(\d{{1,5}}),({_NUMBER}),({_NUMBER}),([A-Z]{{2,4}})")
_FLOW = re.compile(rf"OGF,(\d{{1,5}}),({_NUMBER}),([A-Z]{{2,4}})")


class Status(str, Enum):
    """The analyser's own state word, and what it means for the readings."""

    OK = "OK"  # measuring
    WARM = "WARM"  # warming up: values drift until the cell is at temperature
    CAL = "CAL"  # zero/span gas on the cell: values are calibration gas, not off-gas
    FLT = "FLT"  # cell or pump fault: values are meaningless

    @property
    def quality(self) -> Quality:
        return {
            Status.OK: Quality.GOOD,
            Status.WARM: Quality.UNCERTAIN,
            Status.CAL: Quality.UNCERTAIN,
            Status.FLT: Quality.BAD,
        }[self]


class SerialParseError(ValueError):
    """A line that is not a valid sentence; ``reason`` is a short key for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class GasSentence:
    seq: int
    o2: float
    co2: float
    status: Status


@dataclass(frozen=True, slots=True)
class FlowSentence:
    seq: int
    flow: float
    status: Status


Sentence = GasSentence | FlowSentence


def checksum(body: bytes) -> int:
    """XOR of the bytes between ``$`` and ``*``."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def parse_line(line: bytes) -> Sentence:
    """Parse one line (with or without ``\\r\\n``); raise SerialParseError if it is invalid."""
    if len(line) > MAX_LINE_BYTES:
        raise SerialParseError("too_long", f"line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
    stripped = line.rstrip(b"\r\n")
    frame = _FRAME.fullmatch(stripped)
    if frame is None:
        raise SerialParseError("format", f"not a $...*hh sentence: {_show(stripped)}")
    body, sent = frame.group(1), int(frame.group(2), 16)
    computed = checksum(body)
    if computed != sent:
        raise SerialParseError(
            "checksum", f"checksum {sent:02X} != computed {computed:02X}: {_show(stripped)}"
        )
    text = body.decode("ascii")  # the frame pattern admits ASCII only
    if gas := _GAS.fullmatch(text):
        seq, o2, co2, status = gas.groups()
        return GasSentence(
            seq=_seq(seq),
            o2=_in_range("O2", float(o2), O2_RANGE),
            co2=_in_range("CO2", float(co2), CO2_RANGE),
            status=_status(status),
        )
    if flow := _FLOW.fullmatch(text):
        seq, value, status = flow.groups()
        return FlowSentence(
            seq=_seq(seq), flow=_in_range("flow", float(value), FLOW_RANGE), status=_status(status)
        )
    if text.startswith(("OGA,", "OGF,")):
        raise SerialParseError("fields", f"wrong fields in {text!r}")
    raise SerialParseError("unknown_sentence", f"unknown sentence {text.split(',')[0]!r}")


def format_sentence(sentence: Sentence) -> bytes:
    """The exact line an analyser sends for ``sentence``, ``\\r\\n`` included."""
    if isinstance(sentence, GasSentence):
        body = f"OGA,{sentence.seq},{sentence.o2:.3f},{sentence.co2:.3f},{sentence.status.value}"
    else:
        body = f"OGF,{sentence.seq},{sentence.flow:.3f},{sentence.status.value}"
    return frame(body.encode("ascii"))


def frame(body: bytes) -> bytes:
    """Wrap a sentence body as ``$body*hh\\r\\n``."""
    return b"$" + body + b"*" + f"{checksum(body):02X}".encode("ascii") + b"\r\n"


def _seq(text: str) -> int:
    value = int(text)
    if value >= SEQ_MODULUS:
        raise SerialParseError("fields", f"sequence number {value} exceeds {SEQ_MODULUS - 1}")
    return value


def _status(text: str) -> Status:
    try:
        return Status(text)
    except ValueError:
        raise SerialParseError("fields", f"unknown status {text!r}") from None


def _in_range(name: str, value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if not low <= value <= high:
        raise SerialParseError("range", f"{name} {value} outside the range {low}..{high}")
    return value


def _show(line: bytes) -> str:
    """A short printable rendering of a line for log messages."""
    return repr(line[:40]) + ("..." if len(line) > 40 else "")
