"""What a batch closure record says as it is entered: one list of its fields.

The notebook protocol (eln.notebook), the batch service (eln.batches) and a correction under
a new signature all take these keywords; a field added here is taken by all of them.
"""

from __future__ import annotations

from typing import TypedDict

from bptwin.eln.form_rules import NumberInput


class _ClosureOutcome(TypedDict):
    outcome: str


class ClosureEntry(_ClosureOutcome, total=False):
    """A closure's values as typed in (numbers may be text); the notebook checks them."""

    final_od600: NumberInput | None
    final_dcw_g_per_l: NumberInput | None
    harvest_volume_ml: NumberInput | None
    runtime_h: NumberInput | None
    depletion_time_h: NumberInput | None
    do_spike_time_h: NumberInput | None
    base_used_ml: NumberInput | None
    harvest: str
    missing_samples_reason: str | None


# Every field, in the record's order (a correction may change any of them).
CLOSURE_FIELDS: tuple[str, ...] = tuple(ClosureEntry.__annotations__)
