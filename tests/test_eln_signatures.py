"""The end of a batch and electronic signatures, on SQLite and Postgres: ending and aborting,
the closure record, signing with name and PIN, immutability of signed records, superseding."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from sqlalchemy import text
from sqlmodel import select

from bptwin.eln.errors import NotebookPermissionError, NotebookValidationError
from bptwin.eln.models import (
    BatchClosure,
    BatchStatus,
    ProcessChange,
    SignatureMeaning,
)
from bptwin.eln.schedule import SOP_TIMEPOINTS_H
from bptwin.eln.services import NotebookService
from bptwin.eln.signatures import content_hash, content_of, manifestation
from tests.fixtures.notebook import SettableClock
from tests.test_eln_services import T0

# The fixtures of the notebook services' tests: its clock, the notebook, batch 5 running.
from tests.test_eln_services import clock as clock
from tests.test_eln_services import running as running
from tests.test_eln_services import service as service

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


def _ended(service: NotebookService, number: int, clock: SettableClock, samples: int = 8) -> None:
    """``samples`` samples at the SOP times (and after), then the batch ended at T0 + 25 h."""
    clock.now = T0 + timedelta(hours=25)
    for index in range(samples):
        hours = SOP_TIMEPOINTS_H[index] if index < len(SOP_TIMEPOINTS_H) else 10.0 + index
        service.samples.add_sample(
            "olga",
            number,
            taken_at=T0 + timedelta(hours=1 + hours),
            od_raw=0.3,
            sop_timepoint_h=hours if index < len(SOP_TIMEPOINTS_H) else None,
        )
    service.batches.end_batch("olga", number)


def test_an_abort_needs_its_reason_and_the_end_records_who(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    clock.now = T0 + timedelta(hours=5)
    with pytest.raises(NotebookValidationError, match="say why") as caught:
        service.batches.end_batch("olga", running, aborted=True)
    assert caught.value.field == "reason"
    assert service.batches.get_batch(running).status == BatchStatus.RUNNING
    batch = service.batches.end_batch("olga", running, aborted=True, reason="contaminated")
    assert (batch.status, batch.ended_by, batch.end_reason) == (
        BatchStatus.ABORTED,
        "olga",
        "contaminated",
    )
    with pytest.raises(NotebookValidationError, match="not running"):
        service.batches.end_batch("olga", running)


def test_closure_records_final_values_and_is_closed_by_a_signed_supervisor(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    _ended(service, running, clock)
    with pytest.raises(NotebookValidationError) as caught:
        service.batches.close_batch("olga", running, outcome="complete", harvest_volume_ml="-5")
    assert caught.value.field == "harvest volume"
    closure = service.batches.close_batch(
        "olga",
        running,
        outcome="complete",
        final_od600="41.5",
        final_dcw_g_per_l="22.1",
        harvest_volume_ml="1450",
    )
    assert (closure.final_dcw_g_per_l, closure.harvest_volume_ml, closure.recorded_by) == (
        22.1,
        1450.0,
        "olga",
    )
    with pytest.raises(NotebookPermissionError, match="wrong PIN"):
        service.batches.sign_off_batch("sam", running, pin="0000")
    with pytest.raises(NotebookPermissionError, match="supervisor"):
        service.batches.sign_off_batch("olga", running, pin="1234")
    assert service.signatures.list_signatures(batch_number=running) == []

    clock.now = T0 + timedelta(hours=26)
    service.batches.sign_off_batch("sam", running, pin="4321")
    [signature] = service.signatures.list_signatures(batch_number=running)
    assert (signature.meaning, signature.signer, signature.printed_name) == (
        SignatureMeaning.CLOSED,
        "sam",
        "Sam Super",
    )
    assert signature.signed_at == T0 + timedelta(hours=26)
    stored = service.batches.get_closure(running)
    assert stored is not None and content_hash(content_of(stored)) == signature.content_hash
    local = T0.astimezone() + timedelta(hours=26)
    assert signature.utc_offset_minutes * 60 == local.utcoffset().total_seconds()  # type: ignore[union-attr]
    shown = manifestation(signature)
    assert "Sam Super (sam, supervisor) closed on 2026-03-03 10:00:00 UTC" in shown
    assert service.signatures.verify_signatures() == []
    with pytest.raises(NotebookValidationError, match="already closed by sam"):
        service.batches.sign_off_batch("sam", running, pin="4321")


def test_fewer_than_the_sop_samples_need_a_reason_at_closure(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    _ended(service, running, clock, samples=5)
    with pytest.raises(NotebookValidationError, match="5 of the 8 SOP samples") as caught:
        service.batches.close_batch("olga", running, outcome="complete")
    assert caught.value.field == "missing-samples reason"
    closure = service.batches.close_batch(
        "olga", running, outcome="complete", missing_samples_reason="pump failure at 10 h"
    )
    assert closure.missing_samples_reason == "pump failure at 10 h"


def test_a_signed_closure_changes_only_under_a_new_signature_and_both_are_kept(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    _ended(service, running, clock)
    service.batches.close_batch("olga", running, outcome="complete", final_od600=40.0)
    service.batches.sign_off_batch("sam", running, pin="4321")
    # Any write through the notebook that touches the signed row is refused.
    with (
        pytest.raises(NotebookValidationError, match="is signed"),
        service.unit.write("sam") as session,
    ):
        row = session.exec(select(BatchClosure)).one()
        row.final_od600 = 99.0
    assert service.batches.get_closure(running).final_od600 == 40.0  # type: ignore[union-attr]
    with pytest.raises(NotebookValidationError, match="reason"):
        service.batches.amend_closure("sam", running, pin="4321", reason=" ", final_od600=42.0)
    with pytest.raises(NotebookPermissionError):
        service.batches.amend_closure("sam", running, pin="1", reason="typo", final_od600=42.0)
    clock.now = T0 + timedelta(hours=30)
    amended = service.batches.amend_closure(
        "sam", running, pin="4321", reason="OD600 re-read: dilution typo", final_od600=42.0
    )
    assert amended.final_od600 == 42.0
    first, second = service.signatures.list_signatures(batch_number=running)
    assert first.superseded_at == T0 + timedelta(hours=30) and first.superseded_by == second.id
    assert second.superseded_at is None and second.reason == "OD600 re-read: dilution typo"
    assert first.content["fields"]["final_od600"] == 40.0
    assert second.content["fields"]["final_od600"] == 42.0
    assert "superseded" in manifestation(first)
    assert service.signatures.verify_signatures() == []


def test_process_change_approval_is_a_signature_and_freezes_the_change(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    change = service.process_changes.plan_process_change(
        "olga",
        running,
        parameter="stirrer_rpm",
        old_value="800",
        new_value="900",
        planned_at=T0 + timedelta(hours=3),
        reason="DO below 30 %",
    )
    with pytest.raises(NotebookPermissionError):
        service.process_changes.approve_process_change("olga", change.id, pin="1234")
    approved = service.process_changes.approve_process_change("sam", change.id, pin="4321")
    assert approved.approved_by == "sam"
    [signature] = service.signatures.list_signatures(table_name="process_change")
    assert signature.meaning == SignatureMeaning.APPROVED and signature.record_id == change.id
    with pytest.raises(NotebookValidationError, match="already approved"):
        service.process_changes.approve_process_change("sam", change.id, pin="4321")
    with (
        pytest.raises(NotebookValidationError, match="is signed"),
        service.unit.write("olga") as session,
    ):
        session.get(ProcessChange, change.id).new_value = "1200"  # type: ignore[union-attr]


def test_a_deviation_review_and_its_closing_are_signed_and_the_review_is_superseded(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    deviation = service.deviations.log_deviation(
        "olga", running, level=2, category="process", title="DO dip"
    )
    with pytest.raises(NotebookPermissionError):
        service.deviations.review_deviation("sam", deviation.id, root_cause="x", pin="9999")
    service.deviations.review_deviation("sam", deviation.id, root_cause="foam", pin="4321")
    clock.now = T0 + timedelta(hours=2)
    service.deviations.review_deviation("sam", deviation.id, close=True, pin="4321")
    review, closing = service.signatures.list_signatures(table_name="deviation")
    assert (review.meaning, closing.meaning) == (SignatureMeaning.REVIEWED, SignatureMeaning.CLOSED)
    assert review.superseded_by == closing.id and closing.reason == "closed after review"
    assert service.signatures.verify_signatures() == []


def test_a_calibration_override_is_signed_by_the_supervisor(
    service: NotebookService, running: int
) -> None:
    fields = dict(channel="do", kind="zero_span", measured={}, results={}, passed=False)
    with pytest.raises(NotebookPermissionError, match="PIN"):
        service.calibrations.record_calibration("sam", **fields, override_reason="slow")
    record = service.calibrations.record_calibration(
        "sam", **fields, override_reason="slow but linear", override_pin="4321"
    )
    [signature] = service.signatures.list_signatures(table_name="calibration_record")
    assert (signature.record_id, signature.meaning) == (record.id, SignatureMeaning.APPROVED)


def test_verify_names_a_closure_changed_behind_the_notebook_and_a_forged_signature(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    _ended(service, running, clock)
    service.batches.close_batch("olga", running, outcome="complete", final_od600=40.0)
    service.batches.sign_off_batch("sam", running, pin="4321")
    with service.engine.begin() as connection:
        connection.execute(text("UPDATE batch_closure SET final_od600 = 55.0"))
    [problem] = service.signatures.verify_signatures()
    assert problem.table_name == "batch_closure"
    assert "changed after signing (final_od600)" in problem.reason
    with service.engine.begin() as connection:
        connection.execute(text("UPDATE batch_closure SET final_od600 = 40.0"))
        connection.execute(text("UPDATE signature SET printed_name = 'Someone Else'"))
    [problem] = service.signatures.verify_signatures()
    assert "differs from its audited image" in problem.reason


def test_local_time_of_a_signature_uses_the_stored_offset(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    _ended(service, running, clock)
    service.batches.close_batch("olga", running, outcome="complete")
    service.batches.sign_off_batch("sam", running, pin="4321")
    [signature] = service.signatures.list_signatures()
    from bptwin.eln.signatures import local_time

    shown = local_time(signature)
    assert shown == signature.signed_at and shown.utcoffset() is not None
    assert shown.astimezone(timezone.utc) == signature.signed_at
