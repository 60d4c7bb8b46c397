"""Scores of the OD600 soft sensor and the campaign's verdict (docs/process.md "Model validation").

MRE = mean(|ŷ − y| / y). Its 95 % confidence interval comes from a *moving-block* bootstrap
over the 30 s windows of one batch: consecutive residuals of a soft sensor are strongly
correlated (a bias lasts for hours, not 30 s), so resampling single windows would pretend
there are ~2 800 independent errors per batch and give an interval far too narrow. Blocks of
one hour (120 windows) keep that correlation inside each resampled block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeAlias

import numpy as np

# What the scores accept: a plain sequence (a list in a test, a JSON list) or a 1-D array.
FloatSeries: TypeAlias = Sequence[float] | np.ndarray

MRE_LIMIT = 0.08
MRE_STRETCH = 0.06
MRE_AIM = 0.04
R2_MIN = 0.90
DO_RMSE_MAX = 5.0  # % saturation
DEPLETION_ERROR_MAX_MIN = 30.0
BATCHES_REQUIRED = 2  # of 3 hold-out batches
DEFAULT_BLOCK_WINDOWS = 120  # one hour of 30 s windows
DEFAULT_BOOTSTRAP = 1000

PASS = "pass"
CONDITIONAL = "conditional"
FAIL = "fail"


def _paired(y_true: FloatSeries, y_pred: FloatSeries) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(y_true, dtype=float)
    pred = np.asarray(y_pred, dtype=float)
    if truth.shape != pred.shape or truth.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D and the same length, got {truth.shape} and {pred.shape}"
        )
    usable = np.isfinite(truth) & np.isfinite(pred)
    return truth[usable], pred[usable]


def relative_errors(y_true: FloatSeries, y_pred: FloatSeries) -> np.ndarray:
    """|ŷ − y| / y for every pair with a finite prediction and a positive truth."""
    truth, pred = _paired(y_true, y_pred)
    positive = truth > 0
    errors: np.ndarray = np.abs(pred[positive] - truth[positive]) / truth[positive]
    return errors


def mre(y_true: FloatSeries, y_pred: FloatSeries) -> float:
    """Mean relative error (fraction, not %); NaN when nothing can be scored."""
    errors = relative_errors(y_true, y_pred)
    return float(errors.mean()) if errors.size else math.nan


def rmse(y_true: FloatSeries, y_pred: FloatSeries) -> float:
    truth, pred = _paired(y_true, y_pred)
    return float(np.sqrt(np.mean((pred - truth) ** 2))) if truth.size else math.nan


def r2(y_true: FloatSeries, y_pred: FloatSeries) -> float:
    """Coefficient of determination 1 − SS_res / SS_tot (NaN for a constant truth)."""
    truth, pred = _paired(y_true, y_pred)
    if truth.size < 2:
        return math.nan
    total = float(np.sum((truth - truth.mean()) ** 2))
    if total == 0:
        return math.nan
    return 1.0 - float(np.sum((pred - truth) ** 2)) / total


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval."""

    estimate: float
    lower: float
    upper: float
    level: float = 0.95


def block_bootstrap_mean(
    values: FloatSeries,
    *,
    block: int = DEFAULT_BLOCK_WINDOWS,
    n_boot: int = DEFAULT_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile CI of the mean of a correlated series by the moving-block bootstrap."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan, level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1 or block < 1:
        raise ValueError("n_boot and block must be at least 1")
    n = data.size
    block = min(block, n)
    n_blocks = math.ceil(n / block)
    # Cumulative sums give every block's sum in O(1): the bootstrap is n_boot × n_blocks adds.
    cumulative = np.concatenate(([0.0], np.cumsum(data)))
    starts_max = n - block + 1
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, starts_max, size=(n_boot, n_blocks))
    sums = (cumulative[starts + block] - cumulative[starts]).sum(axis=1)
    means = sums / (n_blocks * block)
    alpha = (1.0 - level) / 2.0
    lower, upper = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(data.mean()), float(lower), float(upper), level)


def mre_interval(
    y_true: FloatSeries,
    y_pred: FloatSeries,
    *,
    block: int = DEFAULT_BLOCK_WINDOWS,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Interval:
    """MRE with a 95 % moving-block bootstrap CI over the windows (in time order)."""
    return block_bootstrap_mean(
        relative_errors(y_true, y_pred), block=block, n_boot=n_boot, seed=seed
    )


def depletion_error_min(predicted: float | None, actual: float | None) -> float:
    """Signed error (predicted − actual) in minutes; NaN when either time is unknown."""
    if predicted is None or actual is None:
        return math.nan
    if not (math.isfinite(predicted) and math.isfinite(actual)):
        return math.nan
    return (predicted - actual) / 60.0


@dataclass(frozen=True)
class BatchScore:
    """Scores of one batch; errors as fractions, RMSE in OD units."""

    batch: int
    n_windows: int
    mre: Interval
    r2: float
    rmse: float
    depletion_error_min: float = math.nan
    do_rmse: float = math.nan

    def to_dict(self) -> dict[str, object]:
        return _json_safe_dict(asdict(self))


def score_batch(
    batch: int,
    y_true: FloatSeries,
    y_pred: FloatSeries,
    *,
    depletion_predicted: float | None = None,
    depletion_actual: float | None = None,
    do_true: FloatSeries | None = None,
    do_pred: FloatSeries | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> BatchScore:
    truth, pred = _paired(y_true, y_pred)
    return BatchScore(
        batch=batch,
        n_windows=int(truth.size),
        mre=mre_interval(truth, pred, n_boot=n_boot, seed=seed),
        r2=r2(truth, pred),
        rmse=rmse(truth, pred),
        depletion_error_min=depletion_error_min(depletion_predicted, depletion_actual),
        do_rmse=rmse(do_true, do_pred) if do_true is not None and do_pred is not None else math.nan,
    )


@dataclass(frozen=True)
class Criterion:
    name: str
    status: str  # pass / conditional / fail / not_evaluated
    detail: str


@dataclass(frozen=True)
class Verdict:
    """The campaign verdict: pass, conditional or fail, with every criterion's reason."""

    outcome: str
    criteria: tuple[Criterion, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        return _json_safe_dict(asdict(self))


def campaign_verdict(
    scores: Sequence[BatchScore],
    *,
    pooled_r2: float,
    mre_limit: float = MRE_LIMIT,
    batches_required: int = BATCHES_REQUIRED,
) -> Verdict:
    """Apply the hold-out rules of docs/process.md (Model validation criteria).

    * MRE ≤ 8 % on at least 2 of 3 batches: *pass* when those batches' CI upper bounds are
      ≤ 8 % too, *conditional* when only the point estimates are, *fail* otherwise.
    * R² > 0.90 (pooled over the hold-out windows).
    * Depletion time within 30 min on every batch where it was predicted.
    * DO RMSE < 5 % saturation on every batch with a DO prediction (``do_rmse``: the DO
      forecast, see :mod:`bptwin.twin.validation`), else "not evaluated".

    Outcome: fail if any criterion fails; conditional if any is conditional or none of the
    depletion errors could be evaluated; pass otherwise.
    """
    criteria: list[Criterion] = []
    needed = min(batches_required, len(scores))
    point_ok = [s for s in scores if s.mre.estimate <= mre_limit]
    ci_ok = [s for s in scores if s.mre.upper <= mre_limit]
    listing = ", ".join(
        f"{s.batch}: {100 * s.mre.estimate:.1f} % [{100 * s.mre.lower:.1f}, "
        f"{100 * s.mre.upper:.1f}]"
        for s in scores
    )
    if not scores:
        criteria.append(Criterion("mre", FAIL, "no hold-out batch scored"))
    elif len(ci_ok) >= needed:
        criteria.append(Criterion("mre", PASS, f"≤ {100 * mre_limit:.0f} % with CI: {listing}"))
    elif len(point_ok) >= needed:
        criteria.append(
            Criterion("mre", CONDITIONAL, f"point estimates ≤ limit, CI crosses it: {listing}")
        )
    else:
        criteria.append(Criterion("mre", FAIL, f"fewer than {needed} batches ≤ limit: {listing}"))

    if math.isfinite(pooled_r2):
        status = PASS if pooled_r2 > R2_MIN else FAIL
        criteria.append(Criterion("r2", status, f"pooled R² {pooled_r2:.3f} (limit > {R2_MIN})"))
    else:
        criteria.append(Criterion("r2", FAIL, "R² could not be computed"))

    depletion = [s for s in scores if math.isfinite(s.depletion_error_min)]
    if not depletion:
        criteria.append(Criterion("depletion", CONDITIONAL, "no depletion time to compare"))
    else:
        worst = max(abs(s.depletion_error_min) for s in depletion)
        status = PASS if worst <= DEPLETION_ERROR_MAX_MIN else FAIL
        if len(depletion) < len(scores) and status == PASS:
            status = CONDITIONAL
        errors = ", ".join(f"{s.batch}: {s.depletion_error_min:+.1f} min" for s in depletion)
        criteria.append(Criterion("depletion", status, f"worst {worst:.1f} min ({errors})"))

    do_scored = [s for s in scores if math.isfinite(s.do_rmse)]
    if do_scored:
        worst_do = max(s.do_rmse for s in do_scored)
        status = PASS if worst_do < DO_RMSE_MAX else FAIL
        listing = ", ".join(f"{s.batch}: {s.do_rmse:.2f}" for s in do_scored)
        detail = f"worst {worst_do:.2f} % sat (limit < {DO_RMSE_MAX:g}; {listing})"
        criteria.append(Criterion("do_rmse", status, detail))
    else:
        criteria.append(Criterion("do_rmse", "not_evaluated", "no DO prediction supplied"))

    statuses = {c.status for c in criteria}
    outcome = FAIL if FAIL in statuses else CONDITIONAL if CONDITIONAL in statuses else PASS
    return Verdict(outcome, tuple(criteria))


def _json_safe(value: object) -> object:
    """NaN/inf become None so the JSON report is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _json_safe_dict(value: Mapping[str, object]) -> dict[str, object]:
    """:func:`_json_safe` of a mapping, typed as the dict it returns."""
    return {str(k): _json_safe(v) for k, v in value.items()}


json_safe = _json_safe
