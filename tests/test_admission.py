"""Admission of readings (database/admission.py): every discard has a reason and a count."""

from __future__ import annotations

import pytest

from bptwin.database.admission import (
    BUS_ORIGIN,
    Admission,
    AdmissionPolicy,
    ClockFault,
    Discard,
    unit_problem,
)
from bptwin.database.reading import Reading

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy(**overrides: object) -> AdmissionPolicy:
    values: dict[str, object] = {
        "reactors": frozenset({"R1", "R2"}),
        "owners": {
            ("R1", "ph"): "probes",
            ("R1", "do"): "probes",
            ("R1", "offgas_o2"): "analyser",
            ("R2", "ph"): "sim",
        },
        "bus_sources": frozenset({"probes"}),
        "station_clock_sources": frozenset({"sim"}),
    }
    values.update(overrides)
    return AdmissionPolicy(**values)  # type: ignore[arg-type]


def reading(reactor: str = "R1", channel: str = "ph", at: float = NOW, unit: str = "pH") -> Reading:
    return Reading(at, reactor, channel, 5.0, unit)


def test_a_reading_of_the_owning_source_is_admitted() -> None:
    admission = Admission(policy(), clock=Clock())
    assert admission.admit(reading(), BUS_ORIGIN) is None
    assert admission.admit(reading(channel="offgas_o2", unit="%v/v"), "analyser") is None
    assert admission.stats().admitted == 2
    assert admission.stats().discarded == {}


@pytest.mark.parametrize(
    ("bad", "origin", "reason"),
    [
        (reading(reactor="R99"), BUS_ORIGIN, Discard.UNKNOWN_REACTOR),
        (reading(reactor="Ｒ1"), BUS_ORIGIN, Discard.UNKNOWN_REACTOR),  # full-width R
        (reading(channel="рh"), BUS_ORIGIN, Discard.UNKNOWN_CHANNEL),  # Cyrillic er
        (reading(unit="pH\x1b[2J"), BUS_ORIGIN, Discard.BAD_UNIT),
        (reading(unit="pH\u202e"), BUS_ORIGIN, Discard.BAD_UNIT),  # right-to-left override
        (reading(channel="offgas_o2", unit="%v/v"), BUS_ORIGIN, Discard.ACQUIRED_LOCALLY),
        (reading(channel="ph"), "analyser", Discard.OTHER_SOURCE),
        (reading(channel="temp_broth", unit="°C"), BUS_ORIGIN, Discard.NO_SOURCE),
        (reading(at=NOW + 23 * 3600), BUS_ORIGIN, Discard.CLOCK_AHEAD),
        (reading(at=NOW + 5.5), BUS_ORIGIN, Discard.CLOCK_AHEAD),
        (reading(at=NOW - 2 * 3600 - 1), BUS_ORIGIN, Discard.TOO_OLD),
        (reading(at=946_684_800.0), BUS_ORIGIN, Discard.TOO_OLD),  # 2000-01-01
    ],
)
def test_every_discard_is_counted_under_its_origin_and_reason(
    bad: Reading, origin: str, reason: Discard
) -> None:
    admission = Admission(policy(), clock=Clock())
    assert admission.admit(bad, origin) is reason
    assert admission.stats().discarded == {(origin, reason.value): 1}
    assert admission.stats().admitted == 0


def test_within_the_skew_and_the_horizon_is_admitted() -> None:
    admission = Admission(policy(), clock=Clock())
    assert admission.admit(reading(at=NOW + 4.9), BUS_ORIGIN) is None
    assert admission.admit(reading(at=NOW - 2 * 3600 + 1), BUS_ORIGIN) is None


def test_rebased_sources_may_lie_beyond_the_horizon_but_never_ahead() -> None:
    admission = Admission(policy(), clock=Clock())
    assert admission.admit(reading("R2", at=NOW - 30 * 3600), "sim") is None
    assert admission.admit(reading("R2", at=NOW + 60), "sim") is Discard.CLOCK_AHEAD


def test_the_skew_and_horizon_are_settings() -> None:
    admission = Admission(policy(max_clock_skew_s=0.5, history_horizon_s=60), clock=Clock())
    assert admission.admit(reading(at=NOW + 1), BUS_ORIGIN) is Discard.CLOCK_AHEAD
    assert admission.admit(reading(at=NOW - 61), BUS_ORIGIN) is Discard.TOO_OLD
    with pytest.raises(ValueError, match="history_horizon_s"):
        policy(history_horizon_s=0)


def test_a_clock_fault_that_persists_is_reported_once_and_clears_when_quiet() -> None:
    clock = Clock()
    raised: list[ClockFault] = []
    admission = Admission(policy(clock_fault_after_s=30), clock=clock, on_clock_fault=raised.append)
    for second in range(40):
        clock.now = NOW + second
        admission.admit(reading(at=clock.now + 3600), BUS_ORIGIN)
    assert len(raised) == 1
    fault = raised[0]
    assert (fault.origin, fault.reactor, fault.persistent) == (BUS_ORIGIN, "R1", True)
    assert fault.worst_ahead_s == pytest.approx(3600)
    (now_fault,) = admission.clock_faults()
    assert now_fault.count == 40 and now_fault.persistent
    assert "ahead of the station clock" in now_fault.describe()
    clock.now += 31
    assert admission.clock_faults() == ()


def test_a_single_future_reading_is_a_fault_but_not_a_persistent_one() -> None:
    clock = Clock()
    raised: list[ClockFault] = []
    admission = Admission(policy(), clock=clock, on_clock_fault=raised.append)
    admission.admit(reading(at=NOW + 23 * 3600), BUS_ORIGIN)
    assert raised == []
    (fault,) = admission.clock_faults()
    assert not fault.persistent
    assert admission.stats().by_reason() == {"clock_ahead": 1}


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("bptwin/v1/R1/sensors/ph", None),
        ("bptwin/v1/R1/sensors", None),  # a snapshot: channels checked once decoded
        ("bptwin/v1/R99/sensors", Discard.UNKNOWN_REACTOR),
        ("bptwin/v1/Ｒ1/sensors/ph", Discard.UNKNOWN_REACTOR),
        ("bptwin/v1/R1/sensors/рh", Discard.UNKNOWN_CHANNEL),
        ("bptwin/v1/R1/sensors/ph/extra", Discard.BAD_TOPIC),
        ("bptwin/v1/R1/sensors/a/v1/R2/sensors/ph", Discard.BAD_TOPIC),
        ("bptwin/v1/R1/sensors/offgas_o2", Discard.ACQUIRED_LOCALLY),
        ("bptwin/v1/R2/sensors/temp_broth", Discard.NO_SOURCE),
    ],
)
def test_the_topic_gate_refuses_by_topic_alone(topic: str, reason: Discard | None) -> None:
    admission = Admission(policy(), clock=Clock())
    gate = admission.topic_gate("bptwin")
    assert gate(topic) is (reason is None)
    expected = {} if reason is None else {(BUS_ORIGIN, reason.value): 1}
    assert admission.stats().discarded == expected


def test_the_echo_on_the_in_process_bus_is_skipped_not_counted_as_a_discard() -> None:
    admission = Admission(policy(), clock=Clock())
    gate = admission.topic_gate("plant/a", echo_expected=True)
    assert not gate("plant/a/v1/R1/sensors/offgas_o2")
    assert admission.stats().discarded == {}
    assert admission.stats().echoes == 1
    assert not gate("plant/a/v1/R9/sensors/ph")
    assert admission.stats().discarded_total == 1


def test_units_are_data_unless_they_hold_control_characters() -> None:
    assert unit_problem("ph", "pH'); DROP TABLE points;--") is None
    assert unit_problem("ph", "") is None
    problem = unit_problem("ph", "pH\x07")
    assert problem is not None and "control" in problem


def test_problems_name_clock_faults_and_discards_by_reason() -> None:
    admission = Admission(policy(), clock=Clock())
    admission.admit(reading(reactor="R99"), BUS_ORIGIN)
    admission.admit(reading(at=NOW + 600), BUS_ORIGIN)
    lines = admission.problems()
    assert lines[0].startswith("clock fault: 1 readings of R1 from bus")
    assert lines[1] == "readings discarded: 2 (clock_ahead 1, unknown_reactor 1)"
