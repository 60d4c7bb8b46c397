"""The SOP sampling schedule: slots taken, late, due, missed, upcoming."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bptwin.eln.schedule import SOP_TIMEPOINTS_H, SlotStatus, TakenSample, sample_schedule

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def at(hours: float, minutes: float = 0.0) -> datetime:
    return START + timedelta(hours=hours, minutes=minutes)


def statuses(slots: list) -> list[str]:
    return [slot.status.value for slot in slots]


def test_fresh_batch_has_the_zero_hour_sample_due_and_the_rest_upcoming() -> None:
    slots = sample_schedule(START, [], at(0, 5))
    assert [slot.timepoint_h for slot in slots] == [*SOP_TIMEPOINTS_H, None]
    assert statuses(slots) == ["due"] + ["upcoming"] * 7


def test_taken_late_missed_and_due() -> None:
    samples = [
        TakenSample(1, at(0, 3), 0.0),  # on time, by its time point
        TakenSample(2, at(2, 10), None),  # on time, matched by its time
        TakenSample(3, at(4, 40), 4.0),  # 40 min late
    ]
    slots = sample_schedule(START, samples, at(8, 10))
    assert statuses(slots)[:5] == ["taken", "taken", "late", "missed", "due"]
    assert slots[1].sample_id == 2
    assert slots[2].minutes_off == 40.0
    assert slots[4].due_at == at(8)


def test_depletion_sample_and_end_of_batch() -> None:
    samples = [TakenSample(9, at(20, 5), None)]
    slots = sample_schedule(START, samples, at(21), depleted_at=at(20), ended_at=at(20, 30))
    assert slots[-1].status is SlotStatus.TAKEN and slots[-1].sample_id == 9
    # The batch ended: nothing is due any more, every open slot is missed.
    assert statuses(slots)[:-1] == ["missed"] * 7


def test_a_sample_is_used_for_one_slot_only() -> None:
    samples = [TakenSample(1, at(0), 0.0)]
    slots = sample_schedule(START, samples, at(2, 5))
    assert [slot.sample_id for slot in slots[:2]] == [1, None]
    assert slots[1].status is SlotStatus.DUE
