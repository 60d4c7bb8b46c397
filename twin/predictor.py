"""Serving: one :class:`~bptwin.twin.features.ProcessState` (a 30 s window) in, one OD600 nowcast.

The predictor checks at construction that the model was trained on exactly the pipeline's
``FEATURE_NAMES`` in the same order, then predicts one row with one thread (the worker runs
beside acquisition; LightGBM's thread pool would only add latency for a single row).

Note for the wiring: the feature pipeline used in serving must be configured as in training.
In particular do **not** feed the nowcast back with ``FeaturePipeline.set_biomass_estimate``:
training computed qO₂/qCO₂ from the carbon-balance biomass, so feeding the model's own
estimate would change those features (training/serving skew).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bptwin.twin.adaptation import LiveAdaptation
from bptwin.twin.attributions import top_contributions
from bptwin.twin.conformal import card_base_log_sd
from bptwin.twin.drift import DRIFT_LOG_SD, model_drift_watch
from bptwin.twin.features import FEATURE_NAMES, ProcessState, feature_vector
from bptwin.twin.forecast import Forecast, Forecaster, ForecastParameters
from bptwin.twin.forecast_online import LiveBudgets
from bptwin.twin.registry import ModelArtifact, ModelError, load_model
from bptwin.twin.single_row import SingleRowPredictor

log = logging.getLogger(__name__)


ADAPTED_BAND_Z = 1.6449  # two-sided 90 % of the adapted estimate's log SD
# Cadences of the costly parts of a window's prediction (30 s windows): the top three SHAP
# contributions every 5 min, the forecast of the rest of the batch every 2 min.
EXPLAIN_EVERY_WINDOWS = 10
FORECAST_EVERY_WINDOWS = 4


class PredictionError(Exception):
    """One window could not be predicted; the worker logs and shows it, and goes on."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """The OD600 nowcast of one window (timestamp = window end, Unix s UTC), plus the forecast
    of the rest of the batch when the model card carries forecast parameters."""

    timestamp: float
    od600: float
    lower: float
    upper: float
    model_version: str
    reactor: str = ""
    window_index: int = -1
    forecast: Forecast | None = None
    fallback: bool = False  # made by the fallback model (a sensor it needs is missing)
    # The model's own nowcast before adaptation to the batch's samples (``od600`` is adapted
    # once ``samples_used`` > 0; NaN when adaptation is off).
    model_od600: float = math.nan
    samples_used: int = 0
    # The three largest SHAP contributions to the model's log nowcast: (feature, ln OD600).
    attributions: tuple[tuple[str, float], ...] = ()
    # Drift watch: why this batch looks outside what the model learnt ("" = inside). While
    # tripped and not yet calibrated by two samples the nowcast is the carbon balance and
    # the band is wide; the operator is asked for a sample.
    drift: str = ""

    @property
    def depletion_forecast(self) -> float:
        """Forecast glycerol-depletion time (Unix s), NaN when there is no forecast."""
        return self.forecast.depletion_time if self.forecast is not None else math.nan

    def to_dict(self) -> dict[str, object]:
        """Plain values for the bus and the store (forecast as its summary and end point)."""
        result: dict[str, object] = {
            "timestamp": self.timestamp,
            "od600": self.od600,
            "lower": self.lower,
            "upper": self.upper,
            "model_version": self.model_version,
            "reactor": self.reactor,
            "window_index": self.window_index,
            "fallback": self.fallback,
            "model_od600": self.model_od600,
            "samples_used": self.samples_used,
            "drift": self.drift,
            "top_contributions": [
                {"feature": name, "ln_od600": value} for name, value in self.attributions
            ],
        }
        if self.forecast is not None:
            f = self.forecast
            forecast: dict[str, object] = {
                "depletion_time": f.depletion_time,
                "depletion_earliest": f.depletion_earliest,
                "depletion_latest": f.depletion_latest,
                "od600_end": float(f.od600[-1]),
                "od600_end_lower": float(f.lower[-1]),
                "od600_end_upper": float(f.upper[-1]),
                "growth_rate_per_h": f.growth_rate,
                "provisional": f.provisional,
                "method": f.method,
            }
            if f.do is not None and f.do_lower is not None and f.do_upper is not None:
                forecast.update(do_forecast_summary(f))
            result["forecast"] = forecast
        return result


DO_SUMMARY_HORIZONS_H = (1.0, 2.0, 4.0)


def do_forecast_summary(forecast: Forecast) -> dict[str, float]:
    """DO forecast in a few numbers: 1, 2 and 4 h ahead with band, minimum to depletion.

    Keys ``do_1h``/``do_1h_lower``/``do_1h_upper`` (and 2 h, 4 h), ``do_min`` and
    ``do_min_time`` (lowest expected DO before the forecast depletion, Unix s), ``do_end``.
    """
    assert forecast.do is not None and forecast.do_lower is not None
    assert forecast.do_upper is not None
    times = forecast.times
    summary: dict[str, float] = {}
    for hours in DO_SUMMARY_HORIZONS_H:
        at = forecast.made_at + hours * 3600.0
        key = f"do_{hours:g}h"
        summary[key] = float(np.interp(at, times, forecast.do))
        summary[f"{key}_lower"] = float(np.interp(at, times, forecast.do_lower))
        summary[f"{key}_upper"] = float(np.interp(at, times, forecast.do_upper))
    before = times <= max(forecast.depletion_time, times[0])
    lowest = int(np.argmin(np.where(before, forecast.do, np.inf)))
    summary["do_min"] = float(forecast.do[lowest])
    summary["do_min_time"] = float(times[lowest])
    summary["do_end"] = float(forecast.do[-1])
    return summary


class Predictor:
    """``Predictor(model).predict(state) -> Prediction``; ``model`` is an artifact or a path."""

    def __init__(
        self,
        model: ModelArtifact | Path | str,
        *,
        adapt: bool = True,
        explain: bool = True,
        explain_every: int = EXPLAIN_EVERY_WINDOWS,
        forecast_every: int = FORECAST_EVERY_WINDOWS,
    ) -> None:
        """``adapt``: correct the nowcast with the batch's own samples (``note_samples``);
        ``explain``: attach the top three SHAP contributions to every prediction, computed
        every ``explain_every`` windows of a reactor (and carried in between);
        ``forecast_every``: forecast the rest of the batch every so many windows (carried in
        between), at once when the nowcast's basis changes (a sample, drift, depletion)."""
        artifact = model if isinstance(model, ModelArtifact) else load_model(model)
        artifact.check_features(FEATURE_NAMES)
        self.warning = artifact.pipeline_warning()
        if self.warning:
            log.warning("%s", self.warning)
        self.artifact = artifact
        self.version = artifact.version
        interval = artifact.card.interval
        self._lower = float(interval.get("lower_log", 0.0))
        self._upper = float(interval.get("upper_log", 0.0))
        self._booster = artifact.booster
        self._row = np.empty((1, len(FEATURE_NAMES)))
        # One row per window: LightGBM's single-row path, set up once per booster and output.
        # Each reads the window's row from ``self._row`` (its address taken once).
        columns, row = len(FEATURE_NAMES), self._row[0]
        self._nowcast = SingleRowPredictor(artifact.booster, columns, row=row)
        self._explainer = SingleRowPredictor(artifact.booster, columns, contributions=True, row=row)
        fallback_booster = artifact.fallback
        self._fallback_nowcast = (
            SingleRowPredictor(fallback_booster, columns, row=row)
            if fallback_booster is not None
            else None
        )
        self._fallback_explainer = (
            SingleRowPredictor(fallback_booster, columns, contributions=True, row=row)
            if fallback_booster is not None
            else None
        )
        fallback_interval = (artifact.card.fallback or {}).get("interval", {})
        self._fallback_lower = float(fallback_interval.get("lower_log", 0.0))
        self._fallback_upper = float(fallback_interval.get("upper_log", 0.0))
        parameters = ForecastParameters.from_card_metrics(artifact.card.metrics)
        self.forecaster = Forecaster(parameters) if parameters is not None else None
        # The batch's own carbon budget for the forecast, from its samples (twin/forecast_online).
        self.budgets = (
            LiveBudgets(parameters.cum_co2_at_depletion, parameters.od_per_mmol_co2)
            if parameters is not None and adapt
            else None
        )
        k = artifact.card.metrics.get("baseline", {}).get("k_od_per_mmol_co2")
        k_prior = float(k) if isinstance(k, int | float) else math.nan
        self.adaptation = (
            LiveAdaptation(k_prior, base_log_sd=card_base_log_sd(artifact.card)) if adapt else None
        )
        self.explain = explain
        self.explain_every = max(1, explain_every)
        self.forecast_every = max(1, forecast_every)
        # Per reactor: the last explained window (index, fallback, top contributions) and the
        # last forecast (index, what it rested on, the forecast).
        self._explained: dict[str, tuple[int, bool, tuple[tuple[str, float], ...]]] = {}
        self._forecasts: dict[str, tuple[int, tuple[object, ...], Forecast | None]] = {}
        self._names = list(FEATURE_NAMES)
        self.drift_watch = model_drift_watch(artifact.card, artifact.booster) if adapt else None

    def note_samples(self, reactor: str, times: list[float], od600: list[float]) -> None:
        """The reactor's offline OD600 samples so far (any thread; idempotent)."""
        if self.adaptation is not None:
            self.adaptation.set_samples(reactor, list(times), list(od600))
        if self.budgets is not None:
            nan = math.nan
            rows = [(float(t), nan, nan, float(v)) for t, v in zip(times, od600, strict=True)]
            self.budgets.set_samples(reactor, rows)

    def note_sample(self, reactor: str, timestamp: float, od600: float) -> None:
        """One more offline OD600 sample of ``reactor`` (any thread)."""
        if self.adaptation is not None:
            self.adaptation.add_sample(reactor, timestamp, od600)
        if self.budgets is not None:
            self.budgets.add_sample(reactor, (timestamp, math.nan, math.nan, od600))

    def _adapted(
        self, prediction: Prediction, state: ProcessState, vector: np.ndarray
    ) -> Prediction:
        if self.adaptation is None or prediction.fallback:
            return prediction
        adaptation = self.adaptation
        if self.drift_watch is not None and adaptation.new_batch(state.reactor, state.window_index):
            self.drift_watch.reset(state.reactor)
        estimate = adaptation.adapt(
            state.reactor,
            state.window_index,
            state.end,
            math.log(prediction.od600),
            float(state.cum_co2_mmol_per_l),
        )
        drift = ""
        if self.drift_watch is not None:
            watch = self.drift_watch.batch(state.reactor)
            watch.add_window(vector)
            for error in adaptation.new_errors:
                watch.add_residual(error)
            drift = watch.state().reason
        # The online bands (twin/conformal.py): about the model until a sample adapts it.
        bands = adaptation.bands(
            state.reactor, bool(drift), math.log(prediction.od600), math.log(estimate.od600)
        )
        if drift and estimate.samples_seen < 2:
            # Outside what the model learnt and not yet calibrated: the mechanistic estimate
            # (once the inoculation sample anchors it), with the band of an uncalibrated probe.
            od600 = (
                estimate.balance_od600
                if math.isfinite(estimate.balance_od600)
                else (prediction.od600)
            )
            half = ADAPTED_BAND_Z * DRIFT_LOG_SD
            lower, upper = od600 * math.exp(-half), od600 * math.exp(half)
            if bands and estimate.samples_seen == 0:  # no sample yet: still the model's mean
                lower, upper = bands[0]
            return replace(
                prediction,
                od600=od600,
                lower=lower,
                upper=upper,
                model_od600=prediction.od600,
                samples_used=estimate.samples_seen,
                drift=drift,
            )
        if estimate.samples_seen == 0:
            lower, upper = bands[0] if bands else (prediction.lower, prediction.upper)
            return replace(
                prediction, lower=lower, upper=upper, model_od600=prediction.od600, drift=drift
            )
        half = ADAPTED_BAND_Z * estimate.log_sd
        lower, upper = (
            bands[1]
            if bands
            else (estimate.od600 * math.exp(-half), estimate.od600 * math.exp(half))
        )
        return replace(
            prediction,
            od600=estimate.od600,
            lower=lower,
            upper=upper,
            model_od600=prediction.od600,
            samples_used=estimate.samples_seen,
            drift=drift,
        )

    def predict_vector(
        self, vector: np.ndarray, timestamp: float, reactor: str = "", window_index: int = -1
    ) -> Prediction:
        if vector.shape != (len(FEATURE_NAMES),):
            raise PredictionError(
                f"feature vector has shape {vector.shape}, expected ({len(FEATURE_NAMES)},)"
            )
        self._row[0] = vector
        fallback = bool(self.artifact.needs_fallback(self._row)[0])
        # needs_fallback is never True without a fallback booster; the None test tells mypy so.
        use_fallback = fallback and self._fallback_nowcast is not None
        nowcast = self._fallback_nowcast if use_fallback else self._nowcast
        explainer = self._fallback_explainer if use_fallback else self._explainer
        assert nowcast is not None and explainer is not None
        lower = self._fallback_lower if fallback else self._lower
        upper = self._fallback_upper if fallback else self._upper
        try:
            log_od = float(nowcast()[0])
            explained: tuple[tuple[str, float], ...] = ()
            if self.explain:
                explained = self._explain(explainer, reactor, window_index, fallback)
        except Exception as exc:  # LightGBM raises its own and numpy errors
            raise PredictionError(f"model {self.version} failed on window: {exc}") from exc
        if not math.isfinite(log_od):
            raise PredictionError(f"model {self.version} returned a non-finite value")
        return Prediction(
            timestamp=float(timestamp),
            od600=math.exp(log_od),
            lower=math.exp(log_od + lower),
            upper=math.exp(log_od + upper),
            model_version=self.version,
            reactor=reactor,
            window_index=window_index,
            fallback=fallback,
            attributions=explained,
        )

    def _explain(
        self, explainer: SingleRowPredictor, reactor: str, index: int, fallback: bool
    ) -> tuple[tuple[str, float], ...]:
        """The top contributions of the row in ``self._row``: TreeSHAP costs several times the
        nowcast, and on one window's step the ranking barely moves, so it is recomputed every
        ``explain_every`` windows (at once for a new batch or a switch to or from the
        fallback model) and carried in between."""
        last = self._explained.get(reactor)
        if last is not None and last[1] == fallback and 0 <= index - last[0] < self.explain_every:
            return last[2]
        explained = top_contributions(self._names, explainer())
        self._explained[reactor] = (index, fallback, explained)
        return explained

    def predict(self, state: ProcessState, *, forecast: bool = True) -> Prediction:
        """Nowcast of the window, with the forecast of the rest of the batch when possible."""
        vector = feature_vector(state)
        prediction = self._adapted(
            self.predict_vector(vector, state.end, state.reactor, state.window_index),
            state,
            vector,
        )
        if self.budgets is not None and not prediction.fallback:
            self.budgets.observe(
                state.reactor,
                state.window_index,
                state.end,
                float(state.cer_smooth),
                float(state.cum_co2_mmol_per_l),
                prediction.od600,
            )
        if not forecast or self.forecaster is None:
            return prediction
        made = self._forecast(state, prediction)
        if made is None:
            return prediction
        return replace(prediction, forecast=made)

    def _forecast(self, state: ProcessState, prediction: Prediction) -> Forecast | None:
        """The forecast of the rest of the batch: made every ``forecast_every`` windows, and
        at once when what it starts from changes (a new batch, a sample taken up, drift,
        fallback, depletion); carried in between (a few minutes on a 5 min grid)."""
        assert self.forecaster is not None
        basis = (prediction.samples_used, prediction.drift, prediction.fallback, state.depleted)
        index = state.window_index
        last = self._forecasts.get(state.reactor)
        if last is not None and last[1] == basis and 0 <= index - last[0] < self.forecast_every:
            return last[2]
        # The batch's own carbon budget once its samples vouch for it (twin/forecast_online).
        own = self.budgets.estimate(state.reactor, state.end) if self.budgets else None
        try:
            made = self.forecaster.forecast(state, prediction.od600, estimate=own)
        except (ArithmeticError, ValueError) as exc:
            log.debug("no forecast for window %s: %s", index, exc)
            made = None
        self._forecasts[state.reactor] = (index, basis, made)
        return made


PredictionSink = Callable[[Prediction, ProcessState], None]
ErrorSink = Callable[[ProcessState, Exception], None]


class InferenceWorker:
    """A thread that predicts each submitted window and hands the result to the sinks.

    ``submit`` never blocks the caller (the acquisition side): when the queue is full the
    oldest pending window is dropped and counted. A failing prediction or sink is logged,
    counted and passed to ``on_error``; the worker goes on.
    """

    def __init__(
        self,
        predictor: Predictor,
        sinks: list[PredictionSink],
        *,
        on_error: ErrorSink | None = None,
        on_latency: Callable[[float], None] | None = None,
        max_pending: int = 64,
    ) -> None:
        """``on_latency(seconds)``: wall time of each successful prediction (for metrics)."""
        self.predictor = predictor
        self.sinks = list(sinks)
        self.on_error = on_error
        self.on_latency = on_latency
        self._queue: queue.Queue[ProcessState | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.predicted = 0
        self.failed = 0
        self.dropped = 0
        self.last: Prediction | None = None
        self.last_error: str | None = None

    def start(self) -> InferenceWorker:
        self._thread.start()
        return self

    def submit(self, state: ProcessState) -> None:
        while True:
            try:
                self._queue.put_nowait(state)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            state = self._queue.get()
            if state is None:
                return
            started = time.perf_counter()
            try:
                prediction = self.predictor.predict(state)
            except Exception as exc:  # never fatal: log, count, report
                self._fail(state, exc)
                continue
            if self.on_latency is not None:
                self.on_latency(time.perf_counter() - started)
            self.last = prediction
            self.predicted += 1
            for sink in self.sinks:
                try:
                    sink(prediction, state)
                except Exception as exc:
                    self._fail(state, exc)

    def _fail(self, state: ProcessState, exc: Exception) -> None:
        self.failed += 1
        self.last_error = f"window {state.window_index}: {exc}"
        log.warning("prediction failed for window %s: %s", state.window_index, exc)
        if self.on_error is not None:
            try:
                self.on_error(state, exc)
            except Exception:
                log.exception("prediction error handler failed")


def load_predictor(reference: Path | str | None = None, data_dir: Path | None = None) -> Predictor:
    """The predictor for the configured model; raises :class:`ModelError` with the reason."""
    try:
        return Predictor(load_model(reference, data_dir=data_dir))
    except ModelError:
        raise
    except OSError as exc:
        raise ModelError(f"cannot load model {reference}: {exc}") from exc
