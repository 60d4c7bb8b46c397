"""Why the model says what it says: per-prediction feature attributions (SHAP values).

LightGBM computes exact TreeSHAP values itself (``predict(..., pred_contrib=True)``): one
contribution per feature plus the expected value, summing to the log-OD600 prediction. No
extra dependency. Used three ways:

* the validation report's summary (mean |contribution| per feature, and a bar plot);
* the top three contributions of each live prediction (``Prediction.attributions``);
* a flag when the model's importance sits on one feature: a model that is mostly one input
  (the OD probe, typically) moves every prediction when that input is scaled differently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm

# One feature carrying more than this share of the mean |SHAP| flags the model.
CONCENTRATION_LIMIT = 0.5
TOP_LIVE = 3


def contributions(booster: lightgbm.Booster, matrix: np.ndarray) -> np.ndarray:
    """Rows × (features + 1) SHAP values in log-OD600 space; the last column is the base."""
    values = booster.predict(matrix, pred_contrib=True, num_threads=1)
    return np.asarray(values, dtype=float)


def summary(names: list[str], values: np.ndarray, top: int = 15) -> dict[str, Any]:
    """Mean |contribution| per feature (share of the total), the top ``top``, and the flag."""
    magnitude = np.nanmean(np.abs(values[:, :-1]), axis=0) if len(values) else np.zeros(0)
    total = float(magnitude.sum()) or 1.0
    order = np.argsort(magnitude)[::-1]
    ranked = [
        {
            "feature": names[i],
            "mean_abs_contribution": float(magnitude[i]),
            "share": float(magnitude[i] / total),
        }
        for i in order[:top]
    ]
    leading_feature = str(ranked[0]["feature"]) if ranked else ""
    leading_share = float(ranked[0]["share"]) if ranked else 0.0
    concentrated = leading_share > CONCENTRATION_LIMIT
    return {
        "method": "TreeSHAP (LightGBM pred_contrib), log-OD600 space",
        "rows": len(values),
        "top": ranked,
        "leading_feature": leading_feature,
        "leading_share": leading_share,
        "concentrated": bool(concentrated),
        "warning": (
            f"{100 * leading_share:.0f} % of the model's attribution sits on "
            f"{leading_feature}: a sensor scaled differently (another probe, another "
            "reactor) moves every prediction; adapt to samples and watch for drift"
            if concentrated
            else ""
        ),
    }


def top_contributions(
    names: list[str], row_values: np.ndarray, count: int = TOP_LIVE
) -> tuple[tuple[str, float], ...]:
    """The ``count`` largest |contributions| of one prediction as (feature, log value)."""
    features = row_values[:-1]
    order = np.argsort(np.abs(features))[::-1][:count]
    return tuple((names[i], float(features[i])) for i in order)
