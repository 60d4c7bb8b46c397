"""The report as a PDF, composed directly with reportlab (flowing tables, embedded PNG plots).

The text font is DejaVu Sans from matplotlib's own data folder (matplotlib is a dependency
anyway): the PDF base fonts lack glyphs the report uses (O₂, μ, →).
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from xml.sax.saxutils import escape as _markup_escape

from bptwin.eln.text_safety import terminal_safe
from bptwin.tui.export.report import Figure, KeyValues, Paragraph, Report, Table

FONT, FONT_BOLD = "BptwinSans", "BptwinSans-Bold"
_font_lock = threading.Lock()
_TONES = {"good": "#1e7e34", "bad": "#b02a37", "warn": "#9a6700"}
_MARKS = {"PASS": "#1e7e34", "FAIL": "#b02a37", "OPEN": "#9a6700"}


def escape(text: str) -> str:
    """Markup-escaped text without raw control or bidi-override characters (notes, labels and
    units come from outside; eln.text_safety)."""
    return _markup_escape(terminal_safe(text))


def _register_fonts() -> tuple[str, str]:
    """DejaVu Sans when matplotlib ships it, else Helvetica (some glyphs then missing)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    with _font_lock:
        if FONT in pdfmetrics.getRegisteredFontNames():
            return FONT, FONT_BOLD
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if not (regular.is_file() and bold.is_file()):
            return "Helvetica", "Helvetica-Bold"
        pdfmetrics.registerFont(TTFont(FONT, str(regular)))
        pdfmetrics.registerFont(TTFont(FONT_BOLD, str(bold)))
        return FONT, FONT_BOLD


def render_pdf(report: Report) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, KeepTogether, SimpleDocTemplate, Spacer, TableStyle
    from reportlab.platypus import Paragraph as Para
    from reportlab.platypus import Table as PdfTable

    font, bold = _register_fonts()
    body = ParagraphStyle("body", fontName=font, fontSize=8.5, leading=11)
    cell = ParagraphStyle("cell", fontName=font, fontSize=6.8, leading=8.2)
    head_cell = ParagraphStyle("head", parent=cell, fontName=bold)
    h1 = ParagraphStyle("h1", fontName=bold, fontSize=17, leading=21, spaceAfter=4)
    h2 = ParagraphStyle(
        "h2",
        fontName=bold,
        fontSize=12.5,
        leading=16,
        spaceBefore=10,
        spaceAfter=4,
        keepWithNext=True,
    )
    caption = ParagraphStyle("caption", parent=body, fontName=bold, keepWithNext=True)
    muted = ParagraphStyle("muted", parent=body, textColor=colors.HexColor("#5b6470"))

    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=14 * mm,
        title=report.title,
        author="bptwin",
        subject=report.subtitle,
    )
    width = document.width
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#d5d9de")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]
    )

    def text(value: str, style: ParagraphStyle = cell) -> Para:
        first = value.split(" ", 1)[0]
        if first in _MARKS:
            return Para(f'<font color="{_MARKS[first]}"><b>{escape(value)}</b></font>', style)
        return Para(escape(value), style)

    story: list = [Para(escape(report.title), h1), Para(escape(report.subtitle), muted)]
    if report.verdict:
        tone = {"pass": "good", "fail": "bad"}.get(report.verdict, "warn")
        story.append(
            Para(
                f'Acceptance verdict: <font color="{_TONES[tone]}"><b>'
                f"{escape(report.verdict.upper())}</b></font>",
                body,
            )
        )
    for section in report.sections:
        heading = Para(escape(section.title), h2)
        if section.blocks and isinstance(section.blocks[0], Figure):
            pending: list = [heading]  # a title never stays alone above its figure
        else:
            story.append(heading)
            pending = []
        for block in section.blocks:
            if isinstance(block, Paragraph):
                markup = escape(block.text)
                if block.tone in _TONES:
                    markup = f'<font color="{_TONES[block.tone]}"><b>{markup}</b></font>'
                story += [Para(markup, body), Spacer(1, 3)]
            elif isinstance(block, KeyValues):
                rows = [[text(k, head_cell), text(v)] for k, v in block.rows]
                table = PdfTable(rows, colWidths=[0.3 * width, 0.7 * width])
                table.setStyle(grid)
                story += [table, Spacer(1, 6)]
            elif isinstance(block, Table):
                if block.caption:
                    story.append(Para(escape(block.caption), caption))
                if not block.rows:
                    story += [Para(f"<i>{escape(block.empty)}</i>", muted), Spacer(1, 4)]
                    continue
                rows = [[text(h, head_cell) for h in block.headers]]
                rows += [[text(c) for c in row] for row in block.rows]
                table = PdfTable(rows, colWidths=_widths(block, width), repeatRows=1)
                table.setStyle(grid)
                table.setStyle(
                    TableStyle([("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f3f5f7"))])
                )
                story += [table, Spacer(1, 6)]
            elif isinstance(block, Figure):
                image = Image(io.BytesIO(block.image.png))
                scale = min(1.0, width / image.imageWidth, (128 * mm) / image.imageHeight)
                image.drawWidth = image.imageWidth * scale
                image.drawHeight = image.imageHeight * scale
                story.append(
                    KeepTogether([*pending, image, Para(escape(block.image.caption), muted)])
                )
                story.append(Spacer(1, 6))
                pending = []

    def footer(canvas: object, doc: object) -> None:
        canvas.saveState()  # type: ignore[attr-defined]
        canvas.setFont(font, 7)  # type: ignore[attr-defined]
        canvas.drawString(12 * mm, 7 * mm, f"{report.title} · bptwin export")  # type: ignore[attr-defined]
        canvas.drawRightString(  # type: ignore[attr-defined]
            A4[0] - 12 * mm,
            7 * mm,
            f"page {doc.page}",  # type: ignore[attr-defined]
        )
        canvas.restoreState()  # type: ignore[attr-defined]

    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


CHAR_PT = 3.9  # average width of a 6.8 pt DejaVu Sans character, in points


def _widths(table: Table, width: float) -> list[float]:
    """Each column at least as wide as its longest word (so numbers and times never wrap
    inside), the rest shared in proportion to the longest text of each column."""
    floors, weights = [], []
    for index, header in enumerate(table.headers):
        texts = [header, *(row[index] for row in table.rows)]
        word = max(len(part) for text in texts for part in (text.split() or [""]))
        floors.append(min((word + 1.5) * CHAR_PT, 0.3 * width))
        weights.append(min(max(len(t) for t in texts), 60))
    spare = width - sum(floors)
    if spare <= 0:
        return [width * f / sum(floors) for f in floors]
    total = float(sum(weights))
    return [floor + spare * w / total for floor, w in zip(floors, weights, strict=True)]
