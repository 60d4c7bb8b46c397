"""Column types that behave the same on SQLite and Postgres: UTC datetimes and string enums."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def utc_now() -> datetime:
    """Now, timezone-aware UTC (the only kind of datetime the notebook stores)."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime, field: str = "time") -> datetime:
    """``value`` converted to UTC; a naive datetime is refused (its zone is a guess)."""
    if not isinstance(value, datetime):
        raise ValueError(f"{field} must be a date and time, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} {value.isoformat()} has no time zone; give it in UTC")
    return value.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    Postgres keeps ``timestamptz``; SQLite has no zones, so UTC is stored naive and the
    zone re-attached on load.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = as_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if not isinstance(moment, datetime):
            raise TypeError(f"a stored time is {type(value).__name__}, not a date and time")
        if moment.tzinfo is None:
            return moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)


class EnumString(TypeDecorator[Enum]):
    """A Python enum stored as its string value in a plain VARCHAR (no database enum type)."""

    impl = String
    cache_ok = True

    def __init__(self, enum_class: type[Enum], length: int = 32) -> None:
        super().__init__(length=length)
        self.enum_class = enum_class

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, self.enum_class):
            return str(value.value)
        try:
            return str(self.enum_class(value).value)
        except ValueError:
            allowed = ", ".join(str(member.value) for member in self.enum_class)
            raise ValueError(
                f"{value!r} is not a valid {self.enum_class.__name__}; use one of {allowed}"
            ) from None

    def process_result_value(self, value: Any, dialect: Dialect) -> Enum | None:
        return None if value is None else self.enum_class(value)
