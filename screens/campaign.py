"""The campaign at a glance: batch acceptance rate and uptime per phase, the batches behind them.

The figures are computed behind the screen (eln.campaign_service, on a worker thread, through
the callable the app hands over); the screen only lays them out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from bptwin.eln.campaign_figures import (
    ACCEPTANCE_TARGET_PCT,
    UPTIME_TARGET_PCT,
    CampaignFigures,
    PhaseFigures,
    acceptance_text,
    batch_lines,
    uptime_text,
)
from bptwin.eln.errors import NotebookError
from bptwin.screens.entry_widgets import EntryForm
from bptwin.screens.safe_text import escape


class CampaignScreen(EntryForm[None]):
    """Per phase A/B/C and the whole campaign: the two figures against their targets."""

    DEFAULT_CSS = """
    CampaignScreen #campaign-targets { height: 1; padding: 0 1; color: $text-muted; }
    CampaignScreen #campaign-table { height: auto; max-height: 8; }
    CampaignScreen #campaign-detail { height: 1fr; padding: 0 1; border-top: solid $primary; }
    CampaignScreen #campaign-status { height: auto; padding: 0 1; }
    CampaignScreen #campaign-status.-error { color: $error; }
    """
    MESSAGE_SELECTOR = "#campaign-status"
    BINDINGS = [
        Binding("ctrl+r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, load: Callable[[], CampaignFigures]) -> None:
        """``load`` reads the notebook and the store (it runs on a worker thread)."""
        super().__init__()
        self._load = load
        self.figures: CampaignFigures | None = None
        self.rows: list[PhaseFigures] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            f"Targets: batch acceptance rate >= {ACCEPTANCE_TARGET_PCT:g} % of decided batches, "
            f"uptime >= {UPTIME_TARGET_PCT:g} % of running time",
            id="campaign-targets",
        )
        yield DataTable(id="campaign-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="campaign-detail")
        yield Static("Computing the campaign figures…", id="campaign-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Campaign"
        table = self.query_one(DataTable)
        for label, key, width in (
            ("Phase", "phase", 6),
            ("Batches", "batches", 8),
            ("Acceptance", "acceptance", 26),
            ("Uptime", "uptime", 22),
        ):
            table.add_column(label, key=key, width=width)
        table.focus()
        self.reload()

    @work(exclusive=True, group="campaign", exit_on_error=False)
    async def reload(self) -> None:
        try:
            figures = await asyncio.to_thread(self._load)
        except NotebookError as error:
            self._say(str(error), error=True)
            return
        self.show_figures(figures)

    def show_figures(self, figures: CampaignFigures) -> None:
        self.figures = figures
        self.rows = [*figures.phases, figures.overall] if figures.phases else []
        table = self.query_one(DataTable)
        table.clear()
        for phase in self.rows:
            table.add_row(
                phase.phase,
                str(len(phase.batches)),
                _marked(acceptance_text(phase), phase.acceptance_met),
                _marked(uptime_text(phase), phase.uptime_met),
                key=phase.phase,
            )
        status = f"Computed at {figures.computed_at:%Y-%m-%d %H:%M} UTC."
        if figures.problems:
            status += " " + " ".join(figures.problems)
        if not self.rows:
            status = "No batches in the notebook yet."
        self._say(status, error=bool(figures.problems))
        self._show_detail()

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        table = self.query_one(DataTable)
        detail = self.query_one("#campaign-detail", Static)
        if not self.rows:
            detail.update("")
            return
        phase = self.rows[min(max(table.cursor_row, 0), len(self.rows) - 1)]
        title = "Whole campaign" if phase.phase == "all" else f"Phase {phase.phase}"
        detail.update(escape("\n".join([title, *batch_lines(phase)])))

    def action_reload(self) -> None:
        self._say("Computing the campaign figures…")
        self.reload()


def _marked(text: str, met: bool | None) -> str:
    """The figure in red when it misses its target."""
    return f"[b red]{escape(text)}[/]" if met is False else escape(text)
