"""Drift watch: is this batch inside what the model learnt?

Two signals, either trips the watch:

* **features** — the population stability index (PSI) of each watched feature's live values
  against its training distribution (decile bins stored in the model card,
  ``feature_reference``): PSI = Σ (live − ref)·ln(live/ref) over the bins. Above 0.25 is the
  usual "the population has shifted"; the watch looks at the features the model rests on
  (largest gain), once a batch has 30 min of windows.
* **residuals** — an offline sample the model misses by more than three times its own band
  (the model's 90 % band, in log space, is about 1.645 SD wide).

When tripped the predictor widens the band, falls back to the mechanistic estimate (the
carbon balance from the inoculation sample) until the batch's samples have calibrated the
model, and says so in the prediction (``drift``) so the dashboard shows it and an operator
is asked for a sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PSI_LIMIT = 0.25  # the floor of a feature's limit
REFERENCE_BINS = 10
TIME_BIN_H = 2.0  # PSI compares like with like: the same 2 h of the batch
TIME_BINS = 16  # 0–32 h
WATCHED_FEATURES = 6  # the features with the largest gain
MIN_WINDOWS = 200  # of 240 in a time bin before it is compared
LIMIT_MARGIN = 1.5  # × the largest PSI a training batch shows against the others
RESIDUAL_LIMIT = 3.0  # × the model band's half-width (log)
PSI_FLOOR = 1e-3  # empty bins count as this fraction (PSI is infinite otherwise)
# The band while tripped and not yet calibrated by samples: a 15 % log SD, the size of the
# probe-gain error the adaptation allows for (twin/adaptation.py).
DRIFT_LOG_SD = 0.15


def _time_bin(hours: float) -> int:
    return int(min(max(hours, 0.0) // TIME_BIN_H, TIME_BINS - 1))


def _fractions(codes: np.ndarray, time_bins: np.ndarray, n_codes: int) -> np.ndarray:
    counts = np.zeros((TIME_BINS, n_codes))
    np.add.at(counts, (time_bins, codes), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    fractions: np.ndarray = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return fractions


def feature_reference(
    matrix: np.ndarray,
    names: list[str],
    hours: np.ndarray | None = None,
    batches: np.ndarray | None = None,
    bins: int = REFERENCE_BINS,
) -> dict[str, dict[str, Any]]:
    """Per feature: decile edges over all training windows, the fractions in each 2 h bin of
    the batch, and the PSI limit: ``LIMIT_MARGIN`` × the largest PSI of one training batch's
    2 h bin against the other batches' (a single batch is never spread like the pooled
    campaign, so the plain 0.25 rule would trip on the training batches themselves)."""
    if hours is None or batches is None:
        return {}
    time_bins = np.array([_time_bin(h) for h in hours])
    reference: dict[str, dict[str, Any]] = {}
    for column, name in enumerate(names):
        values = matrix[:, column]
        usable = np.isfinite(values)
        if usable.sum() < bins * 10:
            continue
        edges = np.unique(np.quantile(values[usable], np.linspace(0, 1, bins + 1)[1:-1]))
        codes = np.searchsorted(edges, values, side="right")
        n_codes = len(edges) + 1
        fractions = _fractions(codes[usable], time_bins[usable], n_codes)
        worst = 0.0
        for batch in np.unique(batches):
            own = usable & (batches == batch)
            others = usable & (batches != batch)
            rest = _fractions(codes[others], time_bins[others], n_codes)
            mine = np.zeros((TIME_BINS, n_codes))
            np.add.at(mine, (time_bins[own], codes[own]), 1.0)
            for slot in range(TIME_BINS):
                if mine[slot].sum() >= MIN_WINDOWS and rest[slot].sum() > 0:
                    worst = max(worst, _psi(rest[slot], mine[slot]))
        reference[name] = {
            "edges": [float(e) for e in edges],
            "fractions": [[float(f) for f in row] for row in fractions],
            "limit": max(PSI_LIMIT, LIMIT_MARGIN * worst),
        }
    return reference


def _psi(reference: np.ndarray, counts: np.ndarray) -> float:
    total = counts.sum()
    if total <= 0 or reference.sum() <= 0:
        return math.nan
    live = np.maximum(counts / total, PSI_FLOOR)
    ref = np.maximum(reference, PSI_FLOOR)
    return float(np.sum((live - ref) * np.log(live / ref)))


def watched_features(card_reference: dict[str, Any], gains: dict[str, float]) -> list[str]:
    ranked = sorted(gains, key=lambda name: gains[name], reverse=True)
    return [name for name in ranked if name in card_reference][:WATCHED_FEATURES]


@dataclass
class DriftState:
    """What the watch says about one batch now."""

    tripped: bool = False
    reason: str = ""
    worst_feature: str = ""
    worst_psi: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "tripped": self.tripped,
            "reason": self.reason,
            "worst_feature": self.worst_feature,
            "worst_psi": self.worst_psi,
        }


@dataclass
class BatchDriftWatch:
    """Live counts of the watched features of one batch per 2 h bin, and its residuals."""

    reference: dict[str, dict[str, Any]]
    features: list[str]
    positions: list[int]
    band_half_log: float
    hours_position: int
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    windows: int = 0
    residual_reason: str = ""
    feature_reason: str = ""
    worst: tuple[str, float] = ("", math.nan)
    _slot: int = 0

    def __post_init__(self) -> None:
        self.counts = {
            name: np.zeros((TIME_BINS, len(self.reference[name]["edges"]) + 1))
            for name in self.features
        }

    def add_window(self, vector: np.ndarray) -> None:
        self.windows += 1
        hours = vector[self.hours_position]
        slot = _time_bin(float(hours)) if math.isfinite(hours) else self._slot
        if slot != self._slot:
            self._judge(self._slot)  # a 2 h bin is complete: compare it
            self._slot = slot
        for name, position in zip(self.features, self.positions, strict=True):
            value = vector[position]
            if math.isfinite(value):
                edges = self.reference[name]["edges"]
                self.counts[name][slot, int(np.searchsorted(edges, value, side="right"))] += 1

    def _judge(self, slot: int) -> None:
        for name in self.features:
            counts = self.counts[name][slot]
            if counts.sum() < MIN_WINDOWS:
                continue
            value = _psi(np.asarray(self.reference[name]["fractions"][slot]), counts)
            if not math.isfinite(value):
                continue
            limit = float(self.reference[name]["limit"])
            if not math.isfinite(self.worst[1]) or value / limit > self.worst[1] / max(
                float(self.reference.get(self.worst[0], {}).get("limit", 1.0)), 1e-9
            ):
                self.worst = (name, value)
            if value > limit and not self.feature_reason:
                self.feature_reason = (
                    f"{name} outside its training distribution at "
                    f"{slot * TIME_BIN_H:.0f}–{(slot + 1) * TIME_BIN_H:.0f} h "
                    f"(PSI {value:.2f} > {limit:.2f})"
                )

    def add_residual(self, log_error: float) -> None:
        limit = RESIDUAL_LIMIT * max(self.band_half_log, 1e-3)
        if math.isfinite(log_error) and abs(log_error) > limit and not self.residual_reason:
            self.residual_reason = (
                f"a sample is {100 * (math.exp(abs(log_error)) - 1):.0f} % off the model "
                f"(limit {100 * (math.exp(limit) - 1):.0f} %)"
            )

    def state(self) -> DriftState:
        reasons = [r for r in (self.feature_reason, self.residual_reason) if r]
        return DriftState(bool(reasons), "; ".join(reasons), self.worst[0], self.worst[1])


class DriftWatch:
    """One :class:`BatchDriftWatch` per reactor for a model (None without a reference)."""

    def __init__(self, reference: dict[str, Any], gains: dict[str, float], names: list[str],
                 band_half_log: float) -> None:  # fmt: skip
        self.reference = reference
        self.features = watched_features(reference, gains)
        self.positions = [names.index(name) for name in self.features]
        self.hours_position = names.index("time_since_inoculation_h")
        self.band_half_log = band_half_log
        self._batches: dict[str, BatchDriftWatch] = {}

    def batch(self, reactor: str) -> BatchDriftWatch:
        watch = self._batches.get(reactor)
        if watch is None:
            watch = BatchDriftWatch(
                self.reference,
                self.features,
                self.positions,
                self.band_half_log,
                self.hours_position,
            )
            self._batches[reactor] = watch
        return watch

    def reset(self, reactor: str) -> None:
        self._batches.pop(reactor, None)


def model_drift_watch(card: Any, booster: Any) -> DriftWatch | None:
    """The watch of a model whose card carries ``feature_reference``; None otherwise."""
    reference = getattr(card, "feature_reference", None) or {}
    if not reference:
        return None
    names = list(booster.feature_name())
    gains = dict(zip(names, booster.feature_importance(importance_type="gain"), strict=True))
    interval = card.interval or {}
    half = 0.5 * (float(interval.get("upper_log", 0.05)) - float(interval.get("lower_log", -0.05)))
    return DriftWatch(reference, {k: float(v) for k, v in gains.items()}, names, half)


def reference_of_table(table: Any) -> dict[str, dict[str, Any]]:
    """``feature_reference`` of a training feature table (features, hours, batch column)."""
    from bptwin.twin.features import FEATURE_NAMES
    from bptwin.twin.labels import BATCH_COLUMN

    return feature_reference(
        table[list(FEATURE_NAMES)].to_numpy(dtype=float),
        list(FEATURE_NAMES),
        table["time_since_inoculation_h"].to_numpy(float),
        table[BATCH_COLUMN].to_numpy(),
    )


def _main(argv: list[str] | None = None) -> int:
    """Add ``feature_reference`` to a model card from the training batches it names.

    For a card trained before the drift watch existed (training now writes it itself):
    ``python -m bptwin.twin.drift MODEL_FOLDER DATASET``.
    """
    import argparse
    import json
    from pathlib import Path

    from bptwin.twin.labels import dataset_table
    from bptwin.twin.model import usable_rows
    from bptwin.twin.registry import CARD_FILE, read_card

    parser = argparse.ArgumentParser(prog="python -m bptwin.twin.drift")
    parser.add_argument("model", type=Path)
    parser.add_argument("dataset", type=Path)
    args = parser.parse_args(argv)
    card = read_card(args.model / CARD_FILE)
    table = usable_rows(dataset_table(args.dataset, card.training_batches, card.label, jobs=1))
    data = json.loads((args.model / CARD_FILE).read_text(encoding="utf-8"))
    data["feature_reference"] = reference_of_table(table)
    (args.model / CARD_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"{args.model / CARD_FILE}: feature_reference of {len(table)} training windows")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
