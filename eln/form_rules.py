"""Form-value checks shared by the notebook services (and usable by screens before saving).

Each check returns the cleaned value or raises NotebookValidationError naming the field and
saying, in plain words, what is wrong. Free text is stored as given (queries are always
parameterised), but control characters and NUL bytes, which Postgres refuses, are not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from bptwin.eln.errors import NotebookValidationError

# What a form hands over: the value, or its text as typed (the checks parse or refuse it).
NumberInput = float | str
WholeNumberInput = int | str

# Codes, lots, vessels and reactor ids: letters, digits and a few separators, nothing else.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/#:+()-]*$")
_LOGIN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# An entry dated further ahead than this is a typo or a wrong clock.
MAX_FUTURE = timedelta(minutes=5)
MAX_BATCH_NUMBER = 999_999


def text(field: str, value: Any, *, max_length: int | None = None, required: bool = False) -> str:
    """Free text (notes, descriptions): any printable characters, newlines and tabs."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise NotebookValidationError(field, f"{field} must be text")
    cleaned = value.strip()
    if required and not cleaned:
        raise NotebookValidationError(field, f"{field} must not be empty")
    if _CONTROL.search(cleaned):
        raise NotebookValidationError(field, f"{field} contains control characters")
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError:
        raise NotebookValidationError(field, f"{field} contains invalid characters") from None
    if max_length is not None and len(cleaned) > max_length:
        raise NotebookValidationError(
            field, f"{field} is {len(cleaned)} characters long; at most {max_length} allowed"
        )
    return cleaned


def identifier(field: str, value: Any, *, max_length: int = 64, required: bool = False) -> str:
    """A code such as a medium lot, vessel or reactor id: letters, digits, . _ - / # : + ( )."""
    code = text(field, value, max_length=max_length, required=required)
    if code and not _IDENTIFIER.match(code):
        raise NotebookValidationError(
            field,
            f"{field} {code!r} may only hold letters, digits, spaces and . _ - / # : + ( )",
        )
    return code


def login_name(field: str, value: Any) -> str:
    """An operator's login: lower-case letters, digits, '.', '_' or '-', up to 64 characters."""
    name = text(field, value, max_length=64, required=True)
    if not _LOGIN_NAME.match(name):
        raise NotebookValidationError(
            field,
            f"{field} {name!r} must be lower-case letters, digits, '.', '_' or '-' "
            "and start with a letter or digit",
        )
    return name


def number(
    field: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    unit: str = "",
    required: bool = True,
    exclusive_minimum: bool = False,
) -> float | None:
    """A finite number within [minimum, maximum]; text such as "4.2" is accepted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise NotebookValidationError(field, f"{field} is required")
        return None
    if isinstance(value, bool):
        raise NotebookValidationError(field, f"{field} must be a number, not yes/no")
    try:
        result = float(value.strip().replace(",", ".") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise NotebookValidationError(field, f"{field} {value!r} is not a number") from None
    if not math.isfinite(result):
        raise NotebookValidationError(field, f"{field} must be a finite number, got {value!r}")
    suffix = f" {unit}" if unit else ""
    if minimum is not None and (result <= minimum if exclusive_minimum else result < minimum):
        relation = "above" if exclusive_minimum else "at least"
        raise NotebookValidationError(
            field, f"{field} {result:g}{suffix} is too small; it must be {relation} {minimum:g}"
        )
    if maximum is not None and result > maximum:
        raise NotebookValidationError(
            field, f"{field} {result:g}{suffix} is too large; it must be at most {maximum:g}"
        )
    return result


def whole_number(field: str, value: Any, *, minimum: int, maximum: int) -> int:
    """An integer within [minimum, maximum] (a batch number, a deviation level)."""
    if isinstance(value, bool):
        raise NotebookValidationError(field, f"{field} must be a whole number")
    # ASCII digits only: '²'.isdigit() is True, but int('²') fails.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise NotebookValidationError(field, f"{field} {value!r} is not a whole number")
    if not minimum <= value <= maximum:
        raise NotebookValidationError(field, f"{field} {value} is outside {minimum}-{maximum}")
    return value


def batch_number(value: Any, field: str = "batch number") -> int:
    """A batch number: a whole number from 1 to 999 999."""
    return whole_number(field, value, minimum=1, maximum=MAX_BATCH_NUMBER)


def moment(
    field: str, value: Any, *, default_now: bool = True, now: datetime | None = None
) -> datetime | None:
    """A timezone-aware date and time, not in the future; None means now (or stays None)."""
    now = now or datetime.now(timezone.utc)
    if value is None:
        return now if default_now else None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise NotebookValidationError(
                field, f"{field} {value!r} is not a date and time (use ISO 8601)"
            ) from None
    if not isinstance(value, datetime):
        raise NotebookValidationError(field, f"{field} must be a date and time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NotebookValidationError(
            field, f"{field} {value.isoformat()} has no time zone; give it in UTC"
        )
    if value - now > MAX_FUTURE:
        raise NotebookValidationError(
            field, f"{field} {value.isoformat(timespec='minutes')} is in the future"
        )
    return value


def choice(field: str, value: Any, enum_class: Any) -> Any:
    """A member of ``enum_class`` given as the member or its value (case-insensitive text)."""
    if isinstance(value, enum_class):
        return value
    for member in enum_class:
        if isinstance(value, str) and value.strip().lower() == str(member.value).lower():
            return member
    allowed = ", ".join(str(member.value) for member in enum_class)
    raise NotebookValidationError(field, f"{field} {value!r} is not one of {allowed}")


def pin(field: str, value: Any) -> str:
    """A PIN: 4 to 12 digits."""
    if not (isinstance(value, str) and value.isascii() and value.isdecimal()):
        raise NotebookValidationError(field, f"{field} must be 4 to 12 digits")
    if not 4 <= len(value) <= 12:
        raise NotebookValidationError(field, f"{field} must be 4 to 12 digits")
    return value


def plain_values(field: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Name -> number/text/yes-no tables for JSON columns; anything else is refused."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        key = text(field, name, max_length=64, required=True)
        if isinstance(value, float):
            number(f"{field} {key}", value)
        elif isinstance(value, str):
            value = text(f"{field} {key}", value, max_length=1000)
        elif value is not None and not isinstance(value, bool | int):
            raise NotebookValidationError(field, f"{field} {key} must be a number or text")
        clean[key] = value
    return clean


# ---- values made by software (alarm transitions, control records): kept, never refused;
# finite_or_none also reads a form's text for the screens' previews ----


def finite_or_none(value: Any) -> float | None:
    """``value`` (a number, or text such as "0,42") as a finite float; NaN, infinity, yes/no
    or no number at all become None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().replace(",", ".")
        if not value:
            return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def machine_time(field: str, value: Any, now: datetime) -> datetime:
    """A timestamp made by software: None means now, Unix seconds or an aware datetime; the
    future is allowed (an accelerated simulation runs ahead of the wall clock)."""
    if value is None:
        return now
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None:
        return value
    raise NotebookValidationError(field, f"{field} must be Unix seconds or a date and time in UTC")


def recipe(field: str, value: Any) -> dict[str, str]:
    """A recipe typed as ``ingredient=amount`` pairs separated by commas or semicolons
    (``"glycerol=40, basal_salts=26.7"``); the amounts are checked where they are stored."""
    if isinstance(value, Mapping):
        return {str(name): amount for name, amount in value.items()}
    pairs: dict[str, str] = {}
    for part in str(value or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        name, equals, amount = part.partition("=")
        if not equals or not name.strip() or not amount.strip():
            raise NotebookValidationError(
                field, f"{field}: {part.strip()!r} is not ingredient=amount"
            )
        pairs[name.strip()] = amount.strip()
    if not pairs:
        raise NotebookValidationError(field, f"{field} needs at least one ingredient=amount")
    return pairs
