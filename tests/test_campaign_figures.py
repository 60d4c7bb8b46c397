"""Campaign figures (eln.campaign_figures, eln.campaign_service): acceptance rate and uptime per
phase, worked out by hand, and read from a real notebook and time-series store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bptwin.database.reading import Reading
from bptwin.database.relational import make_engine
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.eln.campaign_figures import (
    UPTIME_CHANNELS,
    Uptime,
    batch_uptime,
    summarise_campaign,
)
from bptwin.eln.campaign_service import load_campaign_figures
from bptwin.eln.models import AcceptanceDecision, BatchAcceptance, OperatorRole
from bptwin.eln.records import BatchView
from bptwin.eln.services import NotebookService
from bptwin.eln.states import BatchStatus, CampaignPhase
from bptwin.eln.unit_of_work import find_batch, row_id

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
START = T0.timestamp()


@dataclass
class Window:
    window_start: float
    count: int


class CountingStore:
    """Window counts of hand-made readings: channel -> timestamps with a finite value."""

    def __init__(self, readings: dict[str, list[float]], reactor: str = "R1") -> None:
        self.readings = readings
        self.reactor = reactor

    def list_channels(self, reactor: str | None = None) -> list[tuple[str, str]]:
        return sorted((self.reactor, name) for name in self.readings)

    def read_windows(
        self, reactor: str, channel: str, start: float, end: float, window_s: float = 30.0
    ) -> list[Window]:
        counts: dict[float, int] = {}
        for t in self.readings.get(channel, []):
            if start <= t < end:
                slot = (t // window_s) * window_s
                counts[slot] = counts.get(slot, 0) + 1
        return [Window(slot, n) for slot, n in sorted(counts.items())]


def every_second(start: float, end: float) -> list[float]:
    return [float(t) for t in range(int(start), int(end))]


def test_uptime_counts_slots_where_every_key_channel_stored_a_reading() -> None:
    # One hour; DO silent for 10 min (8:20-8:30), pH silent 8:25-8:35: down 8:20-8:35 = 15 min.
    end = START + 3600
    do = [t for t in every_second(START, end) if not START + 1200 <= t < START + 1800]
    ph = [t for t in every_second(START, end) if not START + 1500 <= t < START + 2100]
    store = CountingStore({"do": do, "ph": ph, "stirrer_speed": every_second(START, end)})
    uptime = batch_uptime(store, "R1", START, end)
    assert uptime.channels == ("do", "ph")  # only key channels this reactor records
    assert uptime.up_s == pytest.approx(2700.0) and uptime.running_s == 3600.0
    assert uptime.percent == pytest.approx(75.0)
    assert (uptime.gaps, uptime.longest_gap_s) == (1, pytest.approx(900.0))


def test_uptime_weights_partial_slots_and_a_gap_shorter_than_a_slot_is_not_down() -> None:
    # Starts 30 s into a minute: the first slot counts 30 s. A 40 s gap inside a minute leaves
    # that minute with readings: up.
    start, end = START + 30, START + 630
    do = [t for t in every_second(start, end) if not START + 300 <= t < START + 340]
    uptime = batch_uptime(CountingStore({"do": do}), "R1", start, end)
    assert uptime.up_s == pytest.approx(600.0) and uptime.percent == pytest.approx(100.0)
    # Nothing of a key channel stored at all: the whole run is down.
    silent = batch_uptime(CountingStore({"stirrer_speed": do}), "R1", start, end)
    assert silent.channels == () and silent.percent == 0.0


def view(number: int, phase: str, status: str = "complete") -> BatchView:
    """A batch of the campaign as the notebook gives it (also the campaign screen's tests)."""
    return BatchView(
        id=number,
        number=number,
        phase=CampaignPhase(phase),
        strain="X-33",
        medium_lot="BSM-2026-014",
        vessel="V1",
        reactor_id="R1",
        operator="ana",
        status=BatchStatus(status),
        created_at=T0,
        inoculated_at=T0,
        ended_at=T0 + timedelta(hours=24),
        notes="",
    )


def test_acceptance_rate_counts_decided_batches_and_lists_the_others() -> None:
    batches = [view(n, "B") for n in range(4, 10)] + [view(10, "B", "running"), view(1, "A")]
    decisions = {4: "accept", 5: "accept", 6: "accept", 7: "reject", 9: "accept", 1: "reject"}
    uptimes = {
        4: Uptime(86_400.0 * 0.99, 86_400.0, UPTIME_CHANNELS),
        5: Uptime(43_200.0 * 0.80, 43_200.0, UPTIME_CHANNELS),
    }
    figures = summarise_campaign(batches, decisions, uptimes, computed_at=T0)
    b = figures.phase("B")
    assert b is not None and [p.phase for p in figures.phases] == ["A", "B"]
    assert b.accepted == (4, 5, 6, 9) and b.rejected == (7,)
    assert b.awaiting_decision == (8,) and b.not_ended == (10,)
    assert b.acceptance_pct == pytest.approx(80.0) and b.acceptance_met is True
    # (0.99·24 h + 0.80·12 h) / 36 h = 92.67 %: the longer batch weighs more.
    assert b.uptime_pct == pytest.approx(92.6667, abs=1e-3) and b.uptime_met is False
    assert [x.number for x in b.uptime_batches] == [4, 5]
    a = figures.phase("A")
    assert a is not None and a.acceptance_pct == 0.0 and a.uptime_pct is None
    assert figures.overall.acceptance_pct == pytest.approx(4 / 6 * 100)
    assert figures.phase("C") is None


def campaign_notebook(url: str) -> NotebookService:
    """Batches 1 (A, rejected), 4 and 5 (B, accepted; 5 with a 30 min gap), 6 (B, running)."""
    clock = {"now": T0 + timedelta(hours=30)}
    notebook = NotebookService(make_engine(url), clock=lambda: clock["now"])
    notebook.operators.create_operator("setup", "sam", OperatorRole.SUPERVISOR, "4321")
    for number, phase in ((1, "A"), (4, "B"), (5, "B"), (6, "B")):
        notebook.batches.create_batch("sam", number, phase, strain="X-33", reactor_id="R1")
        notebook.batches.start_batch(
            "sam",
            number,
            inoculated_at=T0 + timedelta(hours=3 * number),
            override_reason="campaign figures test: no calibrations",
        )
        if number != 6:
            notebook.batches.end_batch("sam", number, ended_at=T0 + timedelta(hours=3 * number + 2))
    with notebook.unit.write("sam") as session:
        for number, decision in ((1, "reject"), (4, "accept"), (5, "accept")):
            batch = find_batch(session, number)
            session.add(
                BatchAcceptance(
                    batch_id=row_id(batch),
                    decision=AcceptanceDecision(decision),
                    reason="test",
                    verdict="pass",
                    evaluation={},
                    decided_by="sam",
                    decided_at=clock["now"],
                )
            )
    return notebook


def test_campaign_figures_from_the_notebook_and_the_store(
    notebook_url: str, tmp_path: Path
) -> None:
    notebook = campaign_notebook(notebook_url)
    with EmbeddedStore(tmp_path / "ts.sqlite") as store:
        readings = []
        for number in (1, 4, 5, 6):
            start = START + 3 * number * 3600
            end = start + (7200 if number != 6 else 3600)
            for t in range(int(start), int(end), 5):
                if number == 5 and start + 1800 <= t < start + 3600:
                    continue  # batch 5: no readings for 30 min of its 2 h
                for channel in ("do", "ph"):
                    readings.append(Reading(float(t), "R1", channel, 40.0, "%"))
        store.write(readings)
        store.flush()
        figures = load_campaign_figures(notebook, store)
    b = figures.phase("B")
    assert b is not None
    assert (b.accepted, b.rejected, b.not_ended) == ((4, 5), (), (6,))
    assert b.acceptance_pct == 100.0
    by_number = {row.number: row for row in b.batches}
    assert by_number[4].uptime_pct == pytest.approx(100.0)
    assert by_number[5].uptime_pct == pytest.approx(75.0)
    # Batch 6 runs from T0 + 18 h to now (T0 + 30 h): readings only for its first hour of 12.
    assert by_number[6].uptime_pct == pytest.approx(100.0 / 12)
    a = figures.phase("A")
    assert a is not None and a.rejected == (1,) and a.acceptance_pct == 0.0
    assert figures.problems == ()
    without_store = load_campaign_figures(notebook, None)
    assert without_store.overall.uptime_pct is None and "not available" in without_store.problems[0]


def test_bptwin_campaign_prints_the_figures_and_the_batches_behind_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from bptwin.database.migrate import upgrade
    from bptwin.tui.cli import main

    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'notebook.sqlite'}"
    upgrade(url)
    campaign_notebook(url).engine.dispose()
    config = tmp_path / "bptwin.toml"
    config.write_text(f'[station]\ndata_dir = "{data}"\n')
    assert main(["--config", str(config), "campaign"]) == 0
    out = capsys.readouterr().out
    # No readings stored: uptime is 0 % and below target; B accepted 2 of 2.
    assert "B            3  100.0 % (2/2) met" in out
    assert "A            1  0.0 % (0/1) BELOW TARGET" in out
    assert "Phase B\n  accepted: 4, 5\n  rejected: —\n  not ended: 6" in out
    assert main(["--config", str(config), "campaign", "--phase", "B", "--json"]) == 0
    data_out = json.loads(capsys.readouterr().out)
    assert [p["phase"] for p in data_out["phases"]] == ["B"]
    assert data_out["phases"][0]["accepted"] == [4, 5]
    assert data_out["phases"][0]["uptime_pct"] == 0.0
    # The same figures where the issue asks for them: the batch list's campaign view.
    assert main(["--config", str(config), "batch", "list", "--campaign", "--phase", "B"]) == 0
    listed = capsys.readouterr().out
    assert "B            3  100.0 % (2/2) met" in listed and "Phase A" not in listed
