"""Batch acceptance: each of the five criteria passing and failing on hand-made batches, and the
supervisor's decision recorded and audited on SQLite and the real Postgres."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine

from bptwin.eln.acceptance import (
    VERDICT_FAIL,
    VERDICT_INCOMPLETE,
    VERDICT_PASS,
    BatchRecords,
    evaluate_records,
    fit_line,
    line_outliers,
)
from bptwin.eln.acceptance_service import (
    accepted_batch_numbers,
    decisions_in_force,
    evaluate_acceptance,
    latest_decision,
    list_decisions,
    record_acceptance_decision,
)
from bptwin.eln.errors import (
    NotebookNotFoundError,
    NotebookPermissionError,
    NotebookValidationError,
)
from bptwin.eln.models import (
    AcceptanceDecision,
    Batch,
    BatchClosure,
    BatchStatus,
    CampaignPhase,
    Deviation,
    DeviationStatus,
    Inoculum,
    Sample,
)
from bptwin.eln.services import MANDATORY_CALIBRATIONS, NotebookService
from tests.fixtures.notebook import SettableClock, staffed_notebook

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
HOURS = (0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0)
DEPLETION_H = 20.0
DCW_PER_OD = 0.3
CLEAN_DROPOUT = {"do": 0.05, "ph": 0.0, "offgas_co2": 0.4}


def od_at(hours: float) -> float:
    """Exponential growth from OD 0.4 at 0.2 h⁻¹ (about 22 at 20 h)."""
    return 0.4 * math.exp(0.2 * hours)


def good_records() -> BatchRecords:
    """A batch that meets every criterion, built from notebook rows without a database."""
    batch = Batch(
        id=1,
        number=5,
        phase=CampaignPhase.B,
        operator="olga",
        status=BatchStatus.COMPLETE,
        inoculated_at=T0,
        ended_at=T0 + timedelta(hours=22),
    )
    samples = []
    for index, hours in enumerate((*HOURS, DEPLETION_H)):
        od = od_at(hours)
        samples.append(
            Sample(
                id=index + 1,
                batch_id=1,
                sop_timepoint_h=None if hours == DEPLETION_H else hours,
                taken_at=T0 + timedelta(hours=hours, minutes=3),
                entered_at=T0 + timedelta(hours=hours, minutes=30),
                od_raw=od,
                od600=od,
                # ±1 % scatter around the line: real, but well inside its variance.
                dcw_g_per_l=DCW_PER_OD * od * (1.0 + 0.01 * (-1) ** index),
                microscopy_clean=True,
                entered_by="olga",
            )
        )
    closure = BatchClosure(id=1, batch_id=1, depletion_time_h=DEPLETION_H, outcome="complete")
    inoculum = Inoculum(
        id=1,
        batch_id=1,
        recorded_by="olga",
        od600_raw=0.4,
        od600=4.0,
        volume_ml=100,
        microscopy_clean=True,
        go=True,
    )
    return BatchRecords(batch, tuple(samples), (), closure, inoculum)


def deviation(level: int, status: DeviationStatus = DeviationStatus.REVIEWED, **kw) -> Deviation:
    fields = {"id": level * 10, "batch_id": 1, "level": level, "category": "do", "title": "DO low"}
    fields.update(kw)
    return Deviation(status=status, reported_by="olga", reviewed_by="sam", **fields)


def evaluate(records: BatchRecords, dropout: dict[str, float] | None = CLEAN_DROPOUT):
    return evaluate_records(records, sensor_dropout_pct=dropout)


def with_batch(records: BatchRecords, **changes) -> BatchRecords:
    batch = records.batch.model_copy(update=changes)
    return dataclasses.replace(records, batch=batch)


def with_sample(records: BatchRecords, index: int, **changes) -> BatchRecords:
    samples = list(records.samples)
    samples[index] = samples[index].model_copy(update=changes)
    return dataclasses.replace(records, samples=tuple(samples))


# ------------------------------------------------------------------ the rules, one by one


def test_a_good_batch_passes_every_criterion_with_evidence() -> None:
    evaluation = evaluate(good_records())
    assert evaluation.verdict == VERDICT_PASS
    assert [c.number for c in evaluation.criteria] == [1, 2, 3, 4, 5]
    assert all(c.passed is True and c.evidence for c in evaluation.criteria)
    text = evaluation.checklist()
    assert "duration 22.0 h" in text and "all 8 SOP samples" in text
    assert "worst offgas_co2 0.40 %" in text


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda r: with_batch(r, status=BatchStatus.ABORTED), "aborted"),
        (lambda r: with_batch(r, ended_at=T0 + timedelta(hours=27)), "outside 16–26 h"),
        (lambda r: with_batch(r, ended_at=T0 + timedelta(hours=15)), "15.0 h"),
        (
            lambda r: dataclasses.replace(
                r, closure=r.closure.model_copy(update={"depletion_time_h": None})
            ),
            "depletion not reached",
        ),
    ],
)
def test_completion_fails(change, words: str) -> None:
    result = evaluate(change(good_records())).criterion(1)
    assert result.passed is False
    assert any(words in line for line in result.evidence)


def test_completion_is_undecided_while_running_and_without_a_closure() -> None:
    records = with_batch(good_records(), status=BatchStatus.RUNNING, ended_at=None)
    records = dataclasses.replace(records, closure=None)
    evaluation = evaluate(records)
    assert evaluation.criterion(1).passed is None
    assert evaluation.verdict == VERDICT_INCOMPLETE
    # depletion found in the data decides that part without a closure record
    detected = evaluate_records(
        dataclasses.replace(good_records(), closure=None),
        sensor_dropout_pct=CLEAN_DROPOUT,
        depletion_time_h=19.5,
    )
    assert detected.criterion(1).passed is True
    assert "19.5 h (from the data)" in " ".join(detected.criterion(1).evidence)
    agree = evaluate_records(good_records(), depletion_time_h=19.6).criterion(1)
    assert not any("closure record says" in line for line in agree.evidence)
    differ = evaluate_records(good_records(), depletion_time_h=18.0).criterion(1)
    assert differ.passed is True and "note: the closure record says 20.0 h" in differ.evidence


def test_completeness_fails_on_a_missing_sample_a_late_form_and_dropout() -> None:
    good = good_records()
    missing = dataclasses.replace(good, samples=good.samples[:3] + good.samples[4:])
    result = evaluate(missing).criterion(2)
    assert result.passed is False and "missing: 6 h" in " ".join(result.evidence)

    late = with_sample(good, 2, entered_at=good.samples[2].taken_at + timedelta(hours=2, minutes=5))
    result = evaluate(late).criterion(2)
    assert result.passed is False
    assert "the 4 h sample was entered 2.1 h after sampling" in " ".join(result.evidence)

    result = evaluate(good, {"do": 0.2, "ph": 1.0, "offgas_o2": 3.5}).criterion(2)
    assert result.passed is False
    assert "offgas_o2 3.50 %, ph 1.00 %" in " ".join(result.evidence)


def test_completeness_is_undecided_without_the_dropout_numbers() -> None:
    evaluation = evaluate(good_records(), None)
    assert evaluation.criterion(2).passed is None
    assert evaluation.verdict == VERDICT_INCOMPLETE
    assert "not computed" in " ".join(evaluation.criterion(2).evidence)


def test_stability_rules() -> None:
    good = good_records()
    one_reviewed = dataclasses.replace(good, deviations=(deviation(2), deviation(1)))
    assert evaluate(one_reviewed).criterion(3).passed is True
    open_major = dataclasses.replace(good, deviations=(deviation(2, DeviationStatus.OPEN),))
    assert evaluate(open_major).criterion(3).passed is None
    assert "awaits its review" in " ".join(evaluate(open_major).criterion(3).evidence)
    two = dataclasses.replace(good, deviations=(deviation(2), deviation(2, id=21)))
    assert evaluate(two).criterion(3).passed is False
    critical = dataclasses.replace(good, deviations=(deviation(3),))
    result = evaluate(critical).criterion(3)
    assert result.passed is False and "excludes the batch" in " ".join(result.evidence)


def test_sterility_rules() -> None:
    good = good_records()
    dirty = with_sample(good, 5, microscopy_clean=False, microscopy_text="rods, budding absent")
    result = evaluate(dirty).criterion(4)
    assert result.passed is False
    assert "the 12 h sample microscopy NOT clean: rods" in " ".join(result.evidence)
    unseen = with_sample(good, 5, microscopy_clean=None)
    assert evaluate(unseen).criterion(4).passed is None
    inoculum = good.inoculum.model_copy(update={"microscopy_clean": False})
    assert evaluate(dataclasses.replace(good, inoculum=inoculum)).criterion(4).passed is False


def test_measurement_quality_fails_on_a_drop_a_bad_line_and_an_outlier() -> None:
    good = good_records()
    dropped = with_sample(good, 5, od600=good.samples[4].od600 * 0.5)
    result = evaluate(dropped).criterion(5)
    assert result.passed is False and "does not follow growth" in " ".join(result.evidence)

    outlier = with_sample(good, 6, dcw_g_per_l=good.samples[6].dcw_g_per_l * 1.4)
    result = evaluate(outlier).criterion(5)
    assert result.passed is False
    assert "the 16 h sample" in " ".join(result.evidence) and "SD off the line" in " ".join(
        result.evidence
    )

    scattered = good
    for index, factor in ((5, 1.6), (6, 0.6), (7, 1.25)):
        scattered = with_sample(
            scattered, index, dcw_g_per_l=good.samples[index].dcw_g_per_l * factor
        )
    result = evaluate(scattered).criterion(5)
    assert result.passed is False and "below 0.95" in " ".join(result.evidence)


def test_dry_weight_only_samples_are_counted_and_never_taken_for_an_od600() -> None:
    good = good_records()
    one_dry = with_sample(good, 3, od600=None, od_raw=None)
    result = evaluate(one_dry).criterion(5)
    evidence = " ".join(result.evidence)
    assert result.passed is True
    assert "1 sample(s) with a dry weight and no OD600: not in the OD600 checks" in evidence
    assert f"over {len(good.samples) - 1} samples" in evidence  # the OD–DCW line without it

    # A lab with no photometer at all: growth is judged on the dry weight, the OD–DCW line
    # cannot be drawn (undecided, not failed).
    all_dry = good
    for index in range(len(good.samples)):
        all_dry = with_sample(all_dry, index, od600=None, od_raw=None)
    result = evaluate(all_dry).criterion(5)
    evidence = " ".join(result.evidence)
    assert result.passed is None
    assert f"{len(good.samples)} sample(s) with a dry weight and no OD600" in evidence
    assert "DCW rose from" in evidence and "OD600 rose" not in evidence
    assert "0 samples with both OD600 and DCW" in evidence
    fallen = with_sample(all_dry, 5, dcw_g_per_l=good.samples[4].dcw_g_per_l * 0.5)
    result = evaluate(fallen).criterion(5)
    assert result.passed is False and "DCW fell from" in " ".join(result.evidence)


def test_line_helpers() -> None:
    fit = fit_line([1.0, 2.0, 3.0, 4.0], [0.3, 0.6, 0.9, 1.2])
    assert fit is not None and fit.slope == pytest.approx(0.3) and fit.r2 == pytest.approx(1.0)
    assert fit_line([2.0, 2.0], [1.0, 1.1]) is None
    found = line_outliers([1, 2, 3, 4, 5, 6], [0.3, 0.6, 0.9, 2.5, 1.5, 1.8], 3.0)
    assert [index for index, _ in found] == [3]


# ------------------------------------------------------------------ the decision, audited


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def notebook(engine: Engine, clock: SettableClock) -> NotebookService:
    return staffed_notebook(engine, "olga", clock=clock)


def run_batch(notebook: NotebookService, clock: SettableClock, number: int = 5) -> int:
    """A whole batch through the notebook: calibrations, inoculum, 8 samples, end, closure."""
    notebook.batches.create_batch("olga", number, "B", strain="X-33", reactor_id="R1")
    for channel in MANDATORY_CALIBRATIONS:
        notebook.calibrations.record_calibration(
            "olga", channel=channel, kind="two_point", measured={}, results={}, passed=True
        )
    notebook.preparation.record_inoculum(
        "olga", number, od600_raw=0.4, dilution=10, volume_ml=100, microscopy_clean=True
    )
    start = clock.now
    notebook.batches.start_batch("olga", number, inoculated_at=start)
    for index, hours in enumerate((*HOURS, DEPLETION_H)):
        taken = start + timedelta(hours=hours, minutes=2)
        clock.now = taken + timedelta(minutes=20)
        od = od_at(hours)
        notebook.samples.add_sample(
            "olga",
            number,
            taken_at=taken,
            od_raw=od / 10,
            dilution=10,
            sop_timepoint_h=None if hours == DEPLETION_H else hours,
            dcw_g_per_l=DCW_PER_OD * od * (1.0 + 0.01 * (-1) ** index),
            microscopy_clean=True,
        )
    clock.now = start + timedelta(hours=22)
    notebook.batches.end_batch("olga", number, ended_at=clock.now)
    notebook.batches.close_batch("olga", number, outcome="complete", depletion_time_h=DEPLETION_H)
    return number


def test_evaluation_from_the_notebook_matches_the_rules(
    notebook: NotebookService, clock: SettableClock
) -> None:
    number = run_batch(notebook, clock)
    evaluation = evaluate_acceptance(notebook, number, sensor_dropout_pct=CLEAN_DROPOUT)
    assert evaluation.verdict == VERDICT_PASS, evaluation.checklist()
    assert evaluation.phase == "B"
    with pytest.raises(NotebookNotFoundError):
        evaluate_acceptance(notebook, 99)


def test_decision_is_recorded_audited_and_supersedes(
    notebook: NotebookService, clock: SettableClock
) -> None:
    number = run_batch(notebook, clock)
    row, evaluation = record_acceptance_decision(
        notebook,
        "sam",
        "4321",
        number,
        decision="accept",
        reason="all criteria met",
        sensor_dropout_pct=CLEAN_DROPOUT,
    )
    assert row.decision == AcceptanceDecision.ACCEPT and row.verdict == VERDICT_PASS
    assert row.evaluation["criteria"][1]["status"] == "pass"
    assert evaluation.passed
    trail = notebook.audit.audit_trail(table_name="batch_acceptance", record_id=row.id)
    assert len(trail) == 1 and trail[0].actor == "sam" and trail[0].action.value == "insert"
    assert trail[0].after["reason"] == "all criteria met"
    assert accepted_batch_numbers(notebook) == [number]

    clock.now += timedelta(hours=1)
    later, _ = record_acceptance_decision(
        notebook,
        "sam",
        "4321",
        number,
        decision="reject",
        reason="DCW filters of this run were mislabelled",
    )
    assert latest_decision(notebook, number).id == later.id
    assert [d.id for d in list_decisions(notebook, number)] == [later.id, row.id]
    assert decisions_in_force(notebook)[number].decision == AcceptanceDecision.REJECT
    assert accepted_batch_numbers(notebook) == []
    assert notebook.audit.verify_audit_chain() is None


def test_decision_refusals(notebook: NotebookService, clock: SettableClock) -> None:
    number = run_batch(notebook, clock)
    decide = lambda **kw: record_acceptance_decision(  # noqa: E731
        notebook,
        kw.pop("who", "sam"),
        kw.pop("pin", "4321"),
        number,
        **{"decision": "accept", "reason": "ok", **kw},
    )
    with pytest.raises(NotebookPermissionError, match="wrong PIN"):
        decide(pin="0000")
    with pytest.raises(NotebookPermissionError, match="needs a supervisor"):
        decide(who="olga", pin="1234")
    with pytest.raises(NotebookValidationError, match="reason"):
        decide(reason="  ")
    with pytest.raises(NotebookValidationError, match="decision"):
        decide(decision="maybe")
    # no dropout numbers: undecided, accepted only explicitly
    with pytest.raises(NotebookValidationError, match="not decided yet"):
        decide()
    row, _ = decide(accept_incomplete=True, reason="store offline; trends checked by hand")
    assert row.verdict == VERDICT_INCOMPLETE
    # a failing batch cannot be accepted, only rejected
    notebook.deviations.log_deviation(
        "olga", number, level=3, category="sterility", title="Contaminated"
    )
    with pytest.raises(NotebookValidationError, match="fails criteria 3"):
        decide(sensor_dropout_pct=CLEAN_DROPOUT)
    rejected, evaluation = decide(decision="reject", reason="contaminated")
    assert rejected.verdict == VERDICT_FAIL and evaluation.criterion(3).passed is False
    assert len(list_decisions(notebook, number)) == 2  # the refused ones left nothing
    assert notebook.audit.verify_audit_chain() is None


def test_a_running_batch_cannot_be_decided(notebook: NotebookService, clock: SettableClock) -> None:
    notebook.batches.create_batch("olga", 6, "B")
    with pytest.raises(NotebookValidationError, match="once it has ended"):
        record_acceptance_decision(notebook, "sam", "4321", 6, decision="reject", reason="x")
