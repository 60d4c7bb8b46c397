"""Scoring a model on hold-out batches and writing the report folder (Markdown + PNG + JSON).

The reference OD600 is the simulator's truth when the dataset has it (``reference="auto"``),
else the offline samples interpolated log-linearly (see :mod:`~bptwin.twin.labels`). Scores:
MRE with a 95 % moving-block bootstrap CI (:mod:`bptwin.twin.metrics`), R², RMSE, depletion-time
error of the live detector; the campaign verdict; interval coverage; residuals by phase and
by time; gain importance; and the carbon-balance baseline for comparison.

DO (the campaign's "RMSE of predicted DO < 5 % saturation") is scored on the DO forecast, as
the twin predicts DO only forward: forecasts issued every 30 min (:data:`DO_ISSUE_EVERY`
windows) from the first window whose growth rate is fitted from the off-gas (``mu_cer``
finite: before that the off-gas signal is at noise level and the feature pipeline gates μ)
until depletion is detected, each compared with the reference DO (simulator truth, else the
measured window mean) at every later window to the end of the batch; RMSE pooled over all
those pairs per batch. Also reported: the same without the gate (forecasts from 0.5 h), the
RMSE at fixed horizons (30 min, 1 h, 2 h ahead) and the band's coverage.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bptwin.twin.conformal import card_base_log_sd
from bptwin.twin.drift import model_drift_watch
from bptwin.twin.labels import (
    BATCH_COLUMN,
    LABEL_COLUMN,
    TRUTH_DO_COLUMN,
    LabelError,
    dataset_fingerprint,
    dataset_table,
)
from bptwin.twin.metrics import (
    DEFAULT_BOOTSTRAP,
    BatchScore,
    Verdict,
    campaign_verdict,
    json_safe,
    mre,
    r2,
    rmse,
    score_batch,
)
from bptwin.twin.model import predict_table, usable_rows
from bptwin.twin.registry import ModelArtifact, ModelCard
from bptwin.twin.validation_adapt import (
    adapt_table,
    adaptation_scores,
    band_columns,
    drift_columns,
    merge_forecasts,
    render_adaptation,
)
from bptwin.twin.validation_forecast import (
    DO_HORIZONS_MIN,
    DO_ISSUE_EVERY,
    batch_budget,
    card_forecaster,
    do_forecast_scores,
    do_reference_column,
    first_finite,
    forecast_at,
    forecast_samples,
    forecast_scores,
    row_inputs,
)

ADAPTED_COLUMNS = ("od600_adapted", "adapted_lower", "adapted_upper", "band_lower", "band_upper")

if TYPE_CHECKING:
    from bptwin.twin.forecast import Forecaster

TIME_BINS_H = (0, 4, 8, 12, 16, 20, 24, 40)
DO_PLOT_ORIGINS_H = (10.0, 14.0, 18.0)
PHASE_ORDER = ("lag", "exponential", "stationary", "depleted")


@dataclass
class ValidationResult:
    model_version: str
    reference: str
    batches: list[int]
    scores: list[BatchScore]
    pooled: dict[str, float]
    verdict: Verdict
    baseline: dict[str, Any]
    coverage: float
    residuals_by_phase: list[dict[str, Any]]
    residuals_by_time: list[dict[str, Any]]
    importance: list[dict[str, Any]]
    table: pd.DataFrame = field(repr=False)
    forecaster: Forecaster | None = field(default=None, repr=False)
    # Offline samples per batch (time, DCW, glycerol, OD600) the forecast learns from.
    forecast_samples: dict[int, list[tuple[float, float, float, float]]] = field(
        default_factory=dict, repr=False
    )
    forecast: list[dict[str, Any]] = field(default_factory=list)
    do_forecast: list[dict[str, Any]] = field(default_factory=list)
    do_reference: str = ""
    data_fingerprint: str = ""
    dataset: str = ""
    dropped_channels: tuple[str, ...] = ()
    pipeline_warning: str | None = None
    adaptation: list[dict[str, Any]] = field(default_factory=list)
    attributions: dict[str, Any] = field(default_factory=dict)
    # The forecasts again, started from the adapted nowcast (what the live worker does once
    # the batch's samples have adapted it).
    forecast_adapted: list[dict[str, Any]] = field(default_factory=list)
    do_forecast_adapted: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "model_version": self.model_version,
                "reference": self.reference,
                "dataset": self.dataset,
                "data_fingerprint": self.data_fingerprint,
                "batches": self.batches,
                "dropped_channels": list(self.dropped_channels),
                "pipeline_warning": self.pipeline_warning,
                "verdict": self.verdict.to_dict(),
                "per_batch": [s.to_dict() for s in self.scores],
                "pooled": self.pooled,
                "interval_coverage": self.coverage,
                "baseline": self.baseline,
                "residuals_by_phase": self.residuals_by_phase,
                "residuals_by_time_h": self.residuals_by_time,
                "feature_importance_gain": self.importance,
                "forecast": self.forecast,
                "do_forecast": {"reference": self.do_reference, "per_batch": self.do_forecast},
                "adaptation": self.adaptation,
                "attributions": self.attributions,
                "forecast_adapted": self.forecast_adapted,
                "do_forecast_adapted": self.do_forecast_adapted,
            }
        )  # type: ignore[return-value]

    def summary_metrics(self) -> dict[str, Any]:
        """The short form stored in the model card."""
        return json_safe(
            {
                "reference": self.reference,
                "batches": self.batches,
                "mre_mean": float(np.mean([s.mre.estimate for s in self.scores])),
                "per_batch": {
                    str(s.batch): {
                        "mre": s.mre.estimate,
                        "mre_ci95": [s.mre.lower, s.mre.upper],
                        "r2": s.r2,
                        "rmse": s.rmse,
                        "depletion_error_min": s.depletion_error_min,
                        "do_rmse": s.do_rmse,
                    }
                    for s in self.scores
                },
                "pooled": self.pooled,
                "verdict": self.verdict.outcome,
                "interval_coverage": self.coverage,
                "baseline_mre_mean": self.baseline.get("mre_mean"),
                "forecast": self.forecast,
                "do_forecast": {"reference": self.do_reference, "per_batch": self.do_forecast},
            }
        )  # type: ignore[return-value]


def _reference(directory: Path, reference: str, model_label: str = "samples") -> str:
    """The reference label; a model scored against another quantity (OD600 against dry
    weight) is refused, as its error would be meaningless."""
    from bptwin.twin.dataset import read_manifest
    from bptwin.twin.labels import label_quantity

    if reference == "auto":
        if label_quantity(model_label) != "od600":
            reference = model_label
        else:
            simulated = read_manifest(directory).source == "simulated"
            reference = "truth" if simulated else "samples"
    if reference not in ("truth", "samples", "samples-dcw"):
        raise LabelError(f"reference must be auto, truth, samples or samples-dcw: {reference!r}")
    if label_quantity(reference) != label_quantity(model_label):
        raise LabelError(
            f"the model predicts {label_quantity(model_label)} (trained on {model_label!r}) "
            f"but the reference {reference!r} is {label_quantity(reference)}: score it on "
            "what it predicts"
        )
    return reference


class TrainingBatchError(LabelError):
    """Validation was asked to score batches the model was trained on."""


def used_in_training(card: ModelCard, directory: Path, batches: list[int]) -> list[int]:
    """The batches of ``directory`` (among ``batches``) that trained the model of ``card``.

    By batch identity (the hash of the batch's files) when the card records it, so a foreign
    campaign's batch 3 is not "batch 3 of the training set"; older cards only name batch
    numbers, which count when the dataset is the one the model was trained on.
    """
    from bptwin.twin.dataset import batch_identity, read_manifest

    records = {r.number: r for r in read_manifest(directory).batches}
    if card.training_batch_ids:
        known = set(card.training_batch_ids.values()) - {""}
        return sorted(b for b in batches if b in records and batch_identity(records[b]) in known)
    if card.data_fingerprint and card.data_fingerprint == dataset_fingerprint(directory):
        return sorted(set(batches) & set(card.training_batches))
    return []


def evaluate(
    artifact: ModelArtifact,
    dataset: Path | str,
    batches: list[int] | None = None,
    *,
    reference: str = "auto",
    n_boot: int = DEFAULT_BOOTSTRAP,
    jobs: int | None = None,
    table: pd.DataFrame | None = None,
    drop_channels: tuple[str, ...] = (),
    force: bool = False,
    adapt: bool = True,
) -> ValidationResult:
    """Score ``artifact`` on ``batches`` (default: the card's hold-out batches).

    ``drop_channels`` scores the batches as if those sensors had failed (stress test).
    Scoring a batch the model was trained on is a :class:`TrainingBatchError` unless
    ``force`` (then the result carries a warning). With ``adapt`` every batch is also scored
    adapted to its own samples, causally (``twin/validation_adapt.py``).
    """
    directory = Path(dataset)
    artifact.check_features()
    chosen = sorted(batches or artifact.card.holdout_batches)
    if not chosen:
        raise LabelError("no batches to validate on (the card names no hold-out batches)")
    overlap = used_in_training(artifact.card, directory, chosen)
    if overlap and not force:
        raise TrainingBatchError(
            f"batches {overlap} of {directory} were used to train model {artifact.version}: "
            "their scores would be optimistic; score hold-out batches, or pass --force"
        )
    label = _reference(directory, reference, artifact.card.label)
    if table is None:
        table = dataset_table(directory, chosen, label, jobs=jobs, drop_channels=drop_channels)
    table = usable_rows(table)
    predictions = predict_table(artifact, table)
    table = pd.concat([table, predictions], axis=1)
    table["relative_error"] = (table["od600_pred"] - table[LABEL_COLUMN]) / table[LABEL_COLUMN]
    k = artifact.card.metrics.get("baseline", {}).get("k_od_per_mmol_co2")
    if isinstance(k, int | float) and math.isfinite(k):
        od0 = table["inoculum_od600"].to_numpy(float)
        cum = np.nan_to_num(table["cum_co2_mmol_per_l"].to_numpy(float), nan=0.0)
        table["od600_baseline"] = od0 + k * cum
    else:
        table["od600_baseline"] = np.nan

    do_reference = do_reference_column(table, label)
    samples = forecast_samples(directory, chosen)
    do_scores, do_pairs = do_forecast_scores(artifact, table, do_reference, samples)
    scores = []
    for number in chosen:
        rows = table[table[BATCH_COLUMN] == number]
        if rows.empty:
            continue
        do_true, do_pred = do_pairs.get(number, (None, None))
        scores.append(
            score_batch(
                number,
                rows[LABEL_COLUMN].to_numpy(float),
                rows["od600_pred"].to_numpy(float),
                depletion_predicted=first_finite(rows["depletion_time"].to_numpy(float)),
                depletion_actual=first_finite(rows["depletion_true"].to_numpy(float)),
                do_true=do_true,
                do_pred=do_pred,
                n_boot=n_boot,
                seed=number,
            )
        )
    truth, pred = table[LABEL_COLUMN].to_numpy(float), table["od600_pred"].to_numpy(float)
    pooled = {"mre": mre(truth, pred), "r2": r2(truth, pred), "rmse": rmse(truth, pred)}
    verdict = campaign_verdict(scores, pooled_r2=pooled["r2"])
    inside = (truth >= table["od600_lower"].to_numpy()) & (truth <= table["od600_upper"].to_numpy())
    baseline_pred = table["od600_baseline"].to_numpy(float)
    baseline = {
        "method": "OD0 (0 h sample) + k · cumulative CO2, k fitted on the training batches",
        "k_od_per_mmol_co2": k,
        "mre_mean": float(
            np.mean(
                [mre(g[LABEL_COLUMN], g["od600_baseline"]) for _, g in table.groupby(BATCH_COLUMN)]
            )
        )
        if np.isfinite(baseline_pred).any()
        else math.nan,
        "r2": r2(truth, baseline_pred),
        "rmse": rmse(truth, baseline_pred),
        "per_batch_mre": {
            str(b): mre(g[LABEL_COLUMN], g["od600_baseline"])
            for b, g in table.groupby(BATCH_COLUMN)
        },
    }
    if overlap:
        baseline["warning"] = f"batches {overlap} were used in training: scores are optimistic"
    model_forecast = forecast_scores(artifact, table, do_reference, samples)
    adaptation: list[dict[str, Any]] = []
    forecast_adapted: list[dict[str, Any]] = []
    do_forecast_adapted: list[dict[str, Any]] = []
    if adapt:
        table, sample_times = adapt_table(
            table, directory, artifact.card.label, float(k) if k is not None else math.nan
        )
        watch = model_drift_watch(artifact.card, artifact.booster)
        if watch is not None:
            table = drift_columns(table, watch, table.attrs.get("samples", {}))
        table = band_columns(table, card_base_log_sd(artifact.card))
        from_adapted = table.assign(od600_pred=table["od600_adapted"])
        from_adapted.attrs = {}
        forecast_adapted = forecast_scores(artifact, from_adapted, do_reference, samples)
        do_forecast_adapted = do_forecast_scores(artifact, from_adapted, do_reference, samples)[0]
        adaptation = adaptation_scores(table, sample_times)
        merge_forecasts(adaptation, "model", model_forecast, do_scores)
        merge_forecasts(adaptation, "adapted", forecast_adapted, do_forecast_adapted)
    return ValidationResult(
        model_version=artifact.version,
        reference=label,
        batches=chosen,
        scores=scores,
        pooled=pooled,
        verdict=verdict,
        baseline=baseline,
        coverage=float(inside.mean()) if len(inside) else math.nan,
        residuals_by_phase=_residuals_by(table, "phase", PHASE_ORDER),
        residuals_by_time=_residuals_by_time(table),
        importance=_importance(artifact),
        table=table,
        forecaster=card_forecaster(artifact),
        forecast_samples=samples,
        forecast=model_forecast,
        do_forecast=do_scores,
        do_reference="simulator truth" if do_reference == TRUTH_DO_COLUMN else "measured DO",
        data_fingerprint=dataset_fingerprint(directory),
        dataset=str(directory),
        dropped_channels=tuple(drop_channels),
        pipeline_warning=artifact.pipeline_warning(),
        adaptation=adaptation,
        attributions=_attributions(artifact, table),
        forecast_adapted=forecast_adapted,
        do_forecast_adapted=do_forecast_adapted,
    )


def _residual_stats(group: pd.DataFrame) -> dict[str, Any]:
    errors = group["relative_error"].to_numpy(float)
    return {
        "windows": len(group),
        "mre": float(np.mean(np.abs(errors))) if len(errors) else math.nan,
        "bias": float(np.mean(errors)) if len(errors) else math.nan,
        "p95_abs": float(np.quantile(np.abs(errors), 0.95)) if len(errors) else math.nan,
    }


def _residuals_by(table: pd.DataFrame, column: str, order: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for value in order:
        group = table[table[column] == value]
        if not group.empty:
            rows.append({column: value, **_residual_stats(group)})
    return rows


def _residuals_by_time(table: pd.DataFrame) -> list[dict[str, Any]]:
    hours = table["time_since_inoculation_h"].to_numpy(float)
    rows = []
    for low, high in pairwise(TIME_BINS_H):
        group = table[(hours >= low) & (hours < high)]
        if not group.empty:
            rows.append({"from_h": low, "to_h": high, **_residual_stats(group)})
    return rows


def _attributions(artifact: ModelArtifact, table: pd.DataFrame) -> dict[str, Any]:
    """SHAP summary of the main model over the scored windows (fallback rows left out)."""
    from bptwin.twin.attributions import contributions, summary
    from bptwin.twin.features import FEATURE_NAMES

    rows = table[~table["fallback"].astype(bool)] if "fallback" in table else table
    if rows.empty:
        return {}
    matrix = rows[list(FEATURE_NAMES)].to_numpy(dtype=float)
    return summary(list(FEATURE_NAMES), contributions(artifact.booster, matrix))


def _importance(artifact: ModelArtifact, top: int = 15) -> list[dict[str, Any]]:
    gains = artifact.booster.feature_importance(importance_type="gain")
    names = artifact.booster.feature_name()
    total = float(np.sum(gains)) or 1.0
    order = np.argsort(gains)[::-1][:top]
    return [{"feature": names[i], "gain_share": float(gains[i] / total)} for i in order]


# -- the report folder -----------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.2f} %"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _quantity(result: ValidationResult) -> str:
    """What the scores are of: OD600, or dry weight (g DCW/L) for a samples-dcw model."""
    from bptwin.twin.labels import LABEL_UNITS

    return LABEL_UNITS.get(result.reference, "OD600")


def render_markdown(result: ValidationResult, images: list[str]) -> str:
    lines = [
        f"# Validation of model {result.model_version}",
        "",
        f"Dataset `{result.dataset}` (manifest sha256 `{result.data_fingerprint[:16]}…`), "
        f"batches {result.batches}, reference {_quantity(result)}: **{result.reference}**.",
        "",
    ]
    if result.dropped_channels:
        lines += [
            f"**Stress test:** channels {', '.join(result.dropped_channels)} removed from the "
            "readings (as if those sensors had failed for the whole batch).",
            "",
        ]
    lines += [
        f"## Verdict: **{result.verdict.outcome.upper()}**",
        "",
        "| criterion | status | detail |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {c.name} | {c.status} | {c.detail} |" for c in result.verdict.criteria]
    lines += [
        "",
        "## Per batch",
        "",
        "| batch | windows | MRE | 95 % CI | R² | RMSE (OD) | depletion error (min) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in result.scores:
        lines.append(
            f"| {s.batch} | {s.n_windows} | {_pct(s.mre.estimate)} | "
            f"{_pct(s.mre.lower)} – {_pct(s.mre.upper)} | {_num(s.r2)} | {_num(s.rmse)} | "
            f"{_num(s.depletion_error_min, 1)} |"
        )
    pooled = result.pooled
    base = result.baseline
    lines += [
        "",
        f"Pooled: MRE {_pct(pooled['mre'])}, R² {_num(pooled['r2'])}, "
        f"RMSE {_num(pooled['rmse'])} OD. 90 % interval coverage {_pct(result.coverage)}.",
        "",
        "CI: moving-block bootstrap (1 h blocks) over the windows of each batch, because "
        "residuals of consecutive windows are correlated; depletion error: the live "
        "detector's onset minus the true depletion time.",
        "",
        "## Baseline: carbon balance alone",
        "",
        f"{base['method']}: mean per-batch MRE {_pct(base.get('mre_mean'))}, "
        f"R² {_num(base.get('r2'))}, RMSE {_num(base.get('rmse'))} OD.",
        "",
    ]
    if "warning" in base:
        lines += [f"**Warning:** {base['warning']}", ""]
    if result.pipeline_warning:
        lines += [f"**Warning:** {result.pipeline_warning}", ""]
    lines += [
        "## Residuals",
        "",
        "Relative error (ŷ − y)/y; bias > 0 means over-prediction.",
        "",
        "| phase | windows | MRE | bias | 95th pct of abs |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['phase']} | {r['windows']} | {_pct(r['mre'])} | {_pct(r['bias'])} | "
        f"{_pct(r['p95_abs'])} |"
        for r in result.residuals_by_phase
    ]
    lines += [
        "",
        "| hours | windows | MRE | bias | 95th pct of abs |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['from_h']}–{r['to_h']} | {r['windows']} | {_pct(r['mre'])} | "
        f"{_pct(r['bias'])} | {_pct(r['p95_abs'])} |"
        for r in result.residuals_by_time
    ]
    if result.forecast:
        lines += [
            "",
            "## Forecast (carbon-balance hybrid, see docs/model.md)",
            "",
            "Forecast made at a fixed hour from that window and the batch's samples taken by "
            "then (its own carbon budget, once a sample vouches for the nowcast): error of the "
            "predicted depletion time (and its band), OD600 MRE from then to the end of the "
            "batch, share of the reference inside the band.",
            "",
            "| batch | made at (h) | depletion error (min) | band (min) | in band | OD MRE to end "
            "| OD band coverage | DO RMSE to end (% sat) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for f in result.forecast:
            low, high = f["depletion_band_min"]
            lines.append(
                f"| {f['batch']} | {f['origin_h']:.0f} | {_num(f['depletion_error_min'], 1)} | "
                f"{_num(low, 0)} … +{_num(high, 0)} | {'yes' if f['depletion_in_band'] else 'no'} "
                f"| {_pct(f['od_mre_to_end'])} | {_pct(f['od_band_coverage'])} "
                f"| {_num(f.get('do_rmse_to_end'), 2)} |"
            )
    if result.do_forecast:
        horizons = " | ".join(f"{m} min ahead" for m in DO_HORIZONS_MIN)
        lines += [
            "",
            "## DO forecast (% air saturation)",
            "",
            f"Reference: {result.do_reference}. Forecasts issued every "
            f"{DO_ISSUE_EVERY // 2} min from the first window with an off-gas growth rate "
            "(before that μ is gated at noise level) until depletion is detected; each is "
            "compared with the reference DO at every later window to the end of the batch. "
            "**RMSE to end** (pooled over all those pairs) is the campaign's DO criterion; "
            "*from start* adds the ungated forecasts from 0.5 h; the horizon columns score "
            "the forecast value that far ahead only; *persistence* is the baseline "
            '"DO stays at its current value" scored like the forecast.',
            "",
            f"| batch | forecasts | μ from off-gas at (h) | RMSE to end | from start "
            f"| persistence | {horizons} | band coverage |",
            "| --- | --- | --- | --- | --- | --- | "
            + " | ".join("---" for _ in DO_HORIZONS_MIN)
            + " | --- |",
        ]
        for d in result.do_forecast:
            at_horizon = " | ".join(
                _num(d["rmse_at_horizon_min"].get(str(m)), 2) for m in DO_HORIZONS_MIN
            )
            lines.append(
                f"| {d['batch']} | {d['forecasts']} | {_num(d['first_issue_h'], 1)} | "
                f"{_num(d['rmse_to_end'], 2)} | {_num(d['rmse_to_end_from_start'], 2)} | "
                f"{_num(d['persistence_rmse_to_end'], 2)} | {at_horizon} | "
                f"{_pct(d['band_coverage'])} |"
            )
    lines += render_adaptation(result.adaptation)
    if result.attributions:
        shap = result.attributions
        lines += ["", "## Attributions (mean |SHAP| over the scored windows, top 15)", ""]
        if shap.get("concentrated"):
            lines += [f"**Warning:** {shap['warning']}.", ""]
        lines += [
            f"- `{t['feature']}`: {100 * t['share']:.1f} % "
            f"(mean |contribution| {t['mean_abs_contribution']:.3f} ln OD)"
            for t in shap["top"]
        ]
    lines += ["", "## Feature importance (gain share, top 15)", ""]
    lines += [f"- `{i['feature']}`: {100 * i['gain_share']:.1f} %" for i in result.importance]
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def render_plots(result: ValidationResult, folder: Path) -> list[str]:
    """PNG plots with matplotlib's Agg backend; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.table
    written: list[str] = []
    batches = [s.batch for s in result.scores]
    fig, axes = plt.subplots(len(batches), 1, figsize=(9, 3 * len(batches)), squeeze=False)
    for ax, number in zip(axes[:, 0], batches, strict=True):
        rows = table[table[BATCH_COLUMN] == number]
        hours = rows["time_since_inoculation_h"]
        ax.fill_between(
            hours, rows["od600_lower"], rows["od600_upper"], alpha=0.25, label="90 % band"
        )
        ax.plot(hours, rows[LABEL_COLUMN], "k-", lw=1.2, label=f"reference ({result.reference})")
        ax.plot(hours, rows["od600_pred"], "C0-", lw=1, label="model")
        if rows["od600_baseline"].notna().any():
            ax.plot(hours, rows["od600_baseline"], "C3--", lw=0.8, label="carbon balance")
        ax.set_title(f"batch {number}")
        ax.set_ylabel(_quantity(result))
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("time since inoculation (h)")
    fig.tight_layout()
    fig.savefig(folder / "predicted_vs_time.png", dpi=90)
    plt.close(fig)
    written.append("predicted_vs_time.png")
    if result.attributions.get("top"):
        top = result.attributions["top"][:10][::-1]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.barh([t["feature"] for t in top], [t["mean_abs_contribution"] for t in top])
        ax.set_xlabel("mean |SHAP contribution| (ln OD600)")
        ax.set_title("what the model's predictions rest on")
        fig.tight_layout()
        fig.savefig(folder / "attributions.png", dpi=90)
        plt.close(fig)
        written.append("attributions.png")

    fig, (scatter, residual) = plt.subplots(1, 2, figsize=(11, 4.5))
    for number in batches:
        rows = table[table[BATCH_COLUMN] == number]
        scatter.plot(rows[LABEL_COLUMN], rows["od600_pred"], ".", ms=2, label=f"batch {number}")
        residual.plot(
            rows["time_since_inoculation_h"],
            100 * rows["relative_error"],
            ".",
            ms=2,
            label=f"batch {number}",
        )
    top = float(np.nanmax(table[LABEL_COLUMN])) * 1.05
    scatter.plot([0, top], [0, top], "k--", lw=0.8)
    scatter.set_xlabel(f"reference {_quantity(result)}")
    scatter.set_ylabel(f"predicted {_quantity(result)}")
    scatter.set_title("predicted vs actual")
    residual.axhline(0, color="k", lw=0.8)
    for limit in (-8, 8):
        residual.axhline(limit, color="C3", lw=0.6, ls=":")
    residual.set_xlabel("time since inoculation (h)")
    residual.set_ylabel("relative error (%)")
    residual.set_title("residuals vs time")
    scatter.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "predicted_vs_actual.png", dpi=90)
    plt.close(fig)
    written.append("predicted_vs_actual.png")
    if result.do_forecast:
        written.append(_plot_do_forecasts(result, folder, plt))
    return written


def _plot_do_forecasts(result: ValidationResult, folder: Path, plt: Any) -> str:
    """Reference DO and the forecasts issued at fixed hours, with their bands."""
    table = result.table
    column = TRUTH_DO_COLUMN if result.do_reference == "simulator truth" else "do_mean"
    batches = [d["batch"] for d in result.do_forecast]
    forecaster = result.forecaster
    fig, axes = plt.subplots(len(batches), 1, figsize=(9, 3 * len(batches)), squeeze=False)
    for ax, number in zip(axes[:, 0], batches, strict=True):
        batch = table[table[BATCH_COLUMN] == number]
        hours = batch["time_since_inoculation_h"].to_numpy(float)
        ends = batch["window_end"].to_numpy(float)
        ax.plot(hours, batch[column], "k-", lw=1.2, label=f"DO ({result.do_reference})")
        inputs = row_inputs(batch)
        budget = batch_budget(forecaster, batch, result.forecast_samples) if forecaster else None
        for colour, origin in enumerate(DO_PLOT_ORIGINS_H):
            at = int(np.searchsorted(hours, origin))
            if (
                forecaster is None
                or budget is None
                or at >= len(batch)
                or inputs["depleted"][at] > 0
            ):
                continue
            made = forecast_at(forecaster, inputs, at, budget(at))
            if made is None or made.do is None or made.do_lower is None or made.do_upper is None:
                continue
            shown = made.times <= ends[-1]
            when = hours[at] + (made.times[shown] - ends[at]) / 3600.0
            ax.fill_between(
                when, made.do_lower[shown], made.do_upper[shown], color=f"C{colour}", alpha=0.15
            )
            ax.plot(when, made.do[shown], f"C{colour}-", lw=1, label=f"forecast at {origin:.0f} h")
        ax.set_title(f"batch {number}: DO forecast")
        ax.set_ylabel("DO (% sat)")
        ax.set_ylim(0, 110)
        ax.legend(loc="lower left", fontsize=8)
    axes[-1, 0].set_xlabel("time since inoculation (h)")
    fig.tight_layout()
    fig.savefig(folder / "forecast_do.png", dpi=90)
    plt.close(fig)
    return "forecast_do.png"


def write_report(result: ValidationResult, folder: Path | str, *, plots: bool = True) -> Path:
    """Write report.md, report.json, predictions.csv and the PNGs; returns report.md's path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    images = render_plots(result, out) if plots else []
    (out / "report.json").write_text(
        json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    columns = [
        BATCH_COLUMN,
        "window_end",
        "time_since_inoculation_h",
        "phase",
        LABEL_COLUMN,
        "od600_pred",
        "od600_lower",
        "od600_upper",
        "od600_baseline",
    ]
    columns += [c for c in ADAPTED_COLUMNS if c in result.table.columns]
    table = result.table[columns].copy()
    # Unix seconds need all their digits: '%.5g' below would leave a handful of distinct times.
    table["window_end"] = table["window_end"].map(lambda t: f"{t:.3f}")
    table.to_csv(out / "predictions.csv", index=False, float_format="%.5g")
    path = out / "report.md"
    path.write_text(render_markdown(result, images), encoding="utf-8")
    return path
