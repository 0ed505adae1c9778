"""Temperature scaling (Guo et al. 2017) of P(Male): one number T, fitted on the validation split.

``p' = sigmoid(logit(p) / T)``. T > 1 softens over-confident probabilities, T < 1 sharpens them. Because
``logit(0.5) = 0`` for every T, the predicted labels at threshold 0.5 never change: only how much a
probability can be trusted does.

Applying T is inference and lives here; fitting it on validation images is training
(:func:`attr2gender.training.calibration.fit_temperature`).
"""

from __future__ import annotations

import numpy as np

# Probabilities are clipped before the logit so 0 and 1 (a saturated sigmoid) stay finite.
_EPS = 1e-7
TEMPERATURE_BOUNDS = (0.05, 20.0)


def logit(prob: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(prob, temperature: float) -> np.ndarray:
    """P(Male) after temperature scaling; NaN (an image that gave nothing) stays NaN."""
    p = np.asarray(prob, dtype=np.float64)
    if temperature == 1.0:
        return p
    with np.errstate(invalid="ignore"):
        out = 1.0 / (1.0 + np.exp(-logit(p) / temperature))
    return np.where(np.isnan(p), np.nan, out)
