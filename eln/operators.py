"""Operators and their PINs: registering, deactivating, logging in (no UI code here)."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from bptwin.eln import form_rules as check
from bptwin.eln.errors import (
    NotebookNotFoundError,
    NotebookPermissionError,
    NotebookValidationError,
)
from bptwin.eln.models import Operator, OperatorRole
from bptwin.eln.pins import hash_pin, pin_matches
from bptwin.eln.unit_of_work import AggregateService, require_operator, where


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
        """True when ``name`` is an active operator and ``pin`` is theirs."""
        operator = self.get_operator(name) if isinstance(name, str) else None
        if operator is None or not operator.active or not isinstance(pin, str):
            return False
        return pin_matches(pin, operator.pin_hash)

    def authenticate(self, name: str, pin: str) -> Operator:
        """The operator for a login; one message for every failure (no hint which part)."""
        operator = self.get_operator(name) if self.check_pin(name, pin) else None
        if operator is None:
            raise NotebookPermissionError("unknown operator or wrong PIN")
        return operator
