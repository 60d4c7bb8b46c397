"""The report as one self-contained HTML file: plots inlined as base64 PNG, no script, no
network; a print style sheet so the browser's "print to PDF" gives clean A4 pages."""

from __future__ import annotations

import base64
from html import escape as _markup_escape

from bptwin.eln.text_safety import terminal_safe
from bptwin.tui.export.report import Figure, KeyValues, Paragraph, Report, Section, Table

STYLE = """
:root { --ink: #1b1f24; --muted: #5b6470; --line: #d5d9de; --good: #1e7e34;
        --bad: #b02a37; --warn: #9a6700; --head: #f3f5f7; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px;
     margin-top: 32px; }
.subtitle { color: var(--muted); margin: 0 0 12px; }
nav { font-size: 13px; margin: 12px 0 8px; }
nav a { margin-right: 12px; color: #1f5fa8; text-decoration: none; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 12px; font-size: 12.5px; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: left;
         vertical-align: top; }
th { background: var(--head); }
table.kv th { width: 28%; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; }
.good { color: var(--good); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
td.PASS { color: var(--good); font-weight: 600; }
td.FAIL { color: var(--bad); font-weight: 600; }
td.OPEN { color: var(--warn); font-weight: 600; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: white;
           font-weight: 700; }
.verdict.pass { background: var(--good); } .verdict.fail { background: var(--bad); }
.verdict.incomplete { background: var(--warn); }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 12px; margin-top: 32px; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5px; }
  nav { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  section { break-inside: auto; }
  table, figure, tr { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  figure img { max-height: 240mm; border: none; }
  a { color: inherit; text-decoration: none; }
}
"""


def escape(text: str) -> str:
    """Markup-escaped text without raw control or bidi-override characters (notes, labels and
    units come from outside; eln.text_safety)."""
    return _markup_escape(terminal_safe(text))


def render_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(report.title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<header><h1>{escape(report.title)}</h1>",
        f'<p class="subtitle">{escape(report.subtitle)}</p>',
    ]
    if report.verdict:
        parts.append(
            f'<p>Acceptance verdict: <span class="verdict {escape(report.verdict)}">'
            f"{escape(report.verdict.upper())}</span></p>"
        )
    parts.append("<nav>")
    parts += [f'<a href="#{s.key}">{escape(s.title)}</a>' for s in report.sections]
    parts.append("</nav></header><main>")
    parts += [_section(section) for section in report.sections]
    parts.append(
        "</main><footer>Written by bptwin export. Plots are embedded; the file needs "
        "no network.</footer></body></html>"
    )
    return "\n".join(parts) + "\n"


def _section(section: Section) -> str:
    body = [f'<section id="{escape(section.key)}"><h2>{escape(section.title)}</h2>']
    for block in section.blocks:
        if isinstance(block, Paragraph):
            tone = f' class="{block.tone}"' if block.tone else ""
            body.append(f"<p{tone}>{escape(block.text)}</p>")
        elif isinstance(block, KeyValues):
            rows = "".join(
                f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in block.rows
            )
            body.append(f'<table class="kv">{rows}</table>')
        elif isinstance(block, Table):
            body.append(_table(block))
        elif isinstance(block, Figure):
            data = base64.b64encode(block.image.png).decode("ascii")
            body.append(
                f'<figure id="fig-{escape(block.image.name)}">'
                f'<img alt="{escape(block.image.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{escape(block.image.caption)}</figcaption></figure>"
            )
    body.append("</section>")
    return "\n".join(body)


def _table(table: Table) -> str:
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    if not table.rows:
        prefix = f"<p><strong>{escape(table.caption)}</strong></p>" if table.caption else ""
        return f'{prefix}<p class="empty">{escape(table.empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    rows = []
    for row in table.rows:
        cells = []
        for cell in row:
            first = cell.split(" ", 1)[0]
            css = f' class="{first}"' if first in ("PASS", "FAIL", "OPEN") else ""
            cells.append(f"<td{css}>{escape(cell)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
