"""Offline samples of a batch (OD600, dry cell weight, microscopy, glycerol) and the SOP sampling
schedule they fill. No UI code here; the arithmetic is eln.sample_math's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col

from bptwin.eln import form_rules as check
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.models import Sample
from bptwin.eln.sample_math import (
    DCW_MAX_G_PER_L,
    DILUTION_RANGE,
    GLYCEROL_MAX_G_PER_L,
    OD600_MAX,
    OD_RAW_RANGE,
)
from bptwin.eln.schedule import SampleSlot, sample_schedule
from bptwin.eln.unit_of_work import AggregateService, find_batch, of_batch, row_id


def at_or_after_inoculation(taken: datetime, inoculated_at: datetime) -> datetime:
    """The sampling time to store, never before the inoculation.

    A time typed to the minute means that whole minute (and one to the second that second):
    the 0 h sample typed (or prefilled) as "10:00" for an inoculation at 10:00:30 is taken at
    the inoculation, and stored at it. A time wholly before the inoculation is refused.
    """
    if taken >= inoculated_at:
        return taken
    if taken.microsecond:
        given_to = timedelta(0)
    elif taken.second:
        given_to = timedelta(seconds=1)
    else:
        given_to = timedelta(minutes=1)
    if taken + given_to > inoculated_at:
        return inoculated_at
    raise NotebookValidationError(
        "sampling time",
        f"sampling time {taken.isoformat(timespec='seconds')} is before the "
        f"inoculation at {inoculated_at.isoformat(timespec='seconds')}",
    )


class SampleService(AggregateService):
    """Samples: entered with their checks, listed, and placed in the SOP schedule."""

    def add_sample(
        self,
        actor: str,
        number: int,
        *,
        taken_at: datetime,
        od_raw: check.NumberInput | None = None,
        dilution: check.NumberInput = 1.0,
        sop_timepoint_h: check.NumberInput | None = None,
        dcw_g_per_l: check.NumberInput | None = None,
        filter_tare_mg: check.NumberInput | None = None,
        filter_dry_mg: check.NumberInput | None = None,
        filter_volume_ml: check.NumberInput | None = None,
        microscopy_clean: bool | None = None,
        microscopy_text: str = "",
        glycerol_g_per_l: check.NumberInput | None = None,
        predicted_od600: float | None = None,
    ) -> Sample:
        """An offline sample; OD600 = reading × dilution, DCW from filter weights if given.

        A lab without a photometer leaves the OD600 reading out and gives the dry weight (typed
        or from the filter weights); a sample with neither is refused.
        """
        now = self.unit.now()
        taken = check.moment("sampling time", taken_at, default_now=False, now=now)
        if taken is None:
            raise NotebookValidationError("sampling time", "sampling time is required")
        raw = check.number(
            "OD600 reading",
            od_raw,
            minimum=OD_RAW_RANGE[0],
            maximum=OD_RAW_RANGE[1],
            required=False,
        )
        factor = check.number(
            "dilution", dilution, minimum=DILUTION_RANGE[0], maximum=DILUTION_RANGE[1]
        )
        assert factor is not None
        od600 = None if raw is None else raw * factor
        if od600 is not None and od600 > OD600_MAX:
            raise NotebookValidationError(
                "OD600", f"OD600 {od600:g} (reading × dilution) is implausibly high"
            )
        timepoint = check.number(
            "SOP time point", sop_timepoint_h, minimum=0.0, maximum=100.0, unit="h", required=False
        )
        dcw = _dry_cell_weight(dcw_g_per_l, filter_tare_mg, filter_dry_mg, filter_volume_ml)
        if od600 is None and dcw.value is None:
            raise NotebookValidationError(
                "OD600 reading",
                "a sample needs an OD600 reading or a dry weight (DCW or filter weights)",
            )
        sample = Sample(
            sop_timepoint_h=timepoint,
            taken_at=taken,
            entered_at=now,
            od_raw=raw,
            dilution=factor,
            od600=od600,
            dcw_g_per_l=dcw.value,
            filter_tare_mg=dcw.tare,
            filter_dry_mg=dcw.dry,
            filter_volume_ml=dcw.volume,
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
        with self.unit.write(actor) as session:
            batch = find_batch(session, number)
            if batch.inoculated_at is None:
                raise NotebookValidationError(
                    "sampling time",
                    f"batch {batch.number} is not inoculated yet; no samples before inoculation",
                )
            taken = at_or_after_inoculation(taken, batch.inoculated_at)
            sample.taken_at = taken
            sample.batch_id = row_id(batch)
            session.add(sample)
        return sample

    def list_samples(self, number: int) -> list[Sample]:
        with self.unit.read() as session:
            batch = find_batch(session, number)
            return list(session.exec(of_batch(Sample, batch).order_by(col(Sample.taken_at))))

    def sample_schedule(
        self, number: int, *, depleted_at: datetime | None = None
    ) -> list[SampleSlot]:
        """The SOP sampling slots of a running or ended batch and their status now."""
        with self.unit.read() as session:
            batch = find_batch(session, number)
            samples = list(session.exec(of_batch(Sample, batch)))
        if batch.inoculated_at is None:
            raise NotebookValidationError(
                "batch", f"batch {batch.number} is not inoculated yet; no samples are due"
            )
        return sample_schedule(
            batch.inoculated_at,
            samples,
            self.unit.now(),
            depleted_at=depleted_at,
            ended_at=batch.ended_at,
        )


@dataclass(frozen=True, slots=True)
class _DryCellWeight:
    """The DCW of a sample and the filter weights it came from (all checked)."""

    value: float | None
    tare: float | None = None
    dry: float | None = None
    volume: float | None = None


def _dry_cell_weight(
    dcw_g_per_l: check.NumberInput | None,
    filter_tare_mg: check.NumberInput | None,
    filter_dry_mg: check.NumberInput | None,
    filter_volume_ml: check.NumberInput | None,
) -> _DryCellWeight:
    """DCW as typed, or from the filter weights (which must then agree with a typed DCW)."""
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
    if tare is None and dry is None and volume is None:
        return _DryCellWeight(dcw)
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
    return _DryCellWeight(computed, tare, dry, volume)
