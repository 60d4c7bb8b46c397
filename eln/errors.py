"""Errors of the lab notebook, each with a message an operator can act on."""

from __future__ import annotations


class NotebookError(Exception):
    """Base of every notebook error; ``str(error)`` is a plain sentence."""


class NotebookValidationError(NotebookError, ValueError):
    """A value the notebook refuses; ``field`` names the form field, ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __repr__(self) -> str:
        return f"NotebookValidationError(field={self.field!r}, message={self.message!r})"


class NotebookNotFoundError(NotebookValidationError):
    """A record the caller named does not exist (e.g. an unknown batch number)."""


class NotebookPermissionError(NotebookError, PermissionError):
    """The acting person may not do this (unknown, inactive, or not a supervisor)."""


class AuditError(NotebookError):
    """The audit trail refused a change."""


class AuditActorMissingError(AuditError):
    """Notebook data was about to be written without naming who wrote it."""


class AuditImmutableError(AuditError):
    """Something tried to change or remove an audit entry, or to bypass the audit trail."""


class OperatorLockedError(NotebookPermissionError):
    """Too many wrong PINs: the operator may not log in before ``locked_until`` (UTC) or a
    supervisor's unlock."""

    def __init__(self, name: str, locked_until: object) -> None:
        super().__init__(
            f"operator {name!r} is locked after too many wrong PINs until {locked_until} UTC; "
            "wait, or ask a supervisor to unlock ('bptwin operator unlock')"
        )
        self.name = name
        self.locked_until = locked_until
