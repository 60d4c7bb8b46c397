"""The report as Markdown (GitHub-flavoured tables), the plots as PNG files beside it."""

from __future__ import annotations

from bptwin.eln.text_safety import markdown_safe
from bptwin.tui.export.report import Figure, KeyValues, Paragraph, Report, Table


def _cell(text: str) -> str:
    # Notes, labels and units come from outside: no raw escape sequence, cell break or tag.
    return markdown_safe(text) or " "


def render_markdown(report: Report, image_dir: str) -> str:
    """Markdown text; figures refer to ``<image_dir>/<name>.png`` (relative to the file)."""
    lines = [f"# {markdown_safe(report.title)}", "", f"_{markdown_safe(report.subtitle)}_", ""]
    if report.verdict:
        lines += [f"**Acceptance verdict: {report.verdict.upper()}**", ""]
    lines += [f"- [{s.title}](#{s.key})" for s in report.sections]
    lines.append("")
    for section in report.sections:
        lines += [f'<a id="{section.key}"></a>', "", f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                safe = markdown_safe(block.text)
                text = f"**{safe}**" if block.tone in ("bad", "warn", "good") else safe
                lines += [text, ""]
            elif isinstance(block, KeyValues):
                lines += ["| | |", "|---|---|"]
                lines += [f"| **{_cell(k)}** | {_cell(v)} |" for k, v in block.rows]
                lines.append("")
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"**{markdown_safe(block.caption)}**", ""]
                if not block.rows:
                    lines += [f"_{markdown_safe(block.empty)}_", ""]
                    continue
                lines.append("| " + " | ".join(_cell(h) for h in block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
            elif isinstance(block, Figure):
                image = block.image
                lines += [
                    f"![{image.title}]({image_dir}/{image.name}.png)",
                    "",
                    f"_{image.caption}_",
                    "",
                ]
    return "\n".join(lines).rstrip() + "\n"
