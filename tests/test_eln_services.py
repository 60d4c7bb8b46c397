"""NotebookService on SQLite and Postgres: rules, validation messages, permissions, audit."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from bptwin.database.relational import make_engine
from bptwin.eln.errors import (
    NotebookNotFoundError,
    NotebookPermissionError,
    NotebookValidationError,
)
from bptwin.eln.models import AuditEntry, BatchStatus, DeviationStatus, OperatorRole
from bptwin.eln.schedule import SOP_TIMEPOINTS_H
from bptwin.eln.services import MANDATORY_CALIBRATIONS, NotebookService
from tests.fixtures.notebook import SettableClock, staffed_notebook

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


@pytest.fixture
def service(engine: Engine, clock: SettableClock) -> NotebookService:
    return staffed_notebook(engine, "olga", clock=clock)


def calibrate_all(service: NotebookService, actor: str = "olga") -> None:
    for channel in MANDATORY_CALIBRATIONS:
        service.calibrations.record_calibration(
            actor,
            channel=channel,
            kind="two_point",
            measured={"e7_mv": 1.5, "e4_mv": 171.0},
            results={"slope_pct": 98.7},
            passed=True,
            valid_until=T0 + timedelta(days=7),
        )


@pytest.fixture
def running(service: NotebookService, clock: SettableClock) -> int:
    """Batch 5, calibrated, inoculum in spec, inoculated at T0 + 1 h."""
    service.batches.create_batch("olga", 5, "B", strain="X-33", medium_lot="BSM-0425", vessel="V1")
    calibrate_all(service)
    service.preparation.record_inoculum(
        "olga", 5, od600_raw=0.41, dilution=10, volume_ml=100, microscopy_clean=True
    )
    clock.now = T0 + timedelta(hours=1)
    service.batches.start_batch("olga", 5)
    return 5


# ------------------------------------------------------------------ operators and PINs


def test_pins_are_hashed_and_checked(service: NotebookService) -> None:
    olga = service.operators.get_operator("olga")
    assert (
        olga is not None
        and olga.pin_hash.startswith("scrypt$1024$")
        and "1234" not in olga.pin_hash
    )
    assert service.operators.check_pin("olga", "1234")
    assert not service.operators.check_pin("olga", "1235")
    assert not service.operators.check_pin("nobody", "1234")
    assert service.operators.authenticate("sam", "4321").role == OperatorRole.SUPERVISOR
    with pytest.raises(NotebookPermissionError, match="wrong PIN"):
        service.operators.authenticate("sam", "0000")


def test_only_supervisors_add_operators_and_deactivated_ones_cannot_act(
    service: NotebookService,
) -> None:
    with pytest.raises(NotebookPermissionError, match="supervisor"):
        service.operators.create_operator("olga", "eve", "operator", "1111")
    with pytest.raises(NotebookValidationError) as caught:
        service.operators.create_operator("sam", "olga", "operator", "1111")
    assert caught.value.field == "name" and "already exists" in caught.value.message
    service.operators.set_operator_active("sam", "olga", False)
    assert not service.operators.check_pin("olga", "1234")
    with pytest.raises(NotebookPermissionError, match="deactivated"):
        service.batches.create_batch("olga", 1, "A")
    with pytest.raises(NotebookPermissionError, match="not a registered operator"):
        service.batches.create_batch("ghost", 1, "A")


def test_first_operator_must_be_a_supervisor(engine: Engine) -> None:
    fresh = NotebookService(engine)
    with pytest.raises(NotebookValidationError, match="first operator"):
        fresh.operators.create_operator("setup", "olga", "operator", "1234")


@pytest.mark.parametrize(
    ("name", "pin", "field"),
    [("Olga", "1234", "name"), ("x'; DROP TABLE batch;--", "1234", "name"), ("eve", "12", "PIN")],
)
def test_bad_operator_fields_are_named(
    service: NotebookService, name: str, pin: str, field: str
) -> None:
    with pytest.raises(NotebookValidationError) as caught:
        service.operators.create_operator("sam", name, "operator", pin)
    assert caught.value.field == field


# ------------------------------------------------------------------ batches and inoculation


def test_batch_lifecycle_and_listing(service: NotebookService, running: int) -> None:
    batch = service.batches.get_batch(running)
    assert batch.status == BatchStatus.RUNNING
    assert batch.inoculated_at == T0 + timedelta(hours=1)
    service.batches.create_batch("olga", 6, "C")
    assert [b.number for b in service.batches.list_batches()] == [6, 5]
    assert [b.number for b in service.batches.list_batches("running")] == [5]
    ended = service.batches.end_batch("olga", running)
    assert ended.status == BatchStatus.COMPLETE and ended.ended_at is not None
    with pytest.raises(NotebookNotFoundError, match="no batch 99"):
        service.batches.get_batch(99)


def test_duplicate_batch_number_is_refused(service: NotebookService) -> None:
    service.batches.create_batch("olga", 3, "A")
    with pytest.raises(NotebookValidationError, match="batch 3 already exists"):
        service.batches.create_batch("olga", 3, "B")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"number": 0, "phase": "A"}, "batch number"),
        ({"number": 4, "phase": "D"}, "campaign phase"),
        ({"number": 4, "phase": "A", "medium_lot": "lot'; DELETE FROM batch"}, "medium lot"),
        ({"number": 4, "phase": "A", "notes": "nul\x00byte"}, "notes"),
    ],
)
def test_bad_batch_fields_are_named(service: NotebookService, kwargs: dict, field: str) -> None:
    with pytest.raises(NotebookValidationError) as caught:
        service.batches.create_batch("olga", **kwargs)
    assert caught.value.field == field
    assert service.batches.list_batches() == []


def test_inoculum_out_of_spec_is_refused_in_plain_words(service: NotebookService) -> None:
    service.batches.create_batch("olga", 5, "B")
    with pytest.raises(NotebookValidationError) as caught:
        service.preparation.record_inoculum(
            "olga", 5, od600_raw=0.71, dilution=10, volume_ml=100, microscopy_clean=True
        )
    assert caught.value.message == "inoculum OD600 7.1 is outside 2.0-6.0"


def test_out_of_spec_inoculum_with_reason_is_no_go_and_a_level_3_deviation(
    service: NotebookService,
) -> None:
    service.batches.create_batch("olga", 5, "B")
    inoculum = service.preparation.record_inoculum(
        "olga",
        5,
        od600_raw=0.71,
        dilution=10,
        volume_ml=100,
        microscopy_clean=True,
        out_of_spec_reason="planned high-inoculum batch",
    )
    assert inoculum.go is False and inoculum.od600 == pytest.approx(7.1)
    (deviation,) = service.deviations.list_deviations(5)
    assert deviation.level == 3 and "7.1" in deviation.description


def test_no_inoculation_before_calibrations_and_inoculum(
    service: NotebookService, clock: SettableClock
) -> None:
    service.batches.create_batch("olga", 5, "B")
    with pytest.raises(NotebookValidationError) as caught:
        service.batches.start_batch("olga", 5)
    assert "no passing calibration for ph" in caught.value.message
    assert "no inoculum recorded" in caught.value.message
    calibrate_all(service)
    service.calibrations.record_calibration(
        "olga", channel="do", kind="zero_span", measured={}, results={"t63_s": 45.0}, passed=False
    )
    assert service.calibrations.missing_calibrations(5) == ["do"]
    # A supervisor may accept the failed DO calibration, with a reason.
    with pytest.raises(NotebookPermissionError):
        service.calibrations.record_calibration(
            "olga",
            channel="do",
            kind="zero_span",
            measured={},
            results={},
            passed=False,
            override_reason="slow but linear",
            override_pin="1234",
        )
    service.calibrations.record_calibration(
        "sam",
        channel="do",
        kind="zero_span",
        measured={},
        results={},
        passed=False,
        override_reason="slow but linear",
        override_pin="4321",
    )
    assert service.calibrations.missing_calibrations(5) == []
    clock.now = T0 + timedelta(days=8)  # the other calibrations have expired
    assert set(service.calibrations.missing_calibrations(5)) == set(MANDATORY_CALIBRATIONS) - {"do"}


def test_supervisor_override_starts_with_a_note(service: NotebookService) -> None:
    service.batches.create_batch("olga", 5, "B")
    with pytest.raises(NotebookPermissionError):
        service.batches.start_batch("olga", 5, override_reason="analyser in repair")
    batch = service.batches.start_batch("sam", 5, override_reason="analyser in repair")
    assert batch.status == BatchStatus.RUNNING
    (note,) = service.notes.list_notes(5)
    assert "analyser in repair" in note.text and "no inoculum recorded" in note.text


# ------------------------------------------------------------------ samples


def test_sample_od600_is_reading_times_dilution_and_dcw_from_filters(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    clock.now = T0 + timedelta(hours=5)
    sample = service.samples.add_sample(
        "olga",
        running,
        taken_at=T0 + timedelta(hours=4, minutes=55),
        sop_timepoint_h=4,
        od_raw="0.452",
        dilution=20,
        filter_tare_mg=100.0,
        filter_dry_mg=115.0,
        filter_volume_ml=5.0,
        microscopy_clean=True,
    )
    assert sample.od600 == pytest.approx(9.04)
    assert sample.dcw_g_per_l == pytest.approx(3.0)
    assert sample.entered_at == clock.now and sample.entered_by == "olga"
    assert [s.id for s in service.samples.list_samples(running)] == [sample.id]


def test_no_samples_before_inoculation(service: NotebookService, running: int) -> None:
    service.batches.create_batch("olga", 6, "B")
    with pytest.raises(NotebookValidationError, match="not inoculated yet"):
        service.samples.add_sample("olga", 6, taken_at=T0, od_raw=0.1)
    with pytest.raises(NotebookValidationError, match="before the inoculation") as caught:
        service.samples.add_sample("olga", running, taken_at=T0 + timedelta(minutes=30), od_raw=0.1)
    assert caught.value.field == "sampling time"


def test_the_0_h_sample_typed_to_the_minute_of_the_inoculation_is_taken(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    """The sample form prefills "HH:MM": inoculated at 10:00:30, a 0 h sample at "10:00" is
    the inoculation's own minute (stored at the inoculation), not "before the inoculation"."""
    service.batches.create_batch("olga", 7, "B", strain="X-33", medium_lot="BSM-0425", vessel="V1")
    service.preparation.record_inoculum(
        "olga", 7, od600_raw=0.41, dilution=10, volume_ml=100, microscopy_clean=True
    )
    inoculated = T0 + timedelta(hours=2, seconds=30, microseconds=250_000)
    clock.now = inoculated
    service.batches.start_batch("olga", 7)
    clock.now = inoculated + timedelta(seconds=20)
    in_the_minute = T0 + timedelta(hours=2)
    sample = service.samples.add_sample(
        "olga", 7, taken_at=in_the_minute, sop_timepoint_h=0, od_raw=0.05
    )
    assert sample.taken_at == inoculated
    to_the_second = T0 + timedelta(hours=2, seconds=30)  # "10:00:30" typed: that second
    assert service.samples.add_sample("olga", 7, taken_at=to_the_second, od_raw=0.05).taken_at == (
        inoculated
    )
    with pytest.raises(NotebookValidationError, match="before the inoculation"):
        service.samples.add_sample(
            "olga", 7, taken_at=T0 + timedelta(hours=2, seconds=29), od_raw=0.1
        )
    with pytest.raises(NotebookValidationError, match="before the inoculation"):
        service.samples.add_sample(
            "olga", 7, taken_at=in_the_minute - timedelta(minutes=1), od_raw=0.1
        )


def test_a_sample_weighed_without_a_photometer_is_a_sample_and_its_trail_verifies(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    """A lab with dry weights and no OD600: the sample is stored without an OD600 (never as 0),
    and the audit trail checks its row, NULL OD600 included."""
    clock.now = T0 + timedelta(hours=5)
    typed = service.samples.add_sample(
        "olga", running, taken_at=T0 + timedelta(hours=2), sop_timepoint_h=2, dcw_g_per_l="2,4"
    )
    weighed = service.samples.add_sample(
        "olga",
        running,
        taken_at=T0 + timedelta(hours=4),
        sop_timepoint_h=4,
        filter_tare_mg=100.0,
        filter_dry_mg=141.0,
        filter_volume_ml=10.0,
    )
    assert (typed.od600, typed.od_raw, typed.dcw_g_per_l) == (None, None, pytest.approx(2.4))
    assert weighed.od600 is None and weighed.dcw_g_per_l == pytest.approx(4.1)
    listed = service.samples.list_samples(running)
    assert [(s.od600, s.sop_timepoint_h) for s in listed] == [(None, 2.0), (None, 4.0)]
    assert service.audit.verify_trail().ok
    # An OD600 written into the row behind the notebook's back is caught like any other change.
    with service.engine.begin() as connection:
        connection.execute(text("UPDATE sample SET od600 = 0 WHERE id = :id"), {"id": weighed.id})
    report = service.audit.verify_trail()
    assert [(m.kind, m.columns) for m in report.mismatches] == [("changed", ("od600",))]


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"od_raw": float("nan")}, "OD600 reading", "finite"),
        ({"od_raw": -0.1}, "OD600 reading", "too small"),
        ({"od_raw": "abc"}, "OD600 reading", "not a number"),
        ({"od_raw": 0.5, "dilution": 0.5}, "dilution", "at least 1"),
        ({"od_raw": 0.5, "glycerol_g_per_l": 900}, "glycerol", "too large"),
        ({"od_raw": 0.5, "filter_tare_mg": 100.0}, "filter weights", "together"),
        ({"od_raw": 0.5, "taken_at": T0 + timedelta(days=1)}, "sampling time", "future"),
        ({"od_raw": 0.5, "taken_at": datetime(2026, 3, 2, 12)}, "sampling time", "time zone"),
        ({}, "OD600 reading", "needs an OD600 reading or a dry weight"),
        ({"od_raw": "", "glycerol_g_per_l": 12}, "OD600 reading", "or a dry weight"),
        ({"dcw_g_per_l": -1.0}, "DCW", "too small"),
    ],
)
def test_bad_sample_values_are_named(
    service: NotebookService, running: int, kwargs: dict, field: str, words: str
) -> None:
    kwargs = {"taken_at": T0 + timedelta(hours=1, minutes=5), **kwargs}
    with pytest.raises(NotebookValidationError) as caught:
        service.samples.add_sample("olga", running, **kwargs)
    assert caught.value.field == field
    assert words in caught.value.message
    assert service.samples.list_samples(running) == []


# ------------------------------------------------------------------ deviations, notes, closure


def test_level_2_deviation_review_needs_a_supervisor(
    service: NotebookService, running: int
) -> None:
    deviation = service.deviations.log_deviation(
        "olga", running, level=2, category="DO", title="DO below 20 % for 18 min"
    )
    assert deviation.status == DeviationStatus.OPEN
    with pytest.raises(NotebookPermissionError, match="supervisor"):
        service.deviations.review_deviation(
            "olga", deviation.id, root_cause="stirrer limit", pin="1234"
        )
    reviewed = service.deviations.review_deviation(
        "sam", deviation.id, root_cause="stirrer limit", pin="4321"
    )
    assert reviewed.status == DeviationStatus.REVIEWED and reviewed.reviewed_by == "sam"
    minor = service.deviations.log_deviation(
        "olga", running, level=1, category="sampling", title="late"
    )
    assert (
        service.deviations.review_deviation("olga", minor.id, close=True, pin="1234").status
        == DeviationStatus.CLOSED
    )
    with pytest.raises(NotebookValidationError, match="level 4 is outside 1-3"):
        service.deviations.log_deviation("olga", running, level=4, category="x", title="y")


def test_closure_needs_the_sop_samples_or_a_reason(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    with pytest.raises(NotebookValidationError, match="has not ended"):
        service.batches.close_batch("olga", running, outcome="complete")
    clock.now = T0 + timedelta(hours=25)
    for hours in SOP_TIMEPOINTS_H[:3]:
        service.samples.add_sample(
            "olga",
            running,
            taken_at=T0 + timedelta(hours=1 + hours),
            od_raw=0.3,
            sop_timepoint_h=hours,
        )
    service.batches.end_batch("olga", running)
    with pytest.raises(NotebookValidationError, match="3 of the 8 SOP samples"):
        service.batches.close_batch("olga", running, outcome="complete")
    closure = service.batches.close_batch(
        "olga",
        running,
        outcome="complete",
        final_od600=80.0,
        missing_samples_reason="night shift short-staffed",
    )
    assert closure.signed_off_by is None
    with pytest.raises(NotebookPermissionError):
        service.batches.sign_off_batch("olga", running, pin="1234")
    assert service.batches.sign_off_batch("sam", running, pin="4321").signed_off_by == "sam"


def test_alarm_events_by_engine_and_by_operator(service: NotebookService, running: int) -> None:
    raised = service.alarms.record_alarm_event(
        None,
        reactor="R1",
        rule="do_low",
        priority="warning",
        state="active_unack",
        channel="do",
        value=18.5,
        batch_number=running,
    )
    acked = service.alarms.record_alarm_event(
        "olga",
        reactor="R1",
        rule="do_low",
        priority="warning",
        state="active_ack",
        batch_number=running,
    )
    assert raised.actor is None and acked.actor == "olga"
    with Session(service.engine) as session:
        actors = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.table_name == "alarm_event")
        ).all()
    assert actors == ["system", "olga"]


def test_every_service_write_is_audited_and_the_chain_holds(
    service: NotebookService, running: int
) -> None:
    service.notes.add_note("olga", running, "foam at 14 h, 1 drop antifoam")
    with Session(service.engine) as session:
        tables = session.scalars(select(AuditEntry.table_name).order_by(AuditEntry.id)).all()
    assert tables[:2] == ["operator", "operator"]
    assert {"batch", "calibration_record", "inoculum", "note"} <= set(tables)
    assert tables.count("batch") == 2  # created, then started
    assert service.audit.verify_audit_chain() is None


def test_reads_for_screens(service: NotebookService, running: int, clock: SettableClock) -> None:
    assert service.preparation.get_inoculum(running).od600 == pytest.approx(4.1)
    assert service.batches.get_closure(running) is None
    assert {c.channel for c in service.calibrations.list_calibrations(batch_number=running)} == set(
        MANDATORY_CALIBRATIONS
    )
    assert [c.channel for c in service.calibrations.list_calibrations(channel="ph")] == ["ph"]
    service.alarms.record_alarm_event(
        None,
        reactor="R1",
        rule="temp_hi",
        priority="critical",
        state="active_unack",
        batch_number=running,
    )
    service.alarms.record_alarm_event(
        None, reactor="R2", rule="stale", priority="warning", state="cleared"
    )
    assert [e.rule for e in service.alarms.list_alarm_events(batch_number=running)] == ["temp_hi"]
    assert [e.reactor for e in service.alarms.list_alarm_events(reactor="R2")] == ["R2"]
    change = service.process_changes.plan_process_change(
        "olga",
        running,
        parameter="stirrer_speed",
        old_value="500",
        new_value="400",
        planned_at=T0 + timedelta(hours=7),
    )
    approved = service.process_changes.approve_process_change("sam", change.id, pin="4321")
    assert approved.approved_by == "sam"
    assert [c.approved_by for c in service.process_changes.list_process_changes(running)] == ["sam"]
    history = service.audit.audit_trail(table_name="process_change", record_id=change.id)
    assert [e.action.value for e in history] == ["update", "insert"]
    assert history[0].before["approved_by"] is None and history[0].after["approved_by"] == "sam"


def test_from_url_gives_a_working_service(notebook_url: str) -> None:
    service = NotebookService.from_url(notebook_url)
    service.operators.create_operator("setup", "sam", "supervisor", "4321")
    assert [o.name for o in service.operators.list_operators()] == ["sam"]
    service.engine.dispose()


def test_production_pin_hash_cost_and_salt() -> None:
    from bptwin.eln.pins import hash_pin, pin_matches

    first, second = hash_pin("2468", n=2**14), hash_pin("2468", n=2**14)
    assert first.startswith("scrypt$16384$8$1$") and first != second  # salted
    assert pin_matches("2468", first) and not pin_matches("2469", first)
    assert not pin_matches("2468", "not-a-hash")


@pytest.mark.postgres
def test_a_stopped_database_is_a_plain_error_for_reads_and_writes(empty_postgres_url: str) -> None:
    from bptwin.database.migrate import upgrade
    from bptwin.database.relational import DatabaseUnavailableError
    from tests.fixtures.servers import free_port

    upgrade(empty_postgres_url)
    service = NotebookService.from_url(empty_postgres_url)
    service.operators.create_operator("setup", "sam", "supervisor", "4321")
    service.engine.dispose()
    # The same notebook, but the server is "gone": point the engine at a closed port.
    service.engine = make_engine(make_url(empty_postgres_url).set(port=free_port()), check=False)
    with pytest.raises(DatabaseUnavailableError, match="cannot reach the database"):
        service.operators.check_pin("sam", "4321")
    with pytest.raises(DatabaseUnavailableError, match="cannot reach the database"):
        service.batches.create_batch("sam", 1, "A")


def test_machine_alarm_records_are_never_refused_for_value_or_time(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    # The shape of twin.alarms.AlarmTransition.event_fields(), from an accelerated simulation.
    fields = {
        "reactor": "R1",
        "rule": "do_low/critical",
        "priority": "critical",
        "state": "returned_unacknowledged",
        "channel": "do",
        "value": float("nan"),
        "message": "DO below 15 % for 2 min",
        "occurred_at": clock.now + timedelta(hours=3),
        "actor": None,
    }
    event = service.alarms.record_alarm_event(**fields, batch_number=running)
    assert event.value is None
    assert event.occurred_at == clock.now + timedelta(hours=3)
    with pytest.raises(NotebookValidationError, match="in UTC"):
        service.alarms.record_alarm_event(**{**fields, "occurred_at": datetime(2026, 3, 2, 9)})


def test_sample_schedule_of_a_running_batch(
    service: NotebookService, running: int, clock: SettableClock
) -> None:
    inoculated = T0 + timedelta(hours=1)
    clock.now = inoculated + timedelta(hours=2, minutes=5)
    service.samples.add_sample("olga", running, taken_at=inoculated, od_raw=0.4, sop_timepoint_h=0)
    slots = service.samples.sample_schedule(running)
    assert [slot.status.value for slot in slots[:3]] == ["taken", "due", "upcoming"]
    service.batches.create_batch("olga", 7, "B")
    with pytest.raises(NotebookValidationError, match="not inoculated"):
        service.samples.sample_schedule(7)
