"""Modbus register maps: where a channel's value lies in a device, and how its words decode.

Two kinds of map (docs/drivers.md, "Modbus source"):

- **generic**: ``table`` (``holding`` = function 3 or ``input`` = function 4), ``address``
  (0-based, as sent on the wire), ``type`` (``int16`` … ``float64``), ``byte_order`` within
  each 16-bit register and ``word_order`` of the registers, then ``scale`` and ``offset``;
- **a probe family**: ``map = "hamilton-arc"`` (the primary measurement of a Hamilton ARC
  sensor: pH, dissolved oxygen) or ``"hamilton-arc-temperature"`` (its temperature), which
  fix the block, the float layout and the status and unit words (:data:`HAMILTON_ARC`).

:func:`plan_reads` groups the points of one device and table into as few requests as the
protocol allows (contiguous registers only: a gap could hold addresses the device refuses).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bptwin.database.reading import Quality
from bptwin.drivers.field_points import NOT_FINITE, PointRefused

RegisterType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"
]
ByteOrder = Literal["big", "little"]
Table = Literal["holding", "input"]

# struct format and width in registers of each type.
TYPE_LAYOUT: dict[str, tuple[str, int]] = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "int64": ("q", 4),
    "uint64": ("Q", 4),
    "float32": ("f", 2),
    "float64": ("d", 4),
}
# A read request carries at most 125 registers (Modbus application protocol, function 3/4).
MAX_REGISTERS_PER_READ = 125
# An out-of-range device id is refused on the wire: 1..247 address a device, 0 is broadcast.
MAX_DEVICE_ID = 247

HAMILTON_STATUS_BAD = 0x01 | 0x10  # temperature outside the measuring range; sensor error
HAMILTON_STATUS_UNCERTAIN = 0x02 | 0x04 | 0x08  # outside the operating range; calibration; warning


def decode_registers(
    words: Sequence[int], kind: str, byte_order: ByteOrder, word_order: ByteOrder
) -> float:
    """The number held in ``words`` (one register is 16 bits, as the client returns them).

    ``word_order="big"`` means the first register holds the most significant word (the
    Modbus convention); ``byte_order="big"`` that each register's high byte comes first on
    the wire (also the convention). Floats that decode to NaN or infinity raise PointRefused.
    """
    code, width = TYPE_LAYOUT[kind]
    if len(words) != width:
        raise ValueError(f"{kind} needs {width} registers, got {len(words)}")
    ordered = list(words) if word_order == "big" else list(reversed(words))
    data = b"".join(
        (w & 0xFFFF).to_bytes(2, "big" if byte_order == "big" else "little") for w in ordered
    )
    value = struct.unpack(f">{code}", data)[0]
    if isinstance(value, float) and not math.isfinite(value):
        raise PointRefused(NOT_FINITE, f"the {kind} register holds {value!r}")
    return float(value)


def encode_registers(
    value: float, kind: str, byte_order: ByteOrder = "big", word_order: ByteOrder = "big"
) -> list[int]:
    """The registers a device holding ``value`` returns (the inverse of decode; emulators)."""
    code, _width = TYPE_LAYOUT[kind]
    number: float | int = value if code in "fd" else int(value)
    data = struct.pack(f">{code}", number)
    words = [
        int.from_bytes(data[i : i + 2], "big" if byte_order == "big" else "little")
        for i in range(0, len(data), 2)
    ]
    return words if word_order == "big" else list(reversed(words))


# -- a probe family: Hamilton ARC sensors --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeBlock:
    """One measurement block of a probe family, read whole (the device refuses part reads)."""

    start: int  # 0-based address on the wire
    length: int
    table: Table
    unit_codes: dict[str, int]  # channel -> the unit word the probe must report for it


# Hamilton ARC sensors (pH ARC, VisiFerm DO, …; Modbus RTU 19200 8N2, device 1 by default)
# answer functions 3 and 4 with blocks of ten registers. Their manuals number registers from 1:
# the primary measurement channel "PMC1" is register 2090, i.e. address 2089 on the wire, and
# the temperature channel "PMC6" is register 2410, address 2409. The block holds five 32-bit
# fields: the selected unit (a bit mask), the value (IEEE float), a status bit mask, and the
# lowest and highest value the sensor can measure (floats). A 32-bit field comes low word first
# and each word high byte first. Unit bits: 0x04 °C, 0x20 %-sat, 0x1000 pH. Status bits:
# 0x01 temperature outside the measuring range, 0x02 outside the operating range, 0x04 a
# calibration status other than zero, 0x08 a warning, 0x10 an error.
HAMILTON_WORD_ORDER: ByteOrder = "little"
HAMILTON_ARC: dict[str, ProbeBlock] = {
    "hamilton-arc": ProbeBlock(2089, 10, "holding", {"ph": 0x1000, "do": 0x20}),
    "hamilton-arc-temperature": ProbeBlock(
        2409,
        10,
        "holding",
        {name: 0x04 for name in ("temp_broth", "temp_ph_probe", "temp_do_probe", "temp_exhaust")},
    ),
}
PROBE_MAPS = tuple(HAMILTON_ARC)


@dataclass(frozen=True, slots=True)
class ProbeValue:
    """What one Hamilton block says: the value, its quality, and why if not good."""

    value: float
    quality: Quality
    detail: str = ""


def decode_hamilton_block(words: Sequence[int], channel: str, map_name: str) -> ProbeValue:
    """Decode a 10-register Hamilton ARC block for ``channel``.

    PointRefused (``wrong_unit``) when the probe is set to another unit than the channel's
    (a DO probe set to mg/L would otherwise be stored as %sat); a NaN or infinite value is
    refused (``not_finite``). Status bits map to quality: an error or a temperature outside
    the measuring range → bad; outside the operating range, a calibration or a warning flag
    → uncertain. A value outside the probe's own measuring limits is bad.
    """
    block = HAMILTON_ARC[map_name]
    if len(words) != block.length:
        raise ValueError(f"{map_name}: expected {block.length} registers, got {len(words)}")
    fields = [words[i : i + 2] for i in range(0, 10, 2)]
    unit = int(decode_registers(fields[0], "uint32", "big", HAMILTON_WORD_ORDER))
    expected = block.unit_codes[channel]
    if unit != expected:
        raise PointRefused(
            "wrong_unit",
            f"{map_name}: the probe reports unit code {unit:#x}, {channel} needs {expected:#x}",
        )
    value = decode_registers(fields[1], "float32", "big", HAMILTON_WORD_ORDER)
    status = int(decode_registers(fields[2], "uint32", "big", HAMILTON_WORD_ORDER))
    low = decode_registers(fields[3], "float32", "big", HAMILTON_WORD_ORDER)
    high = decode_registers(fields[4], "float32", "big", HAMILTON_WORD_ORDER)
    if status & HAMILTON_STATUS_BAD:
        return ProbeValue(value, Quality.BAD, f"status {status:#x}")
    if not low <= value <= high:
        return ProbeValue(value, Quality.BAD, f"{value} outside the probe's range {low}..{high}")
    if status & HAMILTON_STATUS_UNCERTAIN:
        return ProbeValue(value, Quality.UNCERTAIN, f"status {status:#x}")
    return ProbeValue(value, Quality.GOOD)


def hamilton_block_words(
    value: float,
    channel: str,
    map_name: str = "hamilton-arc",
    *,
    status: int = 0,
    low: float = 0.0,
    high: float = 14.0,
    unit: int | None = None,
) -> list[int]:
    """The ten registers a Hamilton ARC probe answers with (emulators and tests)."""
    block = HAMILTON_ARC[map_name]
    code = block.unit_codes[channel] if unit is None else unit
    order = HAMILTON_WORD_ORDER
    return (
        encode_registers(code, "uint32", "big", order)
        + encode_registers(value, "float32", "big", order)
        + encode_registers(status, "uint32", "big", order)
        + encode_registers(low, "float32", "big", order)
        + encode_registers(high, "float32", "big", order)
    )


# -- grouping reads ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """The registers of one point: ``count`` from ``address`` in ``table`` of ``device_id``."""

    device_id: int
    table: Table
    address: int
    count: int
    index: int  # the point's place in the source's list

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One function 3/4 request and the points whose registers it returns."""

    device_id: int
    table: Table
    address: int
    count: int
    spans: tuple[Span, ...]

    def words_of(self, span: Span, registers: Sequence[int]) -> list[int]:
        start = span.address - self.address
        return list(registers[start : start + span.count])

    def describe(self) -> str:
        function = 3 if self.table == "holding" else 4
        return (
            f"device {self.device_id} function {function} address {self.address} count {self.count}"
        )


def plan_reads(spans: Sequence[Span], max_count: int = MAX_REGISTERS_PER_READ) -> list[ReadRequest]:
    """Contiguous (or overlapping) spans of one device and table share a request."""
    requests: list[ReadRequest] = []
    ordered = sorted(spans, key=lambda s: (s.device_id, s.table, s.address, s.count))
    group: list[Span] = []
    start = end = 0
    for span in ordered:
        if (
            group
            and span.device_id == group[0].device_id
            and span.table == group[0].table
            and span.address <= end
            and max(end, span.end) - start <= max_count
        ):
            group.append(span)
            end = max(end, span.end)
            continue
        if group:
            requests.append(_request(group, start, end))
        group, start, end = [span], span.address, span.end
    if group:
        requests.append(_request(group, start, end))
    return requests


def _request(group: list[Span], start: int, end: int) -> ReadRequest:
    first = group[0]
    return ReadRequest(first.device_id, first.table, start, end - start, tuple(group))
