"""A notebook that refuses writes: what a browser viewer of the control room gets.

:class:`ReadOnlyNotebook` wraps any :class:`~bptwin.eln.notebook.Notebook` (direct or spooled).
Reads and the login check pass through; every other protocol method is a write and goes through
its :class:`WriteGuard`, which refuses it with a NotebookPermissionError unless writing was
granted to the operator who logged in, and only for that operator's own entries. A protocol
method added later is refused until it is named a read here (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bptwin.eln.calibration import CalibrationPolicy
from bptwin.eln.errors import NotebookPermissionError
from bptwin.eln.notebook import Notebook

READS: frozenset[str] = frozenset(
    {
        "list_operators",
        "list_batches",
        "get_batch",
        "get_closure",
        "list_media_preparations",
        "list_process_changes",
        "list_signatures",
        "get_inoculum",
        "calibration_blockers",
        "calibration_in_force",
        "calibration_history",
        "list_samples",
        "sample_schedule",
        "list_deviations",
        "list_notes",
        "list_alarm_events",
        # A login is checked, not recorded as an entry: a viewer may log in where writes are
        # allowed (failed PINs still count towards the operator's lock-out).
        "authenticate",
        "check_pin",
    }
)

# Members of the protocol that are neither reads nor writes (handled by the wrapper itself).
OWN_MEMBERS: frozenset[str] = frozenset({"calibration_policy", "now", "close"})

PROTOCOL_MEMBERS: frozenset[str] = frozenset(
    name for name in vars(Notebook) if not name.startswith("_")
)

WRITES: frozenset[str] = PROTOCOL_MEMBERS - READS - OWN_MEMBERS


class WriteGuard:
    """Who may write in this session: nobody, until an allowed login grants it to one operator."""

    def __init__(self, *, writes_allowed: bool, session: str = "read-only web session") -> None:
        self.writes_allowed = writes_allowed
        self.session = session
        self.writer: str | None = None

    @property
    def read_only(self) -> bool:
        return self.writer is None

    def grant(self, operator: str) -> bool:
        """After a PIN login: ``operator`` may write when the settings allow writing here."""
        if self.writes_allowed and operator:
            self.writer = operator
        return not self.read_only

    def refusal(self) -> str:
        """Why this session may not write, in words an operator can act on."""
        if not self.writes_allowed:
            return (
                f"{self.session}: viewers cannot acknowledge, enter or change anything "
                "([web] allow_writes is false)"
            )
        return f"{self.session}: log in with your operator PIN to write"

    def check(self, actor: object) -> None:
        """Raise NotebookPermissionError unless ``actor`` is the operator granted writing."""
        if self.writer is None:
            raise NotebookPermissionError(self.refusal())
        if actor != self.writer:
            raise NotebookPermissionError(
                f"{self.session}: only {self.writer!r}, who logged in here, may write"
            )


class ReadOnlyNotebook:
    """The Notebook protocol with writes refused by a :class:`WriteGuard` (module docstring)."""

    def __init__(self, inner: Notebook, guard: WriteGuard) -> None:
        self.inner = inner
        self.guard = guard

    @property
    def calibration_policy(self) -> CalibrationPolicy:
        return self.inner.calibration_policy

    def now(self) -> datetime:
        return self.inner.now()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        if name in READS:
            return getattr(self.inner, name)
        if name in WRITES:
            return self._guarded(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _guarded(self, name: str) -> Callable[..., Any]:
        write = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.guard.check(kwargs["actor"] if "actor" in kwargs else (args[0] if args else None))
            return write(*args, **kwargs)

        return call
