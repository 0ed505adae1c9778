"""Fitting the temperature of P(Male) on the validation split (Guo et al. 2017); applying it is inference
(:mod:`attr2gender.pipeline.calibration`)."""

from __future__ import annotations

import math

import numpy as np

from ..pipeline.calibration import TEMPERATURE_BOUNDS, logit


def fit_temperature(y_true, prob) -> float:
    """The T in :data:`TEMPERATURE_BOUNDS` that minimises the negative log-likelihood of ``y_true`` (0/1)
    under ``apply_temperature(prob, T)``; rows with a NaN probability are ignored."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    z = logit(np.asarray(prob, dtype=np.float64).reshape(-1))
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
