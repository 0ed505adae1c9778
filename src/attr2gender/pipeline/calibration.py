"""Temperature scaling (Guo et al. 2017) of P(Male): one number T, fitted on the validation split.

``p' = sigmoid(logit(p) / T)``. T > 1 softens over-confident probabilities, T < 1 sharpens them. Because
``logit(0.5) = 0`` for every T, the predicted labels at threshold 0.5 never change: only how much a
probability can be trusted does.
"""

from __future__ import annotations

import math

import numpy as np

# Probabilities are clipped before the logit so 0 and 1 (a saturated sigmoid) stay finite.
_EPS = 1e-7
TEMPERATURE_BOUNDS = (0.05, 20.0)


def _logit(prob: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(prob, temperature: float) -> np.ndarray:
    """P(Male) after temperature scaling; NaN (an image that gave nothing) stays NaN."""
    p = np.asarray(prob, dtype=np.float64)
    if temperature == 1.0:
        return p
    with np.errstate(invalid="ignore"):
        out = 1.0 / (1.0 + np.exp(-_logit(p) / temperature))
    return np.where(np.isnan(p), np.nan, out)


def fit_temperature(y_true, prob) -> float:
    """The T in :data:`TEMPERATURE_BOUNDS` that minimises the negative log-likelihood of ``y_true`` (0/1)
    under ``apply_temperature(prob, T)``; rows with a NaN probability are ignored."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    z = _logit(np.asarray(prob, dtype=np.float64).reshape(-1))
    if y.shape != z.shape:
        raise ValueError(f"y_true and prob differ in length: {y.shape} vs {z.shape}")
    keep = np.isfinite(z) & ~np.isnan(np.asarray(prob, dtype=np.float64).reshape(-1))
    y, z = y[keep], z[keep]
    if len(y) == 0 or len(np.unique(y)) < 2:
        raise ValueError("temperature scaling needs validation images of both classes")

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        # log(1 + e^-s) for y=1 and log(1 + e^s) for y=0, computed stably
        return float(np.mean(np.logaddexp(0.0, -s) * y + np.logaddexp(0.0, s) * (1 - y)))

    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(result.x))
