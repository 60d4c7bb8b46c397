"""Property tests of the import's cell reading: no parsable cell ever becomes NaN.

A cell is either a number (read exactly), a missing-value token (NaN, on purpose) or an error
naming it; there is no fourth outcome in which a number quietly turns into a gap.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bptwin.twin.lab_import.cells import DEFAULT_MISSING, CellError, NumberFormat, parse_numbers
from bptwin.twin.lab_import.text_table import TextLayout, read_text_table

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


def written(value: float, decimal: str, thousands: str, blanks: str) -> str:
    """``value`` as a lab export might write it, exactly (shortest round-trip digits)."""
    text = repr(value)
    if "e" in text or "E" in text:
        mantissa, exponent = text.split("e")
        return blanks + mantissa.replace(".", decimal) + "e" + exponent + blanks
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    if thousands:
        groups = []
        while len(whole) > 3:
            groups.insert(0, whole[-3:])
            whole = whole[:-3]
        whole = thousands.join([whole, *groups])
    fraction = fraction.rstrip("0")
    return blanks + sign + whole + (decimal + fraction if fraction else "") + blanks


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(finite, min_size=1, max_size=30),
    decimal=st.sampled_from([".", ","]),
    thousands=st.sampled_from(["", " ", "'", "."]),
    blanks=st.sampled_from(["", " ", "\u00a0"]),
)
def test_every_number_written_in_the_lab_s_format_is_read_exactly(
    values, decimal, thousands, blanks
):
    if thousands == decimal:
        thousands = ""
    cells = [written(v, decimal, thousands, blanks) for v in values]
    parsed, bad = parse_numbers(cells, NumberFormat(decimal, thousands))
    assert bad == []
    assert not np.isnan(parsed).any()
    np.testing.assert_array_equal(parsed, np.asarray(values, dtype=float))


cell_text = st.one_of(
    st.text(max_size=8),
    st.sampled_from([*DEFAULT_MISSING, "5,01", "5.01", "1e3", "Err", "OVER", "12,5,1", "--1"]),
    finite.map(repr),
)


@settings(max_examples=400, deadline=None)
@given(cells=st.lists(cell_text, min_size=1, max_size=25), decimal=st.sampled_from([".", ","]))
def test_a_cell_is_a_number_a_missing_token_or_an_error_never_a_silent_nan(cells, decimal):
    number_format = NumberFormat(decimal)
    tokens = number_format.missing_tokens
    is_missing = [c.strip(" \t\u00a0\u202f").casefold() in tokens for c in cells]
    values, bad = parse_numbers(cells, number_format, on_bad_cell="missing")
    bad_lines = {cell.line for cell in bad}
    for line, (cell, value, missing) in enumerate(zip(cells, values, is_missing, strict=True), 1):
        if math.isnan(value):
            # NaN only for a missing-value token or a cell reported as unreadable.
            assert missing or line in bad_lines, cell
        else:
            assert not missing and line not in bad_lines and math.isfinite(value)
    if bad:
        with pytest.raises(CellError) as caught:
            parse_numbers(cells, number_format, file="f.csv", column="c")
        assert caught.value.total == len(bad)
        assert f"f.csv line {bad[0].line}, column 'c'" in str(caught.value)
    else:
        strict, _ = parse_numbers(cells, number_format)
        np.testing.assert_array_equal(strict, values)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.lists(st.tuples(finite, finite), min_size=2, max_size=40),
    delimiter=st.sampled_from([";", "\t"]),
    decimal=st.sampled_from([".", ","]),
    encoding=st.sampled_from(["latin-1", "utf-8", "cp1252"]),
    title=st.booleans(),
)
def test_a_whole_export_reads_back_every_number(
    tmp_path: Path, table, delimiter, decimal, encoding, title
):
    lines = ["Task: Fermentation Müller"] if title else []
    lines += [f"Zeit{delimiter}Größe A{delimiter}Größe B", f"[s]{delimiter}[°C]{delimiter}[%]"]
    for index, (a, b) in enumerate(table):
        lines.append(
            delimiter.join([str(index), written(a, decimal, "", ""), written(b, decimal, "", "")])
        )
    path = tmp_path / f"export-{delimiter == ';'}-{decimal == ','}-{encoding}.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    read = read_text_table(path, TextLayout(decimal=decimal))
    assert read.header == ["Zeit", "Größe A", "Größe B"]
    for column, expected in (
        ("Größe A", [a for a, _ in table]),
        ("Größe B", [b for _, b in table]),
    ):
        values, bad = read.numbers(column, ["Größe A", "Größe B"])
        assert bad == []
        np.testing.assert_array_equal(values, np.asarray(expected, dtype=float))
