"""The notebook's service layer: what screens, the CLI and workers call (no UI code here).

Every writing method takes the acting operator's login name first; it must be an active
operator (a few actions need a supervisor). Each call is one transaction, audited by
eln.audit. Bad input raises NotebookValidationError(field, message) in plain words; returned
records are detached copies, safe to read after the call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import exc, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.relational import is_unavailable, make_engine, session_scope, unavailable_error
from bptwin.eln import form_rules as check
from bptwin.eln.audit import find_chain_break
from bptwin.eln.calibration import (
    CalibrationPolicy,
    ValidityPeriod,
    blocking_problem,
    period_at,
    validity_periods,
)
from bptwin.eln.columns import utc_now
from bptwin.eln.errors import (
    NotebookNotFoundError,
    NotebookPermissionError,
    NotebookValidationError,
)
from bptwin.eln.models import (
    AlarmEvent,
    AuditEntry,
    Batch,
    BatchClosure,
    BatchStatus,
    CalibrationRecord,
    CampaignPhase,
    Deviation,
    DeviationStatus,
    Inoculum,
    MediaPreparation,
    Note,
    Operator,
    OperatorRole,
    ProcessChange,
    Sample,
)
from bptwin.eln.pins import hash_pin, pin_matches
from bptwin.eln.schedule import SOP_TIMEPOINTS_H, SampleSlot, sample_schedule

# Written as the actor of records the software makes on its own (alarm engine transitions).
SYSTEM_ACTOR = "system"
INOCULUM_OD600_RANGE = (2.0, 6.0)
# Calibrations that must pass (or be overridden by a supervisor) before inoculation, unless
# the service is given another CalibrationPolicy (settings [calibration]).
MANDATORY_CALIBRATIONS = CalibrationPolicy().mandatory_channels
SOP_SAMPLE_COUNT = len(SOP_TIMEPOINTS_H) + 1  # plus the depletion sample
MAX_BATCH_NUMBER = 999_999
# Plausible ranges for typed-in values: wider than biology, narrower than typos.
OD_RAW_RANGE = (0.0, 5.0)
DILUTION_RANGE = (1.0, 10_000.0)
OD600_MAX = 500.0
DCW_MAX_G_PER_L = 300.0
GLYCEROL_MAX_G_PER_L = 200.0


class NotebookService:
    """The lab notebook on one relational store (SQLite or Postgres, already migrated)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utc_now,
        calibration_policy: CalibrationPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.calibration_policy = calibration_policy or CalibrationPolicy()

    @classmethod
    def from_url(
        cls, url: str, *, calibration_policy: CalibrationPolicy | None = None
    ) -> NotebookService:
        """A service on the (already migrated) database at ``url``; errors are plain."""
        return cls(make_engine(url), calibration_policy=calibration_policy)

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _write(self, actor: str, *, supervisor: bool = False) -> Iterator[Session]:
        name = check.text("operator", actor, max_length=64, required=True)
        with session_scope(self.engine, name) as session:
            self._require_operator(session, name, supervisor=supervisor)
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except exc.DBAPIError as error:
            if is_unavailable(error):
                raise unavailable_error(self.engine, error) from error
            raise

    @staticmethod
    def _require_operator(session: Session, name: str, *, supervisor: bool = False) -> Operator:
        operator = session.exec(select(Operator).where(Operator.name == name)).first()
        if operator is None:
            raise NotebookPermissionError(f"{name!r} is not a registered operator")
        if not operator.active:
            raise NotebookPermissionError(f"operator {name!r} is deactivated")
        if supervisor and operator.role != OperatorRole.SUPERVISOR:
            raise NotebookPermissionError(f"this needs a supervisor; {name!r} is an operator")
        return operator

    @staticmethod
    def _batch(session: Session, number: Any) -> Batch:
        number = check.whole_number("batch number", number, minimum=1, maximum=MAX_BATCH_NUMBER)
        batch = session.exec(select(Batch).where(Batch.number == number)).first()
        if batch is None:
            raise NotebookNotFoundError("batch", f"there is no batch {number}")
        return batch

    def _now(self) -> datetime:
        return self.clock()

    # ------------------------------------------------------------------ operators

    def create_operator(
        self, actor: str, name: str, role: OperatorRole | str, pin: str, display_name: str = ""
    ) -> Operator:
        """Register an operator. A supervisor must do it, except for the very first one."""
        name = check.login_name("name", name)
        role = check.choice("role", role, OperatorRole)
        pin = check.pin("PIN", pin)
        display_name = check.text("display name", display_name, max_length=128) or name
        actor = check.text("operator", actor, max_length=64, required=True)
        with session_scope(self.engine, actor) as session:
            existing = session.exec(select(func.count()).select_from(Operator)).one()
            if existing:
                self._require_operator(session, actor, supervisor=True)
            elif role != OperatorRole.SUPERVISOR:
                raise NotebookValidationError(
                    "role", "the first operator must be a supervisor (who can then add others)"
                )
            if session.exec(select(Operator).where(Operator.name == name)).first():
                raise NotebookValidationError("name", f"operator {name!r} already exists")
            operator = Operator(
                name=name,
                display_name=display_name,
                role=role,
                pin_hash=hash_pin(pin),
                created_at=self._now(),
            )
            session.add(operator)
        return operator

    def change_pin(self, actor: str, name: str, new_pin: str) -> None:
        """Set a new PIN: operators change their own, supervisors anyone's."""
        new_pin = check.pin("PIN", new_pin)
        with self._write(actor) as session:
            me = self._require_operator(session, actor)
            if name != actor and me.role != OperatorRole.SUPERVISOR:
                raise NotebookPermissionError("only a supervisor may change another's PIN")
            target = self._require_operator(session, name)
            target.pin_hash = hash_pin(new_pin)

    def set_operator_active(self, actor: str, name: str, active: bool) -> Operator:
        """Deactivate (or reactivate) an operator; records keep their name."""
        with self._write(actor, supervisor=True) as session:
            target = session.exec(select(Operator).where(Operator.name == name)).first()
            if target is None:
                raise NotebookNotFoundError("name", f"there is no operator {name!r}")
            target.active = bool(active)
        return target

    def get_operator(self, name: str) -> Operator | None:
        with self._read() as session:
            return session.exec(select(Operator).where(Operator.name == name)).first()

    def list_operators(self) -> list[Operator]:
        with self._read() as session:
            return list(session.exec(select(Operator).order_by(Operator.name)))

    def check_pin(self, name: str, pin: str) -> bool:
        """True when ``name`` is an active operator and ``pin`` is theirs."""
        operator = self.get_operator(name) if isinstance(name, str) else None
        if operator is None or not operator.active or not isinstance(pin, str):
            return False
        return pin_matches(pin, operator.pin_hash)

    def authenticate(self, name: str, pin: str) -> Operator:
        """The operator for a login; one message for every failure (no hint which part)."""
        if not self.check_pin(name, pin):
            raise NotebookPermissionError("unknown operator or wrong PIN")
        operator = self.get_operator(name)
        assert operator is not None
        return operator

    # ------------------------------------------------------------------ batches

    def create_batch(
        self,
        actor: str,
        number: int,
        phase: CampaignPhase | str,
        *,
        strain: str = "",
        medium_lot: str = "",
        vessel: str = "",
        reactor_id: str = "",
        operator: str | None = None,
        notes: str = "",
    ) -> Batch:
        """A new batch in status setup; ``operator`` (the responsible person) defaults to actor."""
        number = check.whole_number("batch number", number, minimum=1, maximum=MAX_BATCH_NUMBER)
        batch = Batch(
            number=number,
            phase=check.choice("campaign phase", phase, CampaignPhase),
            strain=check.text("strain", strain, max_length=128),
            medium_lot=check.identifier("medium lot", medium_lot),
            vessel=check.identifier("vessel", vessel),
            reactor_id=check.identifier("reactor id", reactor_id),
            notes=check.text("notes", notes),
            operator=operator or actor,
            created_at=self._now(),
        )
        try:
            with self._write(actor) as session:
                if batch.operator != actor:
                    self._require_operator(session, batch.operator)
                if session.exec(select(Batch).where(Batch.number == number)).first():
                    raise NotebookValidationError("batch number", f"batch {number} already exists")
                session.add(batch)
        except exc.IntegrityError:
            # Another terminal created the same number between our check and our insert.
            raise NotebookValidationError(
                "batch number", f"batch {number} already exists"
            ) from None
        return batch

    def get_batch(self, number: int) -> Batch:
        with self._read() as session:
            return self._batch(session, number)

    def list_batches(self, status: BatchStatus | str | None = None) -> list[Batch]:
        """Batches, newest number first, optionally only those in one status."""
        statement = select(Batch).order_by(col(Batch.number).desc())
        if status is not None:
            statement = statement.where(Batch.status == check.choice("status", status, BatchStatus))
        with self._read() as session:
            return list(session.exec(statement))

    def missing_calibrations(self, number: int) -> list[str]:
        """Mandatory channels without a current passing (or overridden) calibration."""
        return [channel for channel, _ in self.calibration_blockers(number)]

    def calibration_blockers(self, number: int) -> list[tuple[str, str]]:
        """(channel, why) for each mandatory calibration that blocks starting this batch."""
        with self._read() as session:
            return self._calibration_blockers(session, self._batch(session, number))

    def _missing_calibrations(self, session: Session, batch: Batch) -> list[str]:
        return [channel for channel, _ in self._calibration_blockers(session, batch)]

    def _calibration_blockers(self, session: Session, batch: Batch) -> list[tuple[str, str]]:
        now = self._now()
        blockers = []
        for channel in self.calibration_policy.mandatory_channels:
            latest = session.exec(
                self._calibrations_of(channel, batch.id).order_by(
                    col(CalibrationRecord.performed_at).desc(), col(CalibrationRecord.id).desc()
                )
            ).first()
            problem = blocking_problem(latest, now, self.calibration_policy)
            if problem is not None:
                blockers.append((channel, problem))
        return blockers

    @staticmethod
    def _calibrations_of(channel: str, batch_id: int | None) -> Any:
        """Records of ``channel``: bench ones plus, with a batch, that batch's own."""
        statement = select(CalibrationRecord).where(CalibrationRecord.channel == channel)
        if batch_id is None:
            return statement
        return statement.where(
            (CalibrationRecord.batch_id == batch_id) | (col(CalibrationRecord.batch_id).is_(None))
        )

    def calibration_in_force(
        self, channel: str, at: datetime, *, batch_number: int | None = None
    ) -> ValidityPeriod | None:
        """The calibration that ``channel``'s readings at ``at`` are traced to, with its validity
        interval; None when no accepted, unexpired calibration covered that moment."""
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise NotebookValidationError("time", "time must be a date and time in UTC")
        with self._read() as session:
            batch_id = None if batch_number is None else self._batch(session, batch_number).id
            base = self._calibrations_of(channel, batch_id)
            latest = session.exec(
                base.where(CalibrationRecord.performed_at <= at).order_by(
                    col(CalibrationRecord.performed_at).desc(), col(CalibrationRecord.id).desc()
                )
            ).first()
            following = session.exec(
                base.where(CalibrationRecord.performed_at > at).order_by(
                    col(CalibrationRecord.performed_at), col(CalibrationRecord.id)
                )
            ).first()
        return period_at(latest, following, at, self.calibration_policy)

    def start_batch(
        self,
        actor: str,
        number: int,
        *,
        inoculated_at: datetime | None = None,
        override_reason: str | None = None,
    ) -> Batch:
        """Inoculate: the batch goes from setup to running.

        Refused while a mandatory calibration has not passed or the inoculum is missing or
        out of spec, unless a supervisor gives ``override_reason`` (kept as a note).
        """
        at = check.moment("inoculation time", inoculated_at, now=self._now())
        reason = check.text("override reason", override_reason) or None
        with self._write(actor) as session:
            batch = self._batch(session, number)
            if batch.status != BatchStatus.SETUP:
                raise NotebookValidationError(
                    "status", f"batch {batch.number} is {batch.status.value}, not in setup"
                )
            problems = [
                f"no passing calibration for {name} ({why})"
                for name, why in self._calibration_blockers(session, batch)
            ]
            inoculum = session.exec(select(Inoculum).where(Inoculum.batch_id == batch.id)).first()
            if inoculum is None:
                problems.append("no inoculum recorded")
            elif not inoculum.go:
                problems.append(f"inoculum OD600 {inoculum.od600:g} is out of spec")
            if problems and reason is None:
                raise NotebookValidationError(
                    "inoculation", f"batch {batch.number} cannot start: " + "; ".join(problems)
                )
            if problems:
                self._require_operator(session, actor, supervisor=True)
                session.add(
                    Note(
                        batch_id=batch.id,
                        author=actor,
                        text=f"Started despite: {'; '.join(problems)}. Reason: {reason}",
                        created_at=self._now(),
                    )
                )
            batch.status = BatchStatus.RUNNING
            batch.inoculated_at = at
        return batch

    mark_inoculated = start_batch

    def end_batch(
        self, actor: str, number: int, *, aborted: bool = False, ended_at: datetime | None = None
    ) -> Batch:
        """Mark a running batch complete (or aborted) at ``ended_at``."""
        at = check.moment("end time", ended_at, now=self._now())
        with self._write(actor) as session:
            batch = self._batch(session, number)
            if batch.status != BatchStatus.RUNNING and not (
                aborted and batch.status == BatchStatus.SETUP
            ):
                raise NotebookValidationError(
                    "status", f"batch {batch.number} is {batch.status.value}, not running"
                )
            if batch.inoculated_at is not None and at < batch.inoculated_at:
                raise NotebookValidationError("end time", "the end is before the inoculation")
            batch.status = BatchStatus.ABORTED if aborted else BatchStatus.COMPLETE
            batch.ended_at = at
        return batch

    # ------------------------------------------------------------------ batch records

    def record_media_preparation(
        self,
        actor: str,
        number: int,
        *,
        recipe: Mapping[str, float],
        autoclave_cycle: str = "",
        sterility_ok: bool | None = None,
        prepared_at: datetime | None = None,
        notes: str = "",
    ) -> MediaPreparation:
        """The medium made up for a batch: recipe amounts (name -> amount), autoclave cycle."""
        if not isinstance(recipe, Mapping) or not recipe:
            raise NotebookValidationError("recipe", "the recipe needs at least one ingredient")
        amounts = {
            check.text("ingredient", name, max_length=64, required=True): check.number(
                f"amount of {name}", amount, minimum=0.0
            )
            for name, amount in recipe.items()
        }
        record = MediaPreparation(
            recipe=amounts,
            autoclave_cycle=check.identifier("autoclave cycle", autoclave_cycle),
            sterility_ok=sterility_ok,
            prepared_at=check.moment("preparation time", prepared_at, now=self._now()),
            prepared_by=actor,
            notes=check.text("notes", notes),
        )
        with self._write(actor) as session:
            record.batch_id = self._batch(session, number).id
            session.add(record)
        return record

    def record_inoculum(
        self,
        actor: str,
        number: int,
        *,
        od600_raw: float,
        dilution: float = 1.0,
        volume_ml: float,
        microscopy_clean: bool,
        notes: str = "",
        out_of_spec_reason: str | None = None,
    ) -> Inoculum:
        """The batch's one inoculum. Out of 2.0-6.0 OD600 or unclean it is refused, unless
        ``out_of_spec_reason`` is given: then it is stored as no-go with a level-3 deviation."""
        raw = check.number(
            "inoculum OD600 reading", od600_raw, minimum=0.0, maximum=OD_RAW_RANGE[1]
        )
        factor = check.number(
            "dilution", dilution, minimum=DILUTION_RANGE[0], maximum=DILUTION_RANGE[1]
        )
        volume = check.number(
            "inoculum volume",
            volume_ml,
            minimum=0.0,
            maximum=5000.0,
            unit="mL",
            exclusive_minimum=True,
        )
        assert raw is not None and factor is not None and volume is not None
        od600 = raw * factor
        low, high = INOCULUM_OD600_RANGE
        problems = []
        if not low <= od600 <= high:
            problems.append(f"inoculum OD600 {od600:.3g} is outside {low:.1f}-{high:.1f}")
        if not microscopy_clean:
            problems.append("inoculum microscopy is not clean")
        reason = check.text("out-of-spec reason", out_of_spec_reason) or None
        if problems and reason is None:
            raise NotebookValidationError("inoculum", "; ".join(problems))
        inoculum = Inoculum(
            od600_raw=raw,
            dilution=factor,
            od600=od600,
            volume_ml=volume,
            microscopy_clean=bool(microscopy_clean),
            go=not problems,
            notes=check.text("notes", notes),
            recorded_by=actor,
            recorded_at=self._now(),
        )
        with self._write(actor) as session:
            batch = self._batch(session, number)
            if session.exec(select(Inoculum).where(Inoculum.batch_id == batch.id)).first():
                raise NotebookValidationError(
                    "inoculum", f"batch {batch.number} already has its inoculum recorded"
                )
            inoculum.batch_id = batch.id
            session.add(inoculum)
            if problems:
                session.add(
                    Deviation(
                        batch_id=batch.id,
                        level=3,
                        category="inoculum",
                        title="Inoculum out of spec",
                        description="; ".join(problems),
                        impact=reason or "",
                        started_at=self._now(),
                        reported_by=actor,
                    )
                )
        return inoculum

    def add_sample(
        self,
        actor: str,
        number: int,
        *,
        taken_at: datetime,
        od_raw: float,
        dilution: float = 1.0,
        sop_timepoint_h: float | None = None,
        dcw_g_per_l: float | None = None,
        filter_tare_mg: float | None = None,
        filter_dry_mg: float | None = None,
        filter_volume_ml: float | None = None,
        microscopy_clean: bool | None = None,
        microscopy_text: str = "",
        glycerol_g_per_l: float | None = None,
        predicted_od600: float | None = None,
    ) -> Sample:
        """An offline sample; OD600 = reading × dilution, DCW from filter weights if given."""
        now = self._now()
        taken = check.moment("sampling time", taken_at, default_now=False, now=now)
        if taken is None:
            raise NotebookValidationError("sampling time", "sampling time is required")
        raw = check.number(
            "OD600 reading", od_raw, minimum=OD_RAW_RANGE[0], maximum=OD_RAW_RANGE[1]
        )
        factor = check.number(
            "dilution", dilution, minimum=DILUTION_RANGE[0], maximum=DILUTION_RANGE[1]
        )
        assert raw is not None and factor is not None
        od600 = raw * factor
        if od600 > OD600_MAX:
            raise NotebookValidationError(
                "OD600", f"OD600 {od600:g} (reading × dilution) is implausibly high"
            )
        timepoint = check.number(
            "SOP time point", sop_timepoint_h, minimum=0.0, maximum=100.0, unit="h", required=False
        )
        tare = check.number(
            "filter tare", filter_tare_mg, minimum=0.0, maximum=10_000.0, unit="mg", required=False
        )
        dry = check.number(
            "filter dry weight",
            filter_dry_mg,
            minimum=0.0,
            maximum=10_000.0,
            unit="mg",
            required=False,
        )
        volume = check.number(
            "filtered volume",
            filter_volume_ml,
            minimum=0.0,
            maximum=1000.0,
            unit="mL",
            required=False,
            exclusive_minimum=True,
        )
        dcw = check.number(
            "DCW", dcw_g_per_l, minimum=0.0, maximum=DCW_MAX_G_PER_L, unit="g/L", required=False
        )
        weights = (tare, dry, volume)
        if any(value is not None for value in weights):
            if tare is None or dry is None or volume is None:
                raise NotebookValidationError(
                    "filter weights", "give filter tare, dry weight and filtered volume together"
                )
            if dry < tare:
                raise NotebookValidationError(
                    "filter dry weight", f"dry weight {dry:g} mg is below the tare {tare:g} mg"
                )
            computed = (dry - tare) / volume  # mg/mL == g/L
            if dcw is not None and abs(dcw - computed) > 1e-6 * max(1.0, computed):
                raise NotebookValidationError(
                    "DCW", f"DCW {dcw:g} g/L disagrees with the filter weights ({computed:.3g} g/L)"
                )
            dcw = computed
        sample = Sample(
            sop_timepoint_h=timepoint,
            taken_at=taken,
            entered_at=now,
            od_raw=raw,
            dilution=factor,
            od600=od600,
            dcw_g_per_l=dcw,
            filter_tare_mg=tare,
            filter_dry_mg=dry,
            filter_volume_ml=volume,
            microscopy_clean=microscopy_clean,
            microscopy_text=check.text("microscopy", microscopy_text),
            glycerol_g_per_l=check.number(
                "glycerol",
                glycerol_g_per_l,
                minimum=0.0,
                maximum=GLYCEROL_MAX_G_PER_L,
                unit="g/L",
                required=False,
            ),
            predicted_od600=check.number(
                "predicted OD600", predicted_od600, minimum=0.0, required=False
            ),
            entered_by=actor,
        )
        with self._write(actor) as session:
            batch = self._batch(session, number)
            if batch.inoculated_at is None:
                raise NotebookValidationError(
                    "sampling time",
                    f"batch {batch.number} is not inoculated yet; no samples before inoculation",
                )
            if taken < batch.inoculated_at:
                raise NotebookValidationError(
                    "sampling time",
                    f"sampling time {taken.isoformat(timespec='minutes')} is before the "
                    f"inoculation at {batch.inoculated_at.isoformat(timespec='minutes')}",
                )
            sample.batch_id = batch.id
            session.add(sample)
        return sample

    def sample_schedule(
        self, number: int, *, depleted_at: datetime | None = None
    ) -> list[SampleSlot]:
        """The SOP sampling slots of a running or ended batch and their status now."""
        with self._read() as session:
            batch = self._batch(session, number)
            samples = list(session.exec(select(Sample).where(Sample.batch_id == batch.id)))
        if batch.inoculated_at is None:
            raise NotebookValidationError(
                "batch", f"batch {batch.number} is not inoculated yet; no samples are due"
            )
        return sample_schedule(
            batch.inoculated_at,
            samples,  # type: ignore[arg-type]  # Sample has the TakenSample fields
            self._now(),
            depleted_at=depleted_at,
            ended_at=batch.ended_at,
        )

    def list_samples(self, number: int) -> list[Sample]:
        with self._read() as session:
            batch = self._batch(session, number)
            return list(
                session.exec(
                    select(Sample).where(Sample.batch_id == batch.id).order_by(Sample.taken_at)
                )
            )

    def log_deviation(
        self,
        actor: str,
        number: int,
        *,
        level: int,
        category: str,
        title: str,
        description: str = "",
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        impact: str = "",
        root_cause: str = "",
        corrective_action: str = "",
    ) -> Deviation:
        """A deviation, level 1 (minor), 2 (major) or 3 (critical); it starts open."""
        now = self._now()
        start = check.moment("start", started_at, now=now)
        end = check.moment("end", ended_at, default_now=False, now=now)
        if start is not None and end is not None and end < start:
            raise NotebookValidationError("end", "the deviation ends before it starts")
        deviation = Deviation(
            level=check.whole_number("level", level, minimum=1, maximum=3),
            category=check.identifier("category", category, required=True),
            title=check.text("title", title, max_length=256, required=True),
            description=check.text("description", description),
            started_at=start,
            ended_at=end,
            impact=check.text("impact", impact),
            root_cause=check.text("root cause", root_cause),
            corrective_action=check.text("corrective action", corrective_action),
            reported_by=actor,
        )
        with self._write(actor) as session:
            deviation.batch_id = self._batch(session, number).id
            session.add(deviation)
        return deviation

    def review_deviation(
        self,
        actor: str,
        deviation_id: int,
        *,
        root_cause: str | None = None,
        corrective_action: str | None = None,
        impact: str | None = None,
        close: bool = False,
    ) -> Deviation:
        """Review (and optionally close) a deviation; level 2 and 3 need a supervisor."""
        with self._write(actor) as session:
            deviation = session.get(Deviation, deviation_id)
            if deviation is None:
                raise NotebookNotFoundError("deviation", f"there is no deviation {deviation_id}")
            if deviation.status == DeviationStatus.CLOSED:
                raise NotebookValidationError(
                    "status", f"deviation {deviation_id} is already closed"
                )
            if deviation.level >= 2:
                self._require_operator(session, actor, supervisor=True)
            for field, value in (
                ("root cause", root_cause),
                ("corrective action", corrective_action),
                ("impact", impact),
            ):
                if value is not None:
                    setattr(deviation, field.replace(" ", "_"), check.text(field, value))
            deviation.status = DeviationStatus.CLOSED if close else DeviationStatus.REVIEWED
            deviation.reviewed_by = actor
            deviation.reviewed_at = self._now()
        return deviation

    def list_deviations(self, number: int) -> list[Deviation]:
        with self._read() as session:
            batch = self._batch(session, number)
            return list(
                session.exec(
                    select(Deviation).where(Deviation.batch_id == batch.id).order_by(Deviation.id)
                )
            )

    def plan_process_change(
        self,
        actor: str,
        number: int,
        *,
        parameter: str,
        old_value: str,
        new_value: str,
        planned_at: datetime,
        reason: str = "",
    ) -> ProcessChange:
        """A planned parameter change; it needs a supervisor's approval (approve_process_change)."""
        if not isinstance(planned_at, datetime) or planned_at.tzinfo is None:
            raise NotebookValidationError(
                "planned time", "planned time must be a date and time in UTC"
            )
        change = ProcessChange(
            parameter=check.identifier("parameter", parameter, required=True),
            old_value=check.text("old value", old_value, max_length=64),
            new_value=check.text("new value", new_value, max_length=64, required=True),
            planned_at=planned_at,
            reason=check.text("reason", reason),
            requested_by=actor,
        )
        with self._write(actor) as session:
            change.batch_id = self._batch(session, number).id
            session.add(change)
        return change

    def approve_process_change(self, actor: str, change_id: int) -> ProcessChange:
        with self._write(actor, supervisor=True) as session:
            change = session.get(ProcessChange, change_id)
            if change is None:
                raise NotebookNotFoundError(
                    "process change", f"there is no process change {change_id}"
                )
            change.approved_by = actor
            change.approved_at = self._now()
        return change

    def close_batch(
        self,
        actor: str,
        number: int,
        *,
        outcome: str,
        final_od600: float | None = None,
        runtime_h: float | None = None,
        depletion_time_h: float | None = None,
        do_spike_time_h: float | None = None,
        base_used_ml: float | None = None,
        harvest: str = "",
        missing_samples_reason: str | None = None,
    ) -> BatchClosure:
        """The closure record of an ended batch; without the 8 SOP samples a reason is needed."""
        closure = BatchClosure(
            outcome=check.identifier("outcome", outcome, required=True),
            final_od600=check.number(
                "final OD600", final_od600, minimum=0.0, maximum=OD600_MAX, required=False
            ),
            runtime_h=check.number(
                "runtime", runtime_h, minimum=0.0, maximum=1000.0, unit="h", required=False
            ),
            depletion_time_h=check.number(
                "depletion time",
                depletion_time_h,
                minimum=0.0,
                maximum=1000.0,
                unit="h",
                required=False,
            ),
            do_spike_time_h=check.number(
                "DO spike time",
                do_spike_time_h,
                minimum=0.0,
                maximum=1000.0,
                unit="h",
                required=False,
            ),
            base_used_ml=check.number(
                "base used", base_used_ml, minimum=0.0, maximum=10_000.0, unit="mL", required=False
            ),
            harvest=check.text("harvest", harvest),
            missing_samples_reason=check.text("missing-samples reason", missing_samples_reason)
            or None,
            closed_at=self._now(),
        )
        with self._write(actor) as session:
            batch = self._batch(session, number)
            if batch.status not in (BatchStatus.COMPLETE, BatchStatus.ABORTED):
                raise NotebookValidationError("status", f"batch {batch.number} has not ended yet")
            if session.exec(select(BatchClosure).where(BatchClosure.batch_id == batch.id)).first():
                raise NotebookValidationError("closure", f"batch {batch.number} is already closed")
            count = session.exec(
                select(func.count()).select_from(Sample).where(Sample.batch_id == batch.id)
            ).one()
            if count < SOP_SAMPLE_COUNT and closure.missing_samples_reason is None:
                raise NotebookValidationError(
                    "samples",
                    f"batch {batch.number} has {count} of the {SOP_SAMPLE_COUNT} SOP samples; "
                    "give the reason for the missing ones",
                )
            closure.batch_id = batch.id
            session.add(closure)
        return closure

    def sign_off_batch(self, actor: str, number: int) -> BatchClosure:
        """A supervisor signs the closure record."""
        with self._write(actor, supervisor=True) as session:
            batch = self._batch(session, number)
            closure = session.exec(
                select(BatchClosure).where(BatchClosure.batch_id == batch.id)
            ).first()
            if closure is None:
                raise NotebookValidationError(
                    "closure", f"batch {batch.number} has no closure record yet"
                )
            closure.signed_off_by = actor
            closure.signed_off_at = self._now()
        return closure

    # ------------------------------------------------------------------ notes, calibrations, alarms

    def add_note(self, actor: str, number: int, text: str) -> Note:
        note = Note(
            author=actor, text=check.text("note", text, required=True), created_at=self._now()
        )
        with self._write(actor) as session:
            note.batch_id = self._batch(session, number).id
            session.add(note)
        return note

    def list_notes(self, number: int) -> list[Note]:
        with self._read() as session:
            batch = self._batch(session, number)
            return list(
                session.exec(select(Note).where(Note.batch_id == batch.id).order_by(Note.id))
            )

    def record_calibration(
        self,
        actor: str,
        *,
        channel: str,
        kind: str,
        measured: Mapping[str, Any],
        results: Mapping[str, Any],
        passed: bool,
        batch_number: int | None = None,
        performed_at: datetime | None = None,
        valid_until: datetime | None = None,
        notes: str = "",
        override_reason: str | None = None,
    ) -> CalibrationRecord:
        """A calibration result. A failed one can be accepted only by a supervisor's reason."""
        if channel not in CHANNELS_BY_NAME:
            raise NotebookValidationError("channel", f"unknown channel {channel!r}")
        if not isinstance(measured, Mapping) or not isinstance(results, Mapping):
            raise NotebookValidationError(
                "results", "measured values and results must be name -> value tables"
            )
        reason = check.text("override reason", override_reason) or None
        if reason is not None and passed:
            raise NotebookValidationError(
                "override reason", "only a failed calibration can be overridden"
            )
        if valid_until is not None and (
            not isinstance(valid_until, datetime) or valid_until.tzinfo is None
        ):
            raise NotebookValidationError(
                "valid until", "valid-until must be a date and time in UTC"
            )
        record = CalibrationRecord(
            channel=channel,
            kind=check.identifier("kind", kind, required=True),
            measured=_plain_values("measured values", measured),
            results=_plain_values("results", results),
            passed=bool(passed),
            performed_at=check.moment("calibration time", performed_at, now=self._now()),
            performed_by=actor,
            valid_until=valid_until,
            notes=check.text("notes", notes),
            override_reason=reason,
        )
        with self._write(actor, supervisor=reason is not None) as session:
            if batch_number is not None:
                record.batch_id = self._batch(session, batch_number).id
            session.add(record)
        return record

    def record_alarm_event(
        self,
        actor: str | None,
        *,
        reactor: str,
        rule: str,
        priority: str,
        state: str,
        message: str = "",
        channel: str | None = None,
        value: float | None = None,
        batch_number: int | None = None,
        occurred_at: datetime | None = None,
    ) -> AlarmEvent:
        """One alarm transition; ``actor`` None for the engine's own (written as 'system').

        Fits ``record_alarm_event(**transition.event_fields())`` of twin.alarms. Machine
        records are never refused for their value or time: a NaN value is stored as empty,
        and a time ahead of the wall clock (accelerated simulation) is kept as given.
        """
        event = AlarmEvent(
            reactor=check.identifier("reactor", reactor, required=True),
            rule=check.text("rule", rule, max_length=128, required=True),
            priority=check.identifier("priority", priority, max_length=16, required=True),
            state=check.identifier("state", state, max_length=32, required=True),
            message=check.text("message", message),
            channel=check.identifier("channel", channel, max_length=64) or None,
            value=_finite_or_none(value),
            occurred_at=_machine_time("time", occurred_at, self._now()),
            actor=actor,
        )
        scope = session_scope(self.engine, SYSTEM_ACTOR) if actor is None else self._write(actor)
        with scope as session:
            if batch_number is not None:
                event.batch_id = self._batch(session, batch_number).id
            session.add(event)
        return event

    # ------------------------------------------------------------------ reads for screens

    def get_inoculum(self, number: int) -> Inoculum | None:
        with self._read() as session:
            batch = self._batch(session, number)
            return session.exec(select(Inoculum).where(Inoculum.batch_id == batch.id)).first()

    def get_closure(self, number: int) -> BatchClosure | None:
        with self._read() as session:
            batch = self._batch(session, number)
            return session.exec(
                select(BatchClosure).where(BatchClosure.batch_id == batch.id)
            ).first()

    def list_calibrations(
        self, *, channel: str | None = None, batch_number: int | None = None, limit: int = 100
    ) -> list[CalibrationRecord]:
        """Calibrations, newest first; for a batch: its own and the unbound (bench) ones."""
        statement = select(CalibrationRecord)
        with self._read() as session:
            if channel is not None:
                statement = statement.where(CalibrationRecord.channel == channel)
            if batch_number is not None:
                batch = self._batch(session, batch_number)
                statement = statement.where(
                    (CalibrationRecord.batch_id == batch.id)
                    | (col(CalibrationRecord.batch_id).is_(None))
                )
            statement = statement.order_by(
                col(CalibrationRecord.performed_at).desc(), col(CalibrationRecord.id).desc()
            ).limit(limit)
            return list(session.exec(statement))

    def calibration_history(
        self, channel: str, *, batch_number: int | None = None, limit: int = 100
    ) -> list[ValidityPeriod]:
        """The channel's calibrations, newest first, each with the interval it was in force."""
        records = self.list_calibrations(channel=channel, batch_number=batch_number, limit=limit)
        return validity_periods(records, self.calibration_policy)[::-1]

    def list_alarm_events(
        self, *, reactor: str | None = None, batch_number: int | None = None, limit: int = 200
    ) -> list[AlarmEvent]:
        """Alarm transitions, newest first."""
        statement = select(AlarmEvent)
        with self._read() as session:
            if reactor is not None:
                statement = statement.where(AlarmEvent.reactor == reactor)
            if batch_number is not None:
                batch = self._batch(session, batch_number)
                statement = statement.where(AlarmEvent.batch_id == batch.id)
            statement = statement.order_by(
                col(AlarmEvent.occurred_at).desc(), col(AlarmEvent.id).desc()
            ).limit(limit)
            return list(session.exec(statement))

    def list_process_changes(self, number: int) -> list[ProcessChange]:
        with self._read() as session:
            batch = self._batch(session, number)
            return list(
                session.exec(
                    select(ProcessChange)
                    .where(ProcessChange.batch_id == batch.id)
                    .order_by(ProcessChange.planned_at)
                )
            )

    # ------------------------------------------------------------------ audit

    def audit_trail(
        self, *, table_name: str | None = None, record_id: int | str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        """Audit entries, newest first, optionally of one table or one record."""
        statement = select(AuditEntry)
        if table_name is not None:
            statement = statement.where(AuditEntry.table_name == table_name)
        if record_id is not None:
            statement = statement.where(AuditEntry.record_id == str(record_id))
        with self._read() as session:
            return list(session.exec(statement.order_by(col(AuditEntry.id).desc()).limit(limit)))

    def verify_audit_chain(self) -> tuple[int, str] | None:
        """(first broken entry id, reason) or None when the audit chain holds."""
        with self._read() as session:
            broken = find_chain_break(session)
        return None if broken is None else (broken.entry_id, broken.reason)


def _plain_values(field: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Name -> number/text/bool tables for JSON columns; anything else is refused."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        key = check.text(field, name, max_length=64, required=True)
        if isinstance(value, float):
            check.number(f"{field} {key}", value)
        elif isinstance(value, str):
            value = check.text(f"{field} {key}", value, max_length=1000)
        elif value is not None and not isinstance(value, bool | int):
            raise NotebookValidationError(field, f"{field} {key} must be a number or text")
        clean[key] = value
    return clean


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _machine_time(field: str, value: Any, now: datetime) -> datetime:
    """A timestamp made by software: None means now, naive is refused, the future is allowed."""
    if value is None:
        return now
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise NotebookValidationError(field, f"{field} must be a date and time in UTC")
    return value
