"""Arithmetic of an offline sample: OD600 from a diluted reading, DCW from filter weights,
the model residual, entry times, and the SOP slot a new sample most likely belongs to.

Pure functions for forms (live previews) and reports; the notebook service stores the results.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta, timezone
from typing import Any

from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.form_rules import finite_or_none
from bptwin.eln.schedule import SampleSlot, SlotStatus

# The inoculum's go/no-go window (docs/process.md).
INOCULUM_OD600_RANGE = (2.0, 6.0)
# Plausible ranges for typed-in values: wider than biology, narrower than typos.
OD_RAW_RANGE = (0.0, 5.0)
DILUTION_RANGE = (1.0, 10_000.0)
OD600_MAX = 500.0
DCW_MAX_G_PER_L = 300.0
GLYCEROL_MAX_G_PER_L = 200.0

# The photometer's linear range: a recorded OD600 above it was read diluted.
OD_READING_LINEAR_MAX = 0.8

_CLOCK_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")


def od600(reading: Any, dilution: Any = 1.0) -> float | None:
    """OD600 = photometer reading × dilution factor; None while either is not a number."""
    raw, factor = (
        finite_or_none(reading),
        finite_or_none(dilution if dilution not in ("", None) else 1.0),
    )
    if raw is None or factor is None or raw < 0 or factor < 1:
        return None
    return raw * factor


def reading_and_dilution(od600: float | None) -> tuple[float | None, float]:
    """The photometer reading and dilution a recorded OD600 came from (the smallest whole
    dilution that keeps the reading in the linear range); (None, 1) without an OD600."""
    if od600 is None or not math.isfinite(od600):
        return None, 1.0
    dilution = float(max(1.0, math.ceil(od600 / OD_READING_LINEAR_MAX)))
    return od600 / dilution, dilution


def dcw_g_per_l(tare_mg: Any, dry_mg: Any, volume_ml: Any) -> float | None:
    """Dry cell weight (g/L) = (dry filter − empty filter) mg / filtered volume mL.

    mg/mL equals g/L. None while a value is missing, the volume is not positive or the dry
    filter weighs less than the empty one (the service says why when it is saved).
    """
    tare, dry, volume = finite_or_none(tare_mg), finite_or_none(dry_mg), finite_or_none(volume_ml)
    if tare is None or dry is None or volume is None or volume <= 0 or dry < tare:
        return None
    return (dry - tare) / volume


def residual_percent(measured: float | None, predicted: float | None) -> float | None:
    """Model residual in % of the measured value: (measured − predicted) / measured × 100.

    Positive: the model under-estimates. None without both values or for measured <= 0.
    """
    if measured is None or predicted is None:
        return None
    if not (math.isfinite(measured) and math.isfinite(predicted)) or measured <= 0:
        return None
    return (measured - predicted) / measured * 100.0


def parse_entry_time(field: str, text: str, now: datetime) -> datetime:
    """A time typed into a form, in UTC: "HH:MM" (today, or yesterday if that is ahead of
    ``now``), "YYYY-MM-DD HH:MM" or ISO 8601 with an offset. Naive times are UTC."""
    value = (text or "").strip()
    if not value:
        raise NotebookValidationError(field, f"{field} is required")
    match = _CLOCK_TIME.match(value)
    if match:
        hours, minutes, seconds = (int(part or 0) for part in match.groups())
        if hours > 23 or minutes > 59 or seconds > 59:
            raise NotebookValidationError(field, f"{field} {value!r} is not a time of day")
        moment = datetime.combine(now.date(), time(hours, minutes, seconds), tzinfo=timezone.utc)
        if moment - now > timedelta(minutes=5):
            moment -= timedelta(days=1)  # "23:50" typed just after midnight
        return moment
    try:
        moment = datetime.fromisoformat(value.replace("T", " "))
    except ValueError:
        raise NotebookValidationError(
            field, f"{field} {value!r} is not a time; use HH:MM or YYYY-MM-DD HH:MM (UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def format_entry_time(moment: datetime) -> str:
    """The form's way of showing a time: "YYYY-MM-DD HH:MM" in UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def next_slot(slots: Sequence[SampleSlot]) -> SampleSlot | None:
    """The slot a new sample most likely fills: one due now, else the next upcoming one,
    else the depletion slot while it is open; None when every slot is taken or missed."""
    for wanted in (SlotStatus.DUE, SlotStatus.UPCOMING):
        for slot in slots:
            if slot.status is wanted and slot.timepoint_h is not None:
                return slot
    for slot in slots:
        if slot.timepoint_h is None and slot.status in (SlotStatus.DUE, SlotStatus.UPCOMING):
            return slot
    return None


def slot_label(slot: SampleSlot) -> str:
    """ "4 h" or "depletion"."""
    return "depletion" if slot.timepoint_h is None else f"{slot.timepoint_h:g} h"


def due_prompt(slots: Sequence[SampleSlot]) -> str:
    """One line for the operator: missed samples first, then what is due, else what is next."""
    missed = [slot_label(slot) for slot in slots if slot.status is SlotStatus.MISSED]
    due = [slot for slot in slots if slot.status is SlotStatus.DUE]
    parts = []
    if missed:
        parts.append(f"MISSED: {', '.join(missed)} sample{'s' if len(missed) > 1 else ''}")
    if due:
        slot = due[0]
        until = "" if slot.due_at is None else f" (until {_hhmm(slot.due_at + _WINDOW)} UTC)"
        parts.append(f"SAMPLE DUE NOW: {slot_label(slot)}{until}")
    elif (upcoming := next_slot(slots)) is not None:
        at = "at depletion" if upcoming.due_at is None else f"at {_hhmm(upcoming.due_at)} UTC"
        parts.append(f"next sample: {slot_label(upcoming)} {at}")
    else:
        parts.append("all SOP samples taken")
    return " · ".join(parts)


_WINDOW = timedelta(minutes=15)


def _hhmm(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%H:%M")


_YES = {"y", "yes", "clean", "ok", "true", "1"}
_NO = {"n", "no", "not clean", "dirty", "false", "0"}


def parse_yes_no(field: str, text: str) -> bool | None:
    """ "y"/"n" (and a few synonyms) from a form; blank is None (not looked at)."""
    value = (text or "").strip().lower()
    if not value:
        return None
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise NotebookValidationError(field, f"{field}: answer y (yes) or n (no), not {text!r}")
