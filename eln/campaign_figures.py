"""The campaign at a glance: batch acceptance rate and system uptime per campaign phase.

The reference lab judges a campaign by two figures (docs/process.md, "Campaign figures"):

* **Batch acceptance rate** (target >= 80 %): of the phase's batches with a supervisor's
  decision in force, the share accepted for training. Batches still running, or ended and
  waiting for a decision, are listed beside the figure but do not count in it.
* **Uptime** (target >= 95 %): the share of the batches' running time (inoculation to end, or to
  now while running) in which the station stored readings of every key channel. The running
  time is cut into clock-aligned slots of ``UPTIME_SLOT_S`` seconds; a slot is up when each key
  channel the reactor records has at least one finite reading stored in it, so a gap in the
  stored readings longer than a slot (or a sensor reporting only NaN) counts as down time.

Pure rules over frozen records and a store's window counts: no SQL and no UI here (the
notebook is read by :mod:`bptwin.eln.campaign_service`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from bptwin.eln.records import BatchView
from bptwin.eln.states import BatchStatus, CampaignPhase

ACCEPTANCE_TARGET_PCT = 80.0
UPTIME_TARGET_PCT = 95.0
UPTIME_SLOT_S = 60.0
# What the twin and the process cannot do without: the DO, pH and temperature loops and the
# off-gas balance. A channel the reactor never recorded (no off-gas analyser) is left out.
UPTIME_CHANNELS: tuple[str, ...] = ("do", "ph", "temp_broth", "offgas_o2", "offgas_co2")
ACCEPT = "accept"
REJECT = "reject"


class WindowCounts(Protocol):
    """What uptime reads of a time-series store (every store has these)."""

    def read_windows(
        self, reactor: str, channel: str, start: float, end: float, window_s: float = 30.0
    ) -> Sequence[_Window]: ...

    def list_channels(self, reactor: str | None = None) -> list[tuple[str, str]]: ...


class _Window(Protocol):
    @property
    def window_start(self) -> float: ...
    @property
    def count(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Uptime:
    """Up and running seconds of one batch; ``channels`` are the key channels counted."""

    up_s: float
    running_s: float
    channels: tuple[str, ...]
    longest_gap_s: float = 0.0
    gaps: int = 0  # down stretches (consecutive down slots count once)

    @property
    def percent(self) -> float | None:
        return None if self.running_s <= 0 else 100.0 * self.up_s / self.running_s


def batch_uptime(
    store: WindowCounts,
    reactor: str,
    start: float,
    end: float,
    *,
    channels: Iterable[str] = UPTIME_CHANNELS,
    slot_s: float = UPTIME_SLOT_S,
) -> Uptime:
    """Uptime of ``reactor`` over ``[start, end)`` (Unix seconds) from the stored readings."""
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        return Uptime(0.0, 0.0, ())
    recorded = {name for owner, name in store.list_channels(reactor) if owner == reactor}
    counted = tuple(name for name in channels if name in recorded)
    first_slot = math.floor(start / slot_s)
    last_slot = math.ceil(end / slot_s)  # exclusive
    up = set(range(first_slot, last_slot)) if counted else set()
    for name in counted:
        filled = {
            round(window.window_start / slot_s)
            for window in store.read_windows(reactor, name, start, end, slot_s)
            if window.count > 0
        }
        up &= filled
    up_s = down_run = longest = 0.0
    gaps = 0
    for slot in range(first_slot, last_slot):
        overlap = min(end, (slot + 1) * slot_s) - max(start, slot * slot_s)
        if slot in up:
            up_s += overlap
            down_run = 0.0
            continue
        if down_run == 0.0:
            gaps += 1
        down_run += overlap
        longest = max(longest, down_run)
    return Uptime(up_s, end - start, counted, longest, gaps)


@dataclass(frozen=True, slots=True)
class BatchFigures:
    """One batch behind the figures: its decision in force and its uptime."""

    number: int
    phase: str
    status: str
    reactor: str
    decision: str | None  # "accept", "reject" or None (not decided)
    uptime: Uptime | None  # None: never inoculated, or the store was not read

    @property
    def uptime_pct(self) -> float | None:
        return None if self.uptime is None else self.uptime.percent

    @property
    def ended(self) -> bool:
        return self.status not in (BatchStatus.SETUP.value, BatchStatus.RUNNING.value)


@dataclass(frozen=True, slots=True)
class PhaseFigures:
    """A campaign phase (A, B, C, or "all") and its two figures with the batches behind them."""

    phase: str
    batches: tuple[BatchFigures, ...]

    @property
    def accepted(self) -> tuple[int, ...]:
        return tuple(b.number for b in self.batches if b.decision == ACCEPT)

    @property
    def rejected(self) -> tuple[int, ...]:
        return tuple(b.number for b in self.batches if b.decision == REJECT)

    @property
    def awaiting_decision(self) -> tuple[int, ...]:
        return tuple(b.number for b in self.batches if b.ended and b.decision is None)

    @property
    def not_ended(self) -> tuple[int, ...]:
        return tuple(b.number for b in self.batches if not b.ended and b.decision is None)

    @property
    def acceptance_pct(self) -> float | None:
        decided = len(self.accepted) + len(self.rejected)
        return None if decided == 0 else 100.0 * len(self.accepted) / decided

    @property
    def uptime_batches(self) -> tuple[BatchFigures, ...]:
        return tuple(b for b in self.batches if b.uptime is not None and b.uptime.running_s > 0)

    @property
    def uptime_pct(self) -> float | None:
        """Up time over running time of the phase's batches together (long batches weigh more)."""
        counted = [b.uptime for b in self.uptime_batches if b.uptime is not None]
        running = sum(u.running_s for u in counted)
        return None if running <= 0 else 100.0 * sum(u.up_s for u in counted) / running

    @property
    def acceptance_met(self) -> bool | None:
        rate = self.acceptance_pct
        return None if rate is None else rate >= ACCEPTANCE_TARGET_PCT

    @property
    def uptime_met(self) -> bool | None:
        uptime = self.uptime_pct
        return None if uptime is None else uptime >= UPTIME_TARGET_PCT


@dataclass(frozen=True, slots=True)
class CampaignFigures:
    """Per phase A, B, C (those with batches) and the whole campaign."""

    phases: tuple[PhaseFigures, ...]
    overall: PhaseFigures
    computed_at: datetime
    store_read: bool = True  # False: uptime not computed (no time-series store)
    problems: tuple[str, ...] = field(default=())

    def phase(self, name: str) -> PhaseFigures | None:
        return next((p for p in self.phases if p.phase == name), None)


def summarise_campaign(
    batches: Iterable[BatchView],
    decisions: Mapping[int, str],
    uptimes: Mapping[int, Uptime],
    *,
    computed_at: datetime,
    store_read: bool = True,
    problems: Sequence[str] = (),
) -> CampaignFigures:
    """The figures of every phase from the batches, their decisions in force and uptimes."""
    rows = [
        BatchFigures(
            number=batch.number,
            phase=_value(batch.phase),
            status=_value(batch.status),
            reactor=batch.reactor_id,
            decision=decisions.get(batch.number),
            uptime=uptimes.get(batch.number),
        )
        for batch in sorted(batches, key=lambda b: b.number)
    ]
    phases = tuple(
        PhaseFigures(phase.value, tuple(row for row in rows if row.phase == phase.value))
        for phase in CampaignPhase
        if any(row.phase == phase.value for row in rows)
    )
    return CampaignFigures(
        phases,
        PhaseFigures("all", tuple(rows)),
        computed_at,
        store_read=store_read,
        problems=tuple(problems),
    )


def _value(member: object) -> str:
    return str(getattr(member, "value", member))


def percent_text(value: float | None) -> str:
    """ "93.4 %" or "—" (no figure yet)."""
    return "—" if value is None else f"{value:.1f} %"


def numbers_text(numbers: Sequence[int]) -> str:
    return ", ".join(str(n) for n in numbers) if numbers else "—"


def _verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "BELOW TARGET")


def acceptance_text(phase: PhaseFigures) -> str:
    """ "80.0 % (4/5) met", or why there is no figure."""
    decided = len(phase.accepted) + len(phase.rejected)
    if not decided:
        return "— (none decided)"
    text = f"{percent_text(phase.acceptance_pct)} ({len(phase.accepted)}/{decided})"
    return f"{text} {_verdict(phase.acceptance_met)}"


def uptime_text(phase: PhaseFigures) -> str:
    """ "96.2 % met" or "—"."""
    if not phase.uptime_batches:
        return "—"
    return f"{percent_text(phase.uptime_pct)} {_verdict(phase.uptime_met)}"


def batch_lines(phase: PhaseFigures) -> list[str]:
    """The batches behind a phase's figures, one kind a line."""
    lines = [
        f"accepted: {numbers_text(phase.accepted)}",
        f"rejected: {numbers_text(phase.rejected)}",
    ]
    if phase.awaiting_decision:
        lines.append(f"ended, awaiting a decision: {numbers_text(phase.awaiting_decision)}")
    if phase.not_ended:
        lines.append(f"not ended: {numbers_text(phase.not_ended)}")
    uptimes = []
    for batch in phase.uptime_batches:
        assert batch.uptime is not None
        text = f"{batch.number} {percent_text(batch.uptime_pct)}"
        if batch.uptime.longest_gap_s > 0:
            text += f" (longest gap {batch.uptime.longest_gap_s / 60:.0f} min)"
        uptimes.append(text)
    lines.append("uptime per batch: " + ("; ".join(uptimes) if uptimes else "—"))
    return lines
