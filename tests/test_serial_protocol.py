"""The analyser line protocol: exact parses, exact refusals, and no crash on any bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bptwin.drivers.serial_protocol import (
    FlowSentence,
    GasSentence,
    SerialParseError,
    Status,
    checksum,
    format_sentence,
    frame,
    parse_line,
)


def test_checksum_is_the_xor_between_dollar_and_star() -> None:
    # Worked by hand: 'A' 0x41 ^ 'B' 0x42 = 0x03; ^ 'C' 0x43 = 0x40.
    assert checksum(b"ABC") == 0x40
    assert frame(b"ABC") == b"$ABC*40\r\n"


def test_a_gas_sentence_parses_to_its_values() -> None:
    line = frame(b"OGA,17,20.512,0.734,OK")
    assert parse_line(line) == GasSentence(17, 20.512, 0.734, Status.OK)
    assert parse_line(line.rstrip()) == GasSentence(17, 20.512, 0.734, Status.OK)


def test_lowercase_checksum_digits_are_accepted() -> None:
    line = frame(b"OGF,3,2.500,CAL")
    assert parse_line(line.lower().replace(b"$ogf,3,2.500,cal", b"$OGF,3,2.500,CAL")) == (
        FlowSentence(3, 2.5, Status.CAL)
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "format"),
        (b"OGA,1,20.9,0.04,OK*00\r\n", "format"),
        (b"$OGA,1,20.9,0.04,OK\r\n", "format"),
        (frame(b"OGA,1,20.9,0.04,OK")[:-4] + b"FF\r\n", "checksum"),
        (frame(b"OGA,1,nan,0.04,OK"), "format"),
        (frame(b"OGA,1,1e3,0.04,OK"), "format"),
        (frame(b"OGA,1,20.9,OK"), "fields"),
        (frame(b"OGA,1,20.9,0.04,BAD"), "fields"),
        (frame(b"OGA,70000,20.9,0.04,OK"), "fields"),
        (frame(b"OGA,1,101.0,0.04,OK"), "range"),
        (frame(b"OGA,1,20.9,-0.1,OK"), "range"),
        (frame(b"OGF,1,16.0,OK"), "range"),
        (frame(b"GPGGA,1,2"), "unknown_sentence"),
        (b"$" + b"1" * 100 + b"*00\r\n", "too_long"),
    ],
)
def test_invalid_lines_are_refused_with_their_reason(line: bytes, reason: str) -> None:
    with pytest.raises(SerialParseError) as refused:
        parse_line(line)
    assert refused.value.reason == reason
    assert str(refused.value)


@given(st.binary(max_size=120))
@settings(max_examples=500)
def test_arbitrary_bytes_never_raise_anything_but_a_parse_error(data: bytes) -> None:
    try:
        sentence = parse_line(data)
    except SerialParseError as exc:
        assert exc.reason
    else:
        assert isinstance(sentence, (GasSentence, FlowSentence))


@given(
    st.integers(0, 65535),
    st.floats(0, 100, allow_nan=False).map(lambda v: round(v, 3)),
    st.floats(0, 20, allow_nan=False).map(lambda v: round(v, 3)),
    st.sampled_from(list(Status)),
)
def test_format_then_parse_round_trips(seq: int, o2: float, co2: float, status: Status) -> None:
    sentence = GasSentence(seq, o2, co2, status)
    assert parse_line(format_sentence(sentence)) == sentence


@given(st.integers(0, 100), st.integers(1, 255))
def test_any_single_byte_corruption_is_detected(at: int, flip: int) -> None:
    good = frame(b"OGA,5,20.900,0.040,OK")
    position = at % (len(good) - 2)  # the "\r\n" terminator is framing, not content
    corrupted = good[:position] + bytes([good[position] ^ flip]) + good[position + 1 :]
    with pytest.raises(SerialParseError):
        parse_line(corrupted)


def test_the_examples_in_the_protocol_document_parse() -> None:
    from pathlib import Path

    document = Path(__file__).resolve().parent.parent / "docs" / "serial-protocol.md"
    examples = [
        line
        for line in document.read_text().splitlines()
        if line.startswith("$OG") and "<" not in line
    ]
    assert len(examples) == 2
    assert [type(parse_line(line.encode())).__name__ for line in examples] == [
        "GasSentence",
        "FlowSentence",
    ]


@given(st.lists(st.integers(1, 200), max_size=30), st.integers(1, 40))
def test_line_splitting_does_not_depend_on_how_the_bytes_arrive(cuts: list[int], count: int):
    from bptwin.drivers.serial_analyser import LineSplitter

    lines = [frame(f"OGA,{i},20.{i % 10}00,0.{i % 7}00,OK".encode()) for i in range(count)]
    stream = b"".join(lines)
    splitter = LineSplitter()
    received: list[bytes] = []
    position = 0
    for cut in [*cuts, len(stream)]:
        chunk = stream[position : position + cut]
        position += len(chunk)
        received += [line for line, overlong in splitter.feed(chunk) if not overlong]
    received += [line for line, _ in splitter.feed(stream[position:])]
    assert received == lines
