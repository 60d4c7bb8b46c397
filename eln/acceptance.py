"""Batch acceptance for training: the five criteria of docs/process.md, evaluated from the notebook.

1. Completion: glycerol depletion reached, duration 16–26 h, not aborted.
2. Completeness: all 8 SOP samples, each form entered within 2 h of sampling, < 1 % sensor
   dropout on every channel.
3. Stability: no level-3 deviation, at most one level-2 deviation and it reviewed.
4. Sterility: every microscopy (inoculum and samples) clean.
5. Measurement quality: OD600 follows growth, DCW on the batch's OD–DCW line (R² ≥ 0.95),
   no sample more than 3 SD off that line.

Each criterion is ``passed`` True (met), False (not met) or None (cannot be decided yet: the
batch is still running, a review is pending, a value was not recorded or not computed), with
its evidence in plain words. The verdict is "fail" if any criterion fails, else "incomplete"
if any is undecided, else "pass".

Sensor dropout comes from the time-series store, which the notebook does not reach: the
caller computes it (``bptwin.twin.dropout.sensor_dropout_pct``) and passes it in. The rules here are
pure functions of notebook records, so they can be checked on hand-made batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

from bptwin.eln.form_rules import finite_or_none
from bptwin.eln.records import BatchView, ClosureView, DeviationView, InoculumView, SampleView
from bptwin.eln.schedule import SlotStatus, sample_schedule
from bptwin.eln.states import BatchStatus, DeviationStatus

VERDICT_PASS = "pass"
VERDICT_FAIL = "fail"
VERDICT_INCOMPLETE = "incomplete"

CRITERIA_NAMES: dict[int, str] = {
    1: "completion",
    2: "completeness",
    3: "stability",
    4: "sterility",
    5: "measurement quality",
}


@dataclass(frozen=True)
class AcceptanceLimits:
    """The numbers behind the criteria (docs/process.md); parameters, so a lab can tighten them."""

    duration_h: tuple[float, float] = (16.0, 26.0)
    sop_sample_count: int = 8
    form_delay_h: float = 2.0
    max_dropout_pct: float = 1.0
    max_level2: int = 1
    # OD600 "follows growth": the last sample at least this many times the first, and no
    # sample lower than the one before by more than this fraction (photometer and dilution
    # error are a few per cent; a real drop during growth means a mix-up or a problem).
    min_growth_fold: float = 2.0
    max_od_drop_fraction: float = 0.15
    min_od_dcw_r2: float = 0.95
    outlier_sd: float = 3.0
    min_line_points: int = 3


DEFAULT_LIMITS = AcceptanceLimits()
# The data's and the closure record's depletion times may differ by this much unremarked.
DEPLETION_AGREEMENT_H = 0.5


@dataclass(frozen=True)
class CriterionResult:
    """One criterion: met (True), not met (False) or undecided (None), and why."""

    number: int
    name: str
    passed: bool | None
    evidence: tuple[str, ...]

    @property
    def status(self) -> str:
        """ "pass", "fail" or "incomplete"."""
        if self.passed is None:
            return VERDICT_INCOMPLETE
        return VERDICT_PASS if self.passed else VERDICT_FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "passed": self.passed,
            "status": self.status,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class AcceptanceEvaluation:
    """The five criteria of one batch and the verdict they add up to."""

    batch_number: int
    criteria: tuple[CriterionResult, ...]
    verdict: str  # "pass" | "fail" | "incomplete"
    evaluated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    phase: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == VERDICT_PASS

    def criterion(self, number: int) -> CriterionResult:
        for result in self.criteria:
            if result.number == number:
                return result
        raise KeyError(f"no criterion {number}")

    def failed(self) -> list[CriterionResult]:
        return [result for result in self.criteria if result.passed is False]

    def undecided(self) -> list[CriterionResult]:
        return [result for result in self.criteria if result.passed is None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (stored with the supervisor's decision, written into reports)."""
        return {
            "batch": self.batch_number,
            "phase": self.phase,
            "verdict": self.verdict,
            "evaluated_at": self.evaluated_at.isoformat(),
            "criteria": [result.to_dict() for result in self.criteria],
        }

    def checklist(self) -> str:
        """The checklist as plain text, one criterion and its evidence per block."""
        marks = {VERDICT_PASS: "PASS", VERDICT_FAIL: "FAIL", VERDICT_INCOMPLETE: "OPEN"}
        lines = [f"Batch {self.batch_number} acceptance for training: {self.verdict.upper()}"]
        for result in self.criteria:
            lines.append(f"  [{marks[result.status]}] {result.number}. {result.name}")
            lines.extend(f"         - {line}" for line in result.evidence)
        return "\n".join(lines)


def verdict_of(criteria: Sequence[CriterionResult]) -> str:
    if any(result.passed is False for result in criteria):
        return VERDICT_FAIL
    if any(result.passed is None for result in criteria):
        return VERDICT_INCOMPLETE
    return VERDICT_PASS


def _combine(checks: Sequence[bool | None]) -> bool | None:
    """All parts met → True; any not met → False; otherwise undecided."""
    if any(check is False for check in checks):
        return False
    if any(check is None for check in checks):
        return None
    return True


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600.0


def _at(moment: datetime, start: datetime | None) -> str:
    """ "4.0 h" after inoculation when known, else the UTC clock time."""
    if start is not None:
        return f"{_hours(moment - start):.1f} h"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _sample_label(sample: SampleView, start: datetime | None) -> str:
    if sample.sop_timepoint_h is not None:
        return f"the {sample.sop_timepoint_h:g} h sample"
    return f"the sample at {_at(sample.taken_at, start)}"


# ---------------------------------------------------------------------------- the criteria


def batch_depletion_h(
    closure: ClosureView | None, depletion_time_h: float | None = None
) -> float | None:
    """Depletion time after inoculation: given from the data, else the closure record's."""
    for value in (
        depletion_time_h,
        None if closure is None else closure.depletion_time_h,
        None if closure is None else closure.do_spike_time_h,
    ):
        if value is not None and math.isfinite(value):
            return float(value)
    return None


def completion(
    batch: BatchView,
    closure: ClosureView | None,
    *,
    depletion_time_h: float | None = None,
    limits: AcceptanceLimits = DEFAULT_LIMITS,
) -> CriterionResult:
    """1. Depletion reached, duration within 16–26 h, not aborted."""
    evidence: list[str] = []
    checks: list[bool | None] = []
    if batch.status == BatchStatus.ABORTED:
        checks.append(False)
        evidence.append("the batch was aborted")
    elif batch.status == BatchStatus.COMPLETE:
        checks.append(True)
        evidence.append("the batch ended as complete (not aborted)")
    else:
        checks.append(None)
        evidence.append(f"the batch has not ended yet (status {batch.status.value})")

    low, high = limits.duration_h
    if batch.inoculated_at is None:
        checks.append(None)
        evidence.append("no inoculation time: the duration is unknown")
    elif batch.ended_at is None:
        checks.append(None)
        evidence.append("no end time yet: the duration is unknown")
    else:
        duration = _hours(batch.ended_at - batch.inoculated_at)
        inside = low <= duration <= high
        checks.append(inside)
        evidence.append(
            f"duration {duration:.1f} h from inoculation to end "
            f"({'within' if inside else 'outside'} {low:g}–{high:g} h)"
        )

    depletion = batch_depletion_h(closure, depletion_time_h)
    if depletion is not None:
        checks.append(True)
        source = "from the data" if depletion_time_h is not None else "in the closure record"
        evidence.append(f"glycerol depletion reached at {depletion:.1f} h ({source})")
        recorded = batch_depletion_h(closure)
        if (
            depletion_time_h is not None
            and recorded is not None
            and abs(recorded - depletion) > DEPLETION_AGREEMENT_H
        ):
            evidence.append(f"note: the closure record says {recorded:.1f} h")
    elif closure is not None:
        checks.append(False)
        evidence.append("the closure record gives no depletion time: depletion not reached")
    else:
        checks.append(None)
        evidence.append("depletion not known yet: no closure record and none detected")
    return CriterionResult(1, CRITERIA_NAMES[1], _combine(checks), tuple(evidence))


def completeness(
    batch: BatchView,
    samples: Sequence[SampleView],
    closure: ClosureView | None,
    *,
    sensor_dropout_pct: Mapping[str, float] | None,
    depletion_time_h: float | None = None,
    limits: AcceptanceLimits = DEFAULT_LIMITS,
) -> CriterionResult:
    """2. All 8 SOP samples, forms entered within 2 h of sampling, < 1 % sensor dropout."""
    evidence: list[str] = []
    checks: list[bool | None] = []
    start = batch.inoculated_at

    if start is None:
        checks.append(None)
        evidence.append("not inoculated: no samples are due yet")
    else:
        depletion = batch_depletion_h(closure, depletion_time_h)
        depleted_at = None if depletion is None else start + timedelta(hours=depletion)
        now = batch.ended_at or datetime.now(timezone.utc)
        slots = sample_schedule(
            start, samples, now, depleted_at=depleted_at, ended_at=batch.ended_at
        )
        present = [slot for slot in slots if slot.status in (SlotStatus.TAKEN, SlotStatus.LATE)]
        missing = [
            "depletion" if slot.timepoint_h is None else f"{slot.timepoint_h:g} h"
            for slot in slots
            if slot.status not in (SlotStatus.TAKEN, SlotStatus.LATE)
        ]
        count = len(present)
        if count >= limits.sop_sample_count:
            checks.append(True)
            evidence.append(f"all {limits.sop_sample_count} SOP samples are in the notebook")
        elif batch.ended_at is None:
            checks.append(None)
            evidence.append(
                f"{count} of {limits.sop_sample_count} SOP samples so far "
                f"(the batch is still running; open: {', '.join(missing)})"
            )
        elif missing == ["depletion"] and depleted_at is None:
            checks.append(None)
            evidence.append(
                f"{count} of {limits.sop_sample_count} SOP samples; the depletion sample "
                "cannot be placed while the depletion time is unknown"
            )
        else:
            checks.append(False)
            text = (
                f"{count} of {limits.sop_sample_count} SOP samples; missing: {', '.join(missing)}"
            )
            if closure is not None and closure.missing_samples_reason:
                text += f" (reason recorded: {closure.missing_samples_reason})"
            evidence.append(text)

    limit = timedelta(hours=limits.form_delay_h)
    late_forms = [sample for sample in samples if sample.entered_at - sample.taken_at > limit]
    if late_forms:
        checks.append(False)
        for sample in late_forms:
            delay = _hours(sample.entered_at - sample.taken_at)
            evidence.append(
                f"{_sample_label(sample, start)} was entered {delay:.1f} h after sampling "
                f"(limit {limits.form_delay_h:g} h)"
            )
    elif samples:
        checks.append(True)
        worst = max(_hours(sample.entered_at - sample.taken_at) for sample in samples)
        evidence.append(
            f"every sample form was entered within {limits.form_delay_h:g} h of sampling "
            f"(longest {max(worst, 0.0) * 60:.0f} min)"
        )

    if sensor_dropout_pct is None:
        checks.append(None)
        evidence.append("sensor dropout not computed (the time-series store was not read)")
    elif not sensor_dropout_pct:
        checks.append(None)
        evidence.append("no sensor channel holds data for the batch's time span")
    else:
        finite = {name: float(pct) for name, pct in sensor_dropout_pct.items()}
        over = {
            name: pct
            for name, pct in finite.items()
            if not math.isfinite(pct) or pct >= limits.max_dropout_pct
        }
        if over:
            checks.append(False)
            listed = ", ".join(
                f"{name} {pct:.2f} %" for name, pct in sorted(over.items(), key=lambda x: -x[1])
            )
            evidence.append(f"sensor dropout at or above {limits.max_dropout_pct:g} % on {listed}")
        else:
            checks.append(True)
            worst_name = max(finite, key=lambda name: finite[name])
            evidence.append(
                f"sensor dropout below {limits.max_dropout_pct:g} % on all {len(finite)} "
                f"channels (worst {worst_name} {finite[worst_name]:.2f} %)"
            )
    return CriterionResult(2, CRITERIA_NAMES[2], _combine(checks), tuple(evidence))


def stability(
    deviations: Sequence[DeviationView], *, limits: AcceptanceLimits = DEFAULT_LIMITS
) -> CriterionResult:
    """3. No level-3 deviation; at most one level-2 deviation, and that one reviewed."""
    evidence: list[str] = []
    checks: list[bool | None] = []
    critical = [d for d in deviations if d.level >= 3]
    major = [d for d in deviations if d.level == 2]
    minor = [d for d in deviations if d.level <= 1]
    if critical:
        checks.append(False)
        evidence.extend(
            f"level-3 deviation #{d.id} '{d.title}': a critical deviation excludes the batch"
            for d in critical
        )
    if len(major) > limits.max_level2:
        checks.append(False)
        titles = ", ".join(f"#{d.id} '{d.title}'" for d in major)
        evidence.append(
            f"{len(major)} level-2 deviations ({titles}); at most {limits.max_level2} allowed"
        )
    else:
        for d in major:
            if d.status == DeviationStatus.OPEN:
                checks.append(None)
                evidence.append(f"level-2 deviation #{d.id} '{d.title}' awaits its review")
            else:
                checks.append(True)
                evidence.append(
                    f"one level-2 deviation #{d.id} '{d.title}', reviewed by {d.reviewed_by}"
                )
    if not critical and not major:
        checks.append(True)
        evidence.append("no level-2 or level-3 deviation")
    if minor:
        evidence.append(f"{len(minor)} level-1 (minor) deviation(s), which do not count here")
    return CriterionResult(3, CRITERIA_NAMES[3], _combine(checks), tuple(evidence))


def sterility(
    batch: BatchView,
    samples: Sequence[SampleView],
    inoculum: InoculumView | None,
    deviations: Sequence[DeviationView] = (),
) -> CriterionResult:
    """4. Every microscopy clean: the inoculum's and each sample's; no contamination logged."""
    evidence: list[str] = []
    checks: list[bool | None] = []
    start = batch.inoculated_at
    if inoculum is not None:
        checks.append(bool(inoculum.microscopy_clean))
        evidence.append(
            "inoculum microscopy clean"
            if inoculum.microscopy_clean
            else "inoculum microscopy NOT clean"
        )
    contamination = [d for d in deviations if "contamin" in f"{d.category} {d.title}".lower()]
    if contamination:
        checks.append(False)
        evidence.extend(f"contamination deviation #{d.id} '{d.title}'" for d in contamination)
    if not samples:
        checks.append(None)
        evidence.append("no samples, so no microscopy to judge")
    unclean = [s for s in samples if s.microscopy_clean is False]
    unknown = [s for s in samples if s.microscopy_clean is None]
    for sample in unclean:
        finding = f": {sample.microscopy_text}" if sample.microscopy_text else ""
        evidence.append(f"{_sample_label(sample, start)} microscopy NOT clean{finding}")
    if unclean:
        checks.append(False)
    if unknown:
        checks.append(None)
        labels = ", ".join(_sample_label(s, start) for s in unknown)
        evidence.append(f"microscopy not recorded for {labels}")
    if samples and not unclean and not unknown:
        checks.append(True)
        evidence.append(f"microscopy clean on all {len(samples)} samples")
    return CriterionResult(4, CRITERIA_NAMES[4], _combine(checks), tuple(evidence))


@dataclass(frozen=True)
class LineFit:
    """DCW = intercept + slope · OD600 over the batch's samples, with its scatter."""

    slope: float
    intercept: float
    r2: float
    residual_sd: float
    points: int


def fit_line(x: Sequence[float], y: Sequence[float]) -> LineFit | None:
    """Least-squares line; None with fewer than 2 points or no spread in x."""
    n = len(x)
    if n < 2:
        return None
    mean_x, mean_y = sum(x) / n, sum(y) / n
    sxx = sum((xi - mean_x) ** 2 for xi in x)
    if sxx <= 0:
        return None
    sxy = sum((xi - mean_x) * (yi - mean_y) for xi, yi in zip(x, y, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    residuals = [yi - (intercept + slope * xi) for xi, yi in zip(x, y, strict=True)]
    ss_res = sum(r * r for r in residuals)
    ss_tot = sum((yi - mean_y) ** 2 for yi in y)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    sd = math.sqrt(ss_res / (n - 2)) if n > 2 else 0.0
    return LineFit(slope, intercept, r2, sd, n)


def line_outliers(
    x: Sequence[float], y: Sequence[float], outlier_sd: float
) -> list[tuple[int, float]]:
    """Points more than ``outlier_sd`` SD off the line fitted to the other points.

    Leave-one-out, because an outlier inflates the SD of a fit that includes it (with 8
    samples one bad DCW can hide itself). Returns (index, distance in SD) pairs.
    """
    found: list[tuple[int, float]] = []
    if len(x) < 4:
        return found
    for index in range(len(x)):
        others_x = [v for i, v in enumerate(x) if i != index]
        others_y = [v for i, v in enumerate(y) if i != index]
        fit = fit_line(others_x, others_y)
        if fit is None:
            continue
        residual = y[index] - (fit.intercept + fit.slope * x[index])
        # A floor on the SD: a near-perfect line must not call a 1 % scatter an outlier.
        sd = max(fit.residual_sd, 0.02 * abs(fit.intercept + fit.slope * x[index]), 1e-9)
        distance = abs(residual) / sd
        if distance > outlier_sd:
            found.append((index, distance))
    return found


def _growth_checks(
    series: Sequence[tuple[SampleView, float]],
    label: str,
    start: datetime | None,
    limits: AcceptanceLimits,
) -> tuple[bool | None, list[str]]:
    """Did ``label`` (OD600 or DCW) rise enough and never drop, over samples in time order?"""
    if len(series) < limits.min_line_points:
        return None, [
            f"{len(series)} samples with {label}: at least {limits.min_line_points} are needed"
        ]
    evidence: list[str] = []
    first, last = series[0][1], series[-1][1]
    fold = last / first if first > 0 else math.inf
    drops = [
        (before, after)
        for before, after in pairwise(series)
        if after[1] < before[1] * (1.0 - limits.max_od_drop_fraction)
    ]
    grew = fold >= limits.min_growth_fold
    evidence.append(
        f"{label} rose from {first:.3g} to {last:.3g} ({fold:.1f}-fold; "
        f"at least {limits.min_growth_fold:g}-fold expected)"
    )
    for (before, before_value), (after, after_value) in drops:
        evidence.append(
            f"{label} fell from {before_value:.3g} ({_sample_label(before, start)}) to "
            f"{after_value:.3g} ({_sample_label(after, start)}): it does not follow growth"
        )
    if not drops:
        evidence.append(
            f"no sample lower than the one before by more than "
            f"{100 * limits.max_od_drop_fraction:.0f} %"
        )
    return grew and not drops, evidence


def measurement_quality(
    batch: BatchView, samples: Sequence[SampleView], *, limits: AcceptanceLimits = DEFAULT_LIMITS
) -> CriterionResult:
    """5. OD600 follows growth; DCW on the OD–DCW line (R² ≥ 0.95); no outlier > 3 SD.

    Samples with a dry weight and no OD600 are left out of the OD checks (their count is said);
    a batch whose samples are all dry weights has its growth checked on the dry weight."""
    evidence: list[str] = []
    checks: list[bool | None] = []
    start = batch.inoculated_at
    in_time = sorted(samples, key=lambda s: s.taken_at)
    ordered = [(s, od) for s in in_time if (od := finite_or_none(s.od600)) is not None]
    weighed = [(s, dcw) for s in in_time if (dcw := finite_or_none(s.dcw_g_per_l)) is not None]
    dry_only = sum(1 for s, _ in weighed if finite_or_none(s.od600) is None)
    if dry_only:
        evidence.append(
            f"{dry_only} sample(s) with a dry weight and no OD600: not in the OD600 checks"
        )
    if not ordered and len(weighed) >= limits.min_line_points:
        grew, said = _growth_checks(weighed, "DCW", start, limits)
    else:
        grew, said = _growth_checks(ordered, "OD600", start, limits)
    checks.append(grew)
    evidence.extend(said)

    pairs = [
        (s, od, dcw)
        for s, od in ordered
        if od > 0 and (dcw := finite_or_none(s.dcw_g_per_l)) is not None
    ]
    if len(pairs) < limits.min_line_points:
        checks.append(None)
        evidence.append(
            f"{len(pairs)} samples with both OD600 and DCW: at least {limits.min_line_points} "
            "are needed for the OD–DCW line"
        )
    else:
        x = [od for _, od, _ in pairs]
        y = [dcw for _, _, dcw in pairs]
        fit = fit_line(x, y)
        if fit is None:
            checks.append(False)
            evidence.append("all samples have the same OD600: no OD–DCW line can be fitted")
        else:
            good = fit.r2 >= limits.min_od_dcw_r2
            checks.append(good)
            evidence.append(
                f"OD–DCW line DCW = {fit.slope:.3f} · OD600 {fit.intercept:+.2f} g/L over "
                f"{fit.points} samples, R² {fit.r2:.3f} "
                f"({'≥' if good else 'below'} {limits.min_od_dcw_r2:g}), "
                f"residual SD {fit.residual_sd:.2f} g/L"
            )
            outliers = line_outliers(x, y, limits.outlier_sd)
            if outliers:
                checks.append(False)
                for index, distance in outliers:
                    sample, od, dcw = pairs[index]
                    evidence.append(
                        f"{_sample_label(sample, start)} (OD600 {od:.3g}, DCW "
                        f"{dcw:.3g} g/L) is {distance:.1f} SD off the line "
                        f"of the others (limit {limits.outlier_sd:g} SD)"
                    )
            elif len(pairs) >= 4:
                evidence.append(f"no sample more than {limits.outlier_sd:g} SD off the line")
    return CriterionResult(5, CRITERIA_NAMES[5], _combine(checks), tuple(evidence))


# ---------------------------------------------------------------------------- whole batch


@dataclass(frozen=True)
class BatchRecords:
    """What the criteria read of one batch (frozen copies of its notebook rows)."""

    batch: BatchView
    samples: tuple[SampleView, ...] = ()
    deviations: tuple[DeviationView, ...] = ()
    closure: ClosureView | None = None
    inoculum: InoculumView | None = None


def evaluate_records(
    records: BatchRecords,
    *,
    sensor_dropout_pct: Mapping[str, float] | None = None,
    depletion_time_h: float | None = None,
    limits: AcceptanceLimits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> AcceptanceEvaluation:
    """The five criteria over already loaded records (pure: no database, no store)."""
    batch = records.batch
    criteria = (
        completion(batch, records.closure, depletion_time_h=depletion_time_h, limits=limits),
        completeness(
            batch,
            records.samples,
            records.closure,
            sensor_dropout_pct=sensor_dropout_pct,
            depletion_time_h=depletion_time_h,
            limits=limits,
        ),
        stability(records.deviations, limits=limits),
        sterility(batch, records.samples, records.inoculum, records.deviations),
        measurement_quality(batch, records.samples, limits=limits),
    )
    return AcceptanceEvaluation(
        batch_number=batch.number,
        criteria=criteria,
        verdict=verdict_of(criteria),
        evaluated_at=now or datetime.now(timezone.utc),
        phase=batch.phase.value if batch.phase is not None else "",
    )
