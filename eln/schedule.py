"""The SOP sampling schedule of a batch: which samples are taken, due, late or missed.

Samples are due at 0, 2, 4, 6, 8, 12 and 16 h after inoculation and at glycerol depletion,
each within ± 15 min (docs/process.md). UI-free: screens show the result, alarms may use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

SOP_TIMEPOINTS_H: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0)
SAMPLE_WINDOW = timedelta(minutes=15)


class SlotStatus(str, Enum):
    UPCOMING = "upcoming"  # not yet in its window
    DUE = "due"  # in its window now, not taken
    TAKEN = "taken"  # taken within the window
    LATE = "late"  # taken, but outside the window
    MISSED = "missed"  # window passed, nothing taken


@dataclass(frozen=True)
class SampleSlot:
    """One slot of the schedule; ``timepoint_h`` None is the depletion sample."""

    timepoint_h: float | None
    due_at: datetime | None
    status: SlotStatus
    sample_id: int | None = None
    taken_at: datetime | None = None

    @property
    def minutes_off(self) -> float | None:
        """How far from the due time the sample was taken (minutes, + = late)."""
        if self.taken_at is None or self.due_at is None:
            return None
        return (self.taken_at - self.due_at).total_seconds() / 60.0


class SampleLike(Protocol):
    """What the schedule reads of a sample (a stored row, its frozen copy or a TakenSample)."""

    @property
    def id(self) -> int | None: ...
    @property
    def taken_at(self) -> datetime: ...
    @property
    def sop_timepoint_h(self) -> float | None: ...


@dataclass(frozen=True)
class TakenSample:
    """A sample as the schedule needs it, made by hand (tests, imports)."""

    id: int | None
    taken_at: datetime
    sop_timepoint_h: float | None


def sample_schedule(
    inoculated_at: datetime,
    samples: Sequence[SampleLike],
    now: datetime,
    *,
    depleted_at: datetime | None = None,
    ended_at: datetime | None = None,
) -> list[SampleSlot]:
    """The eight SOP slots with their status at ``now``.

    A sample belongs to a slot by its ``sop_timepoint_h``; samples without one fill the
    nearest open slot whose window holds them, else the depletion slot (after depletion).
    After the batch ended nothing is due any more: open slots are missed.
    """
    ended = ended_at is not None and now >= ended_at
    unassigned = sorted(samples, key=lambda sample: sample.taken_at)
    chosen: dict[float | None, SampleLike] = {}
    for hours in SOP_TIMEPOINTS_H:
        for sample in unassigned:
            if sample.sop_timepoint_h is not None and abs(sample.sop_timepoint_h - hours) < 1e-9:
                chosen[hours] = sample
                unassigned.remove(sample)
                break
    for hours in SOP_TIMEPOINTS_H:
        if hours in chosen:
            continue
        due = inoculated_at + timedelta(hours=hours)
        for sample in unassigned:
            if sample.sop_timepoint_h is None and abs(sample.taken_at - due) <= SAMPLE_WINDOW:
                chosen[hours] = sample
                unassigned.remove(sample)
                break
    if depleted_at is not None:
        for sample in unassigned:
            if sample.sop_timepoint_h is None and sample.taken_at >= depleted_at - SAMPLE_WINDOW:
                chosen[None] = sample
                break
    slots = [
        _slot(hours, inoculated_at + timedelta(hours=hours), chosen.get(hours), now, ended)
        for hours in SOP_TIMEPOINTS_H
    ]
    slots.append(_slot(None, depleted_at, chosen.get(None), now, ended))
    return slots


def _slot(
    hours: float | None,
    due: datetime | None,
    sample: SampleLike | None,
    now: datetime,
    ended: bool,
) -> SampleSlot:
    if sample is not None:
        on_time = due is None or abs(sample.taken_at - due) <= SAMPLE_WINDOW
        status = SlotStatus.TAKEN if on_time else SlotStatus.LATE
        return SampleSlot(hours, due, status, sample.id, sample.taken_at)
    if ended:
        return SampleSlot(hours, due, SlotStatus.MISSED)
    if due is None:
        return SampleSlot(hours, None, SlotStatus.UPCOMING)
    if now < due - SAMPLE_WINDOW:
        status = SlotStatus.UPCOMING
    elif now <= due + SAMPLE_WINDOW:
        status = SlotStatus.DUE
    else:
        status = SlotStatus.MISSED
    return SampleSlot(hours, due, status)
