"""When a calibration is in force: the policy (which kinds must pass before inoculation, how long
each stays valid), the validity intervals of a channel's history, and what blocks a batch start.

Pure rules, no UI and no SQL; the kinds and channels are those of :mod:`bptwin.eln.calibration`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from bptwin.eln.calibration import (
    CHANNEL_KIND,
    DEFAULT_MANDATORY_KINDS,
    KIND_BY_SETTING,
    KIND_CHANNELS,
    CalibrationKind,
)


def kind_from_setting(name: str) -> CalibrationKind:
    try:
        return KIND_BY_SETTING[name]
    except KeyError:
        known = ", ".join(KIND_BY_SETTING)
        raise ValueError(f"unknown calibration kind {name!r}; known: {known}") from None


@dataclass(frozen=True, slots=True)
class CalibrationPolicy:
    """Which calibrations must pass before inoculation and how long each one stays valid.

    ``validity`` maps a kind to its period; a kind without one has no expiry of its own
    (then only a record's own ``valid_until`` ends it).
    """

    mandatory: tuple[CalibrationKind, ...] = DEFAULT_MANDATORY_KINDS
    validity: Mapping[CalibrationKind, timedelta] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, mandatory: Sequence[str], validity_hours: Mapping[str, float]
    ) -> CalibrationPolicy:
        """From the ``[calibration]`` settings' short names (``ph``, ``do``, ``offgas``...)."""
        return cls(
            mandatory=tuple(kind_from_setting(name) for name in mandatory),
            validity={
                kind_from_setting(name): timedelta(hours=float(hours))
                for name, hours in validity_hours.items()
            },
        )

    @property
    def mandatory_channels(self) -> tuple[str, ...]:
        return tuple(channel for kind in self.mandatory for channel in KIND_CHANNELS[kind])

    def validity_for_channel(self, channel: str) -> timedelta | None:
        kind = CHANNEL_KIND.get(channel)
        return None if kind is None else self.validity.get(kind)

    def valid_until(self, kind: CalibrationKind, performed_at: datetime) -> datetime | None:
        period = self.validity.get(kind)
        return None if period is None else performed_at + period

    def expires_at(self, record: CalibrationLike) -> datetime | None:
        """A record's own ``valid_until``, else performed_at + the channel's validity period."""
        if record.valid_until is not None:
            return record.valid_until
        period = self.validity_for_channel(record.channel)
        return None if period is None else record.performed_at + period


class CalibrationLike(Protocol):
    """What the validity rules read of a calibration record (a stored row or a frozen copy)."""

    @property
    def id(self) -> int | None: ...
    @property
    def channel(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def performed_at(self) -> datetime: ...
    @property
    def valid_until(self) -> datetime | None: ...
    @property
    def passed(self) -> bool: ...
    @property
    def override_reason(self) -> str | None: ...


RecordT = TypeVar("RecordT", bound=CalibrationLike)


def accepted(record: CalibrationLike) -> bool:
    """Passed, or failed and accepted by a supervisor's override reason."""
    return bool(record.passed or record.override_reason)


@dataclass(frozen=True, slots=True)
class ValidityPeriod(Generic[RecordT]):
    """When one calibration was in force: [valid_from, valid_to); ``ended_by`` says why it ended."""

    record: RecordT
    valid_from: datetime
    valid_to: datetime | None
    # "expired", "superseded", "" (in force now, until valid_to if it has an expiry) or
    # "not accepted" (a failure nobody accepted: never in force)
    ended_by: str

    @property
    def in_force_ever(self) -> bool:
        return self.ended_by != "not accepted"

    def covers(self, at: datetime) -> bool:
        return (
            self.in_force_ever
            and self.valid_from <= at
            and (self.valid_to is None or at < self.valid_to)
        )


def validity_periods(
    records: Iterable[RecordT],
    policy: CalibrationPolicy | None = None,
    now: datetime | None = None,
) -> list[ValidityPeriod[RecordT]]:
    """Periods of one channel's records, oldest first. A record is in force from its time until
    it expires or the next calibration of the channel (passed or not) replaces it; one whose
    expiry is still ahead of ``now`` is in force (``now`` None: every expiry counts as past)."""
    policy = policy or CalibrationPolicy()
    ordered = sorted(records, key=lambda r: (r.performed_at, r.id or 0))
    periods = []
    for index, record in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        periods.append(_period(record, following, policy, now))
    return periods


def _period(
    record: RecordT,
    following: CalibrationLike | None,
    policy: CalibrationPolicy,
    now: datetime | None = None,
) -> ValidityPeriod[RecordT]:
    if not accepted(record):
        end = following.performed_at if following is not None else None
        return ValidityPeriod(record, record.performed_at, end, "not accepted")
    expires = policy.expires_at(record)
    replaced = following.performed_at if following is not None else None
    if replaced is not None and (expires is None or replaced <= expires):
        return ValidityPeriod(record, record.performed_at, replaced, "superseded")
    if expires is not None and (now is None or expires <= now):
        return ValidityPeriod(record, record.performed_at, expires, "expired")
    return ValidityPeriod(record, record.performed_at, expires, "")


def period_at(
    latest_before: RecordT | None,
    next_after: CalibrationLike | None,
    at: datetime,
    policy: CalibrationPolicy | None = None,
) -> ValidityPeriod[RecordT] | None:
    """The period in force at ``at`` given the channel's last record at or before ``at`` and the
    first one after it; None when no accepted, unexpired calibration covers that moment."""
    if latest_before is None:
        return None
    period = _period(latest_before, next_after, policy or CalibrationPolicy())
    return period if period.covers(at) else None


def blocking_problem(
    record: CalibrationLike | None, now: datetime, policy: CalibrationPolicy | None = None
) -> str | None:
    """Why the latest calibration of a mandatory channel blocks a batch start, or None."""
    if record is None:
        return "never calibrated"
    if not accepted(record):
        return "last calibration failed"
    expires = (policy or CalibrationPolicy()).expires_at(record)
    if expires is not None and expires < now:
        return f"expired {expires:%Y-%m-%d %H:%M} UTC"
    return None
