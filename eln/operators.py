"""Operators and their PINs: registering, deactivating, logging in (no UI code here).

Wrong PINs are counted per operator in the operator's own (audited) row: from the
``MAX_PIN_FAILURES``-th in a row on, each wrong PIN locks the operator out for a delay that
doubles from ``FIRST_LOCKOUT_S`` up to ``MAX_LOCKOUT_S``. While locked, no PIN is even tried.
A right PIN resets the count; a supervisor can unlock at any time (``unlock_operator``). The
count is stored, so restarting the app resets nothing, and it is read like the role: only as
the audit trail last recorded it (eln.unit_of_work.require_audited).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select

from bptwin.eln import form_rules as check
from bptwin.eln.columns import as_utc
from bptwin.eln.errors import (
    NotebookNotFoundError,
    NotebookPermissionError,
    NotebookValidationError,
    OperatorLockedError,
)
from bptwin.eln.models import Operator, OperatorRole
from bptwin.eln.pins import hash_pin, pin_matches
from bptwin.eln.unit_of_work import (
    SYSTEM_ACTOR,
    AggregateService,
    require_audited,
    require_operator,
    where,
)

MAX_PIN_FAILURES = 5
FIRST_LOCKOUT_S = 30.0
MAX_LOCKOUT_S = 3600.0
_WRONG = "unknown operator or wrong PIN"


def lockout_seconds(failures: int) -> float:
    """How long ``failures`` wrong PINs in a row lock an operator out (0 below the limit)."""
    if failures < MAX_PIN_FAILURES:
        return 0.0
    doublings = min(failures - MAX_PIN_FAILURES, 32)  # past the cap already; no float overflow
    return min(FIRST_LOCKOUT_S * float(2**doublings), MAX_LOCKOUT_S)


class OperatorService(AggregateService):
    """Who may sign notebook entries; the PIN is kept only as a scrypt hash."""

    def create_operator(
        self, actor: str, name: str, role: OperatorRole | str, pin: str, display_name: str = ""
    ) -> Operator:
        """Register an operator. A supervisor must do it, except for the very first one."""
        name = check.login_name("name", name)
        role = check.choice("role", role, OperatorRole)
        pin = check.pin("PIN", pin)
        display_name = check.text("display name", display_name, max_length=128) or name
        with self.unit.audited(actor) as session:
            existing = session.exec(select(func.count()).select_from(Operator)).one()
            if existing:
                require_operator(session, session.info["actor"], supervisor=True)
            elif role != OperatorRole.SUPERVISOR:
                raise NotebookValidationError(
                    "role", "the first operator must be a supervisor (who can then add others)"
                )
            if session.exec(where(select(Operator), col(Operator.name) == name)).first():
                raise NotebookValidationError("name", f"operator {name!r} already exists")
            operator = Operator(
                name=name,
                display_name=display_name,
                role=role,
                pin_hash=hash_pin(pin),
                created_at=self.unit.now(),
            )
            session.add(operator)
        return operator

    def change_pin(self, actor: str, name: str, new_pin: str) -> None:
        """Set a new PIN: operators change their own, supervisors anyone's."""
        new_pin = check.pin("PIN", new_pin)
        with self.unit.write(actor) as session:
            me = require_operator(session, actor)
            if name != actor and me.role != OperatorRole.SUPERVISOR:
                raise NotebookPermissionError("only a supervisor may change another's PIN")
            target = require_operator(session, name)
            target.pin_hash = hash_pin(new_pin)

    def set_operator_active(self, actor: str, name: str, active: bool) -> Operator:
        """Deactivate (or reactivate) an operator; records keep their name."""
        with self.unit.write(actor, supervisor=True) as session:
            target = session.exec(where(select(Operator), col(Operator.name) == name)).first()
            if target is None:
                raise NotebookNotFoundError("name", f"there is no operator {name!r}")
            target.active = bool(active)
        return target

    def get_operator(self, name: str) -> Operator | None:
        with self.unit.read() as session:
            return session.exec(where(select(Operator), col(Operator.name) == name)).first()

    def list_operators(self) -> list[Operator]:
        with self.unit.read() as session:
            return list(session.exec(select(Operator).order_by(col(Operator.name))))

    def check_pin(self, name: str, pin: str) -> bool:
        """True when ``name`` is an active, unlocked operator and ``pin`` is theirs; a wrong PIN
        counts towards the lockout like a failed login."""
        try:
            self.authenticate(name, pin)
        except NotebookPermissionError:
            return False
        return True

    def authenticate(self, name: str, pin: str) -> Operator:
        """The operator for a login; one message for every failure (no hint which part), except
        a lockout (OperatorLockedError), which says until when."""
        if not isinstance(name, str) or not isinstance(pin, str):
            raise NotebookPermissionError(_WRONG)
        locked_until: datetime | None = None
        with self.unit.audited(SYSTEM_ACTOR) as session:
            operator = session.exec(where(select(Operator), col(Operator.name) == name)).first()
            if operator is None or not operator.active:
                raise NotebookPermissionError(_WRONG)
            require_audited(session, operator)
            now = as_utc(self.unit.now())
            if operator.locked_until is not None and now < as_utc(operator.locked_until):
                raise OperatorLockedError(name, as_utc(operator.locked_until).strftime("%H:%M:%S"))
            if pin_matches(pin, operator.pin_hash):
                if operator.failed_pins or operator.locked_until is not None:
                    operator.failed_pins, operator.locked_until = 0, None
                return operator
            # Counted and committed (audited) before the refusal is raised.
            operator.failed_pins += 1
            delay = lockout_seconds(operator.failed_pins)
            if delay:
                operator.locked_until = locked_until = now + timedelta(seconds=delay)
        if locked_until is not None:
            raise OperatorLockedError(name, locked_until.strftime("%H:%M:%S"))
        raise NotebookPermissionError(_WRONG)

    def unlock_operator(self, actor: str, name: str) -> Operator:
        """Lift ``name``'s PIN lockout and reset the count of wrong PINs (a supervisor only)."""
        with self.unit.write(actor, supervisor=True) as session:
            target = session.exec(where(select(Operator), col(Operator.name) == name)).first()
            if target is None:
                raise NotebookNotFoundError("name", f"there is no operator {name!r}")
            target.failed_pins, target.locked_until = 0, None
        return target
