"""Metrics and text reports, as plain functions of arrays: binary classification, calibration, stage one's
attributes, bootstrap uncertainty, and the text tables every report prints.

Conventions: class 1 is ``Male`` (the positive class), class 0 is ``Female``. Label arrays may be ints,
booleans or CelebA's {-1, 1}; probabilities are P(class 1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# Upper bound on the bootstrap index matrix held at once (elements); keeps memory ~64 MB.
_BOOT_CHUNK_ELEMENTS = 8_000_000


def to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor without importing torch
        x = x.detach().cpu()
        if str(x.dtype) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _as_binary(y: Any) -> np.ndarray:
    """0/1 int array from ints, bools or {-1, 1} labels (any shape)."""
    arr = to_numpy(y)
    if arr.size == 0:
        return arr.astype(np.int64)
    arr = arr.astype(float)
    if (arr == -1).any():
        if not np.isin(arr, (-1.0, 1.0)).all():
            raise ValueError("labels mix -1 with values other than 1")
        return (arr > 0).astype(np.int64)
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError("binary labels must be 0/1, booleans or -1/1")
    return arr.astype(np.int64)


def _as_prediction(pred: Any, threshold: float = 0.5) -> np.ndarray:
    """0/1 predictions from labels (0/1, bool, -1/1) or from probabilities (thresholded with ``>=``)."""
    arr = to_numpy(pred).astype(float)
    if arr.size and np.isin(arr, (0.0, 1.0, -1.0)).all():
        return _as_binary(arr)
    return (arr >= threshold).astype(np.int64)


def _prob_of_positive(prob: Any) -> np.ndarray:
    p = to_numpy(prob).astype(float)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    return p.reshape(-1)


def _roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, NaN (no warning, no error) when ``y`` has a single class or is empty."""
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def _safe_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if (p + r) else 0.0


# --------------------------------------------------------------------------------------------------
# binary classification
# --------------------------------------------------------------------------------------------------


def classification_report_text(
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str] = ("Female", "Male"),
    digits: int = 2,
) -> str:
    """sklearn's text classification report (precision / recall / f1-score / support per class,
    accuracy, macro avg, weighted avg), with ``class_names`` as row labels. Classes absent from the data
    still get a row (zero_division=0). ``y_pred`` may be probabilities (thresholded at 0.5)."""
    from sklearn.metrics import classification_report

    yt = _as_binary(y_true).reshape(-1) if len(class_names) == 2 else to_numpy(y_true).reshape(-1)
    yp = _as_prediction(y_pred).reshape(-1) if len(class_names) == 2 else to_numpy(y_pred).reshape(-1)
    return classification_report(
        yt,
        yp,
        labels=list(range(len(class_names))),
        target_names=list(class_names),
        digits=digits,
        zero_division=0,
    )


def binary_metrics(y_true: Any, prob_male: Any, threshold: float = 0.5) -> dict[str, float]:
    """Binary metrics with Male (1) as the positive class; prediction = ``prob_male >= threshold``.

    Keys: ``accuracy``, ``balanced_accuracy``, ``precision``, ``recall``, ``f1`` (Male positive),
    ``precision_male``/``recall_male``/``f1_male``, ``precision_female``/``recall_female``/``f1_female``,
    ``roc_auc`` (NaN when only one class is present), ``log_loss`` (probabilities clipped to [1e-7, 1-1e-7]),
    ``tn``/``fp``/``fn``/``tp`` counts, ``n`` and ``threshold``. Undefined ratios (0/0) are 0, as in
    sklearn with ``zero_division=0``. ``prob_male`` may also be an (n, 2) array or hard 0/1 predictions.
    """
    y = _as_binary(y_true).reshape(-1)
    p = _prob_of_positive(prob_male)
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob_male differ in length: {y.shape} vs {p.shape}")
    pred = (p >= threshold).astype(np.int64)
    tp = int(np.sum((pred == 1) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    n = int(y.size)

    prec_m, rec_m = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    prec_f, rec_f = _safe_div(tn, tn + fn), _safe_div(tn, tn + fp)
    if n:
        eps = 1e-7
        pc = np.clip(p, eps, 1 - eps)
        log_loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
    else:
        log_loss = float("nan")
    present = [r for r, support in ((rec_m, tp + fn), (rec_f, tn + fp)) if support]
    return {
        "accuracy": _safe_div(tp + tn, n) if n else float("nan"),
        "balanced_accuracy": float(np.mean(present)) if present else float("nan"),
        "precision": prec_m,
        "recall": rec_m,
        "f1": _f1(prec_m, rec_m),
        "precision_male": prec_m,
        "recall_male": rec_m,
        "f1_male": _f1(prec_m, rec_m),
        "precision_female": prec_f,
        "recall_female": rec_f,
        "f1_female": _f1(prec_f, rec_f),
        "roc_auc": _roc_auc(y, p),
        "log_loss": log_loss,
        "tn": float(tn),
        "fp": float(fp),
        "fn": float(fn),
        "tp": float(tp),
        "n": float(n),
        "threshold": float(threshold),
    }


# --------------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------------

ECE_BINS = 15  # Guo et al. (2017), the usual choice


def _top_label_ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE along the last axis of ``(..., n)`` arrays (vectorised for the bootstrap)."""
    pred = (p >= 0.5).astype(np.int64)
    confidence = np.where(pred == 1, p, 1 - p)
    correct = (pred == y).astype(float)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    n = confidence.shape[-1]
    total = np.zeros(confidence.shape[:-1])
    for b in range(n_bins):
        in_bin = bins == b
        gap = np.abs(np.sum(np.where(in_bin, confidence - correct, 0.0), axis=-1))
        total += gap  # |sum(conf - correct)| / n == (n_b / n) * |mean conf - accuracy|
    return total / max(n, 1)


def expected_calibration_error(y_true: Any, prob_male: Any, n_bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error (Guo et al. 2017): the predicted label's confidence
    ``max(p, 1 - p)`` is binned into ``n_bins`` equal-width bins over [0, 1]; ECE is the bin-size-weighted
    mean of |mean confidence - accuracy|. 0 for a perfectly calibrated model; NaN for no rows."""
    y = _as_binary(y_true).reshape(-1)
    p = _prob_of_positive(prob_male)
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob_male differ in length: {y.shape} vs {p.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if y.size == 0:
        return float("nan")
    return float(_top_label_ece(y, p, n_bins))


def expected_calibration_error_ci(
    y_true: Any, prob_male: Any, n_bins: int = ECE_BINS, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """:func:`expected_calibration_error` with a percentile bootstrap 95 % CI: ``(point, low, high)``."""
    y = _as_binary(y_true).reshape(-1)
    p = _prob_of_positive(prob_male)
    return bootstrap_ci(
        lambda yy, pp: _top_label_ece(yy, pp, n_bins), y, p, n_boot=n_boot, seed=seed, vectorized=True
    )


def brier_score(y_true: Any, prob_male: Any) -> float:
    """Mean squared difference between P(Male) and the 0/1 label (0 is perfect; 0.25 is a coin)."""
    y = _as_binary(y_true).reshape(-1)
    p = _prob_of_positive(prob_male)
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob_male differ in length: {y.shape} vs {p.shape}")
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def calibration_bins(y_true: Any, prob_male: Any, n_bins: int = ECE_BINS) -> pd.DataFrame:
    """The reliability diagram's data: P(Male) binned into ``n_bins`` equal-width bins; per bin ``lower``,
    ``upper``, ``n``, ``mean_probability`` (mean predicted P(Male)) and ``male_rate`` (the observed share
    of Male). A calibrated model has ``male_rate`` close to ``mean_probability`` in every bin."""
    y = _as_binary(y_true).reshape(-1)
    p = _prob_of_positive(prob_male)
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob_male differ in length: {y.shape} vs {p.shape}")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = bins == b
        n = int(m.sum())
        rows.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "n": n,
                "mean_probability": float(p[m].mean()) if n else float("nan"),
                "male_rate": float(y[m].mean()) if n else float("nan"),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# multi-attribute (stage one)
# --------------------------------------------------------------------------------------------------


def per_attribute_metrics(
    y_true: Any, prob: Any, names: Sequence[str], threshold: float = 0.5
) -> pd.DataFrame:
    """Per-attribute metrics for multi-label predictions.

    ``y_true`` ``(n, k)`` 0/1 (or -1/1), ``prob`` ``(n, k)`` probabilities, ``names`` length k. Returns a
    DataFrame indexed by name (index name ``attribute``) with columns ``accuracy``, ``roc_auc`` (NaN where
    an attribute has one class), ``positive_rate`` (share of true positives, i.e. prevalence),
    ``predicted_positive_rate``, ``majority_accuracy`` (accuracy of always predicting the more common
    class: the baseline each accuracy should beat), ``balanced_accuracy`` (mean of the recalls of the
    classes present), ``f1`` (positive class) and ``below_majority`` (accuracy < majority_accuracy).
    """
    y = _as_binary(y_true)
    p = to_numpy(prob).astype(float)
    if y.ndim == 1:
        y, p = y[:, None], p.reshape(-1, 1)
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob differ in shape: {y.shape} vs {p.shape}")
    names = list(names)
    if len(names) != y.shape[1]:
        raise ValueError(f"{len(names)} names for {y.shape[1]} attributes")
    pred = (p >= threshold).astype(np.int64)
    n = y.shape[0]
    with np.errstate(invalid="ignore"):
        accuracy = (pred == y).mean(axis=0) if n else np.full(y.shape[1], np.nan)
        pos_rate = y.mean(axis=0) if n else np.full(y.shape[1], np.nan)
        pred_rate = pred.mean(axis=0) if n else np.full(y.shape[1], np.nan)
    auc = np.array([_roc_auc(y[:, j], p[:, j]) for j in range(y.shape[1])])
    tp = ((pred == 1) & (y == 1)).sum(axis=0)
    fp = ((pred == 1) & (y == 0)).sum(axis=0)
    fn = ((pred == 0) & (y == 1)).sum(axis=0)
    tn = ((pred == 0) & (y == 0)).sum(axis=0)
    balanced, f1 = [], []
    for j in range(y.shape[1]):
        present = [_safe_div(tp[j], tp[j] + fn[j])] if tp[j] + fn[j] else []
        present += [_safe_div(tn[j], tn[j] + fp[j])] if tn[j] + fp[j] else []
        balanced.append(float(np.mean(present)) if present else float("nan"))
        f1.append(_f1(_safe_div(tp[j], tp[j] + fp[j]), _safe_div(tp[j], tp[j] + fn[j])))
    majority = np.maximum(pos_rate, 1 - pos_rate)
    df = pd.DataFrame(
        {
            "accuracy": accuracy,
            "balanced_accuracy": balanced,
            "f1": f1,
            "roc_auc": auc,
            "positive_rate": pos_rate,
            "predicted_positive_rate": pred_rate,
            "majority_accuracy": majority,
            # CelebA's labels are noisy: below this, always answering the common class would do better.
            "below_majority": accuracy < majority,
        },
        index=pd.Index(names, name="attribute"),
    )
    return df


def attribute_table_markdown(table: pd.DataFrame) -> str:
    """:func:`per_attribute_metrics` as a report table, worst balanced accuracy first; a ``!`` marks an
    attribute whose accuracy is below the always-majority rate."""
    rows = []
    for name, r in table.sort_values("balanced_accuracy").iterrows():
        rows.append(
            {
                "attribute": name,
                "balanced accuracy": r["balanced_accuracy"],
                "accuracy": f"{r['accuracy']:.4f}" + (" !" if r["below_majority"] else ""),
                "majority rate": r["majority_accuracy"],
                "F1": r["f1"],
                "AUC": r["roc_auc"],
                "predicted rate": r["predicted_positive_rate"],
                "true rate (prevalence)": r["positive_rate"],
            }
        )
    return markdown_table(rows)


CONCEPT_WORST = 5  # attributes named as the worst concepts


def concept_quality(y_true: Any, prob: Any, names: Sequence[str], threshold: float = 0.5) -> dict:
    """How well a model's attribute outputs describe the faces: what to report next to its Male accuracy.

    ``concept_mean_accuracy``, ``concept_mean_balanced_accuracy``, ``concept_mean_auc`` (means over the
    attributes), ``concept_majority_accuracy`` (the mean accuracy of always answering each attribute's
    common value: a bottleneck below it describes nothing) and ``concept_worst`` (the
    :data:`CONCEPT_WORST` attributes of lowest balanced accuracy, as ``name``: value pairs)."""
    table = per_attribute_metrics(y_true, prob, names, threshold=threshold)
    worst = table.sort_values("balanced_accuracy").head(CONCEPT_WORST)
    return {
        "concept_mean_accuracy": float(table["accuracy"].mean()),
        "concept_mean_balanced_accuracy": float(table["balanced_accuracy"].mean()),
        "concept_mean_auc": float(table["roc_auc"].mean(skipna=True)),
        "concept_majority_accuracy": float(table["majority_accuracy"].mean()),
        "concept_worst": {str(k): float(v) for k, v in worst["balanced_accuracy"].items()},
    }


# Metric names renamed in 0.3 (one name per thing): the old name still reads, for one release, with a
# DeprecationWarning naming the new one (MetricsDict).
RENAMED_METRICS = {
    "attr_mean_accuracy": "concept_mean_accuracy",
    "attr_mean_auc": "concept_mean_auc",
    "val_attr_mean_accuracy": "val_concept_mean_accuracy",
    "val_mean_acc": "val_concept_mean_accuracy",
    "val_mean_auc": "val_concept_mean_auc",
    "attr_mean_ece": "concept_mean_ece",
}


def _renamed(old: str, new: str, what: str = "metric") -> None:
    warnings.warn(
        f"{what} {old!r} is now {new!r}; the old name goes in the next release",
        DeprecationWarning,
        stacklevel=3,
    )


class MetricsDict(dict):
    """A run's metrics by name; a name of :data:`RENAMED_METRICS` still reads (``m[old]``, ``m.get(old)``),
    with a ``DeprecationWarning`` that names the new one."""

    def __missing__(self, key):
        new = RENAMED_METRICS.get(key)
        if new is None or new not in self:
            raise KeyError(key)
        _renamed(key, new)
        return dict.__getitem__(self, new)

    def get(self, key, default=None):
        if key in self:
            return dict.__getitem__(self, key)
        new = RENAMED_METRICS.get(key)
        if new is None or new not in self:
            return default
        _renamed(key, new)
        return dict.__getitem__(self, new)


def mean_attribute_accuracy(y_true_or_table: Any, prob: Any = None, threshold: float = 0.5) -> float:
    """Deprecated name of :func:`concept_mean_accuracy`."""
    _renamed("mean_attribute_accuracy", "concept_mean_accuracy", "function")
    return concept_mean_accuracy(y_true_or_table, prob, threshold)


def concept_mean_accuracy(y_true_or_table: Any, prob: Any = None, threshold: float = 0.5) -> float:
    """Mean of the per-attribute accuracies (every attribute weighted equally).

    Either ``concept_mean_accuracy(table)`` with a :func:`per_attribute_metrics` DataFrame, or
    ``concept_mean_accuracy(y_true, prob)`` with ``(n, k)`` arrays. The ``concept_mean_accuracy`` of
    :func:`concept_quality` and of every run's metrics is this number.
    """
    if prob is None:
        table = y_true_or_table
        if not isinstance(table, pd.DataFrame) or "accuracy" not in table:
            raise TypeError("pass a per_attribute_metrics() DataFrame, or y_true and prob arrays")
        return float(table["accuracy"].mean())
    y = _as_binary(y_true_or_table)
    p = to_numpy(prob).astype(float)
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob differ in shape: {y.shape} vs {p.shape}")
    if y.size == 0:
        return float("nan")
    return float(((p >= threshold).astype(np.int64) == y).mean(axis=0).mean())


# --------------------------------------------------------------------------------------------------
# uncertainty
# --------------------------------------------------------------------------------------------------


def _bootstrap_index_chunks(n: int, n_boot: int, seed: int):
    """Yield ``(chunk, n)`` index matrices, ``n_boot`` rows in all, from one seeded generator."""
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CHUNK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_boot:
        size = min(rows, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def bootstrap_ci(
    stat_fn: Callable[..., Any],
    *arrays: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    vectorized: bool = False,
) -> tuple[float, float, float]:
    """Percentile bootstrap CI of ``stat_fn(*arrays)``; returns ``(point, low, high)``.

    Rows are resampled with replacement, the same indices for every array (so paired data stays paired).
    Deterministic for a ``seed``. With ``vectorized=True`` ``stat_fn`` receives arrays with an extra
    leading axis ``(B, n, ...)`` and must return ``B`` values (e.g. ``lambda c: c.mean(axis=-1)``), which is
    much faster; otherwise it is called once per resample. Resamples where the statistic is NaN (e.g. AUC
    on a one-class resample) are ignored.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    arrs = [to_numpy(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("all arrays must have the same number of rows")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    point = float(stat_fn(*arrs))
    if n == 0 or n_boot <= 0:
        return point, float("nan"), float("nan")
    stats = np.empty(n_boot, dtype=float)
    k = 0
    for idx in _bootstrap_index_chunks(n, n_boot, seed):
        if vectorized:
            vals = np.asarray(stat_fn(*[a[idx] for a in arrs]), dtype=float).reshape(-1)
            if vals.size != len(idx):
                raise ValueError("a vectorized stat_fn must return one value per resample")
        else:
            vals = np.array([float(stat_fn(*[a[row] for a in arrs])) for row in idx])
        stats[k : k + len(idx)] = vals
        k += len(idx)
    finite = stats[np.isfinite(stats)]
    if finite.size == 0:
        return point, float("nan"), float("nan")
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return point, float(low), float(high)


def accuracy_ci(
    y_true: Any,
    prob_male: Any,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Male accuracy (prediction = ``prob_male >= threshold``) with its percentile bootstrap CI over the
    images: ``(point, low, high)``; all NaN for no images. ``n_boot=0`` gives the point alone (NaN bounds).
    A NaN probability is predicted Female, as ``>=`` says."""
    y = _as_binary(y_true).reshape(-1)
    pred = (_prob_of_positive(prob_male) >= threshold).astype(np.int64)
    if y.shape != pred.shape:
        raise ValueError(f"y_true and prob_male differ in length: {y.shape} vs {pred.shape}")
    if y.size == 0:
        return float("nan"), float("nan"), float("nan")
    return proportion_ci(pred == y, n_boot=n_boot, seed=seed, alpha=alpha)


def proportion_ci(
    flags: Any, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """The share of true ``flags`` with its percentile bootstrap CI over the rows: ``(point, low, high)``,
    all NaN for no rows. The one bootstrap of a rate: accuracy (flags = right), a recall, a false-male rate."""
    flags = np.asarray(flags, dtype=float).reshape(-1)
    if flags.size == 0:
        return float("nan"), float("nan"), float("nan")
    return bootstrap_ci(
        lambda c: c.mean(axis=-1), flags, n_boot=n_boot, seed=seed, alpha=alpha, vectorized=True
    )


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default): unlike a percentile bootstrap it stays a
    real interval for a small sample with no errors (24 of 24 gives [0.862, 1.0], not [1.0, 1.0])."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_accuracy_difference_ci(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """accuracy(a) - accuracy(b) on the same test images with a paired percentile bootstrap CI.

    ``pred_a``/``pred_b`` are 0/1 (or -1/1, bool) predictions, or probabilities thresholded at 0.5.
    Returns ``difference``, ``low``, ``high``, plus ``accuracy_a``, ``accuracy_b``, ``n``, ``n_boot``,
    ``alpha`` and ``share_resamples_a_better`` (fraction of resamples where a beats b).
    Identical predictions give exactly 0 for difference, low and high.
    """
    y = _as_binary(y_true).reshape(-1)
    a = _as_prediction(pred_a).reshape(-1)
    b = _as_prediction(pred_b).reshape(-1)
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"shapes differ: y {y.shape}, a {a.shape}, b {b.shape}")
    d = (a == y).astype(np.int8) - (b == y).astype(np.int8)  # per-image: +1 only a right, -1 only b right
    n = int(y.size)
    result: dict[str, float] = {
        "accuracy_a": float((a == y).mean()) if n else float("nan"),
        "accuracy_b": float((b == y).mean()) if n else float("nan"),
        "n": float(n),
        "n_boot": float(n_boot),
        "alpha": float(alpha),
    }
    if n == 0:
        result.update(
            difference=float("nan"),
            low=float("nan"),
            high=float("nan"),
            share_resamples_a_better=float("nan"),
        )
        return result
    if not d.any():
        result.update(difference=0.0, low=0.0, high=0.0, share_resamples_a_better=0.0)
        return result
    # Resample the per-image differences; the mean of d over a resample is the accuracy difference.
    diffs = np.empty(n_boot, dtype=float)
    k = 0
    for idx in _bootstrap_index_chunks(n, n_boot, seed):
        diffs[k : k + len(idx)] = d[idx].mean(axis=1, dtype=np.float64)
        k += len(idx)
    low, high = np.percentile(diffs, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    result.update(
        difference=float(d.mean(dtype=np.float64)),
        low=float(low),
        high=float(high),
        share_resamples_a_better=float((diffs > 0).mean()),
    )
    return result


# --------------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------------


def _format_cell(v: Any, floatfmt: str) -> str:
    if v is None:
        return ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return ""
        if float(v).is_integer() and abs(v) >= 1000:
            return f"{int(v)}"
        return format(float(v), floatfmt)
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".4f"
) -> str:
    """GitHub-flavoured markdown table. ``columns`` defaults to every key in first-seen order; missing
    values and NaN become empty cells, floats use ``floatfmt``, ``|`` in text is escaped."""
    rows = list(rows)
    if columns is None:
        columns = []
        for r in rows:
            for key in r:
                if key not in columns:
                    columns.append(key)
    columns = list(columns)
    if not columns:
        return ""
    header = "| " + " | ".join(str(c) for c in columns) + " |"
    sep = "|" + "|".join(" --- " for _ in columns) + "|"
    body = ["| " + " | ".join(_format_cell(r.get(c), floatfmt) for c in columns) + " |" for r in rows]
    return "\n".join([header, sep, *body]) + "\n"


def shown(value, low: float | None = None, high: float | None = None, n: int | None = None) -> str:
    """A proportion as a person should read it: in percent, to the precision its uncertainty supports, with
    its interval when given. The decimals follow the CI's half-width (or, without one, the binomial standard
    error for ``n``): 0.12749999999999995 with n=200 reads "13 %", 0.9824 [0.978, 0.9862] reads
    "98.2 % [97.8, 98.6]", never every digit."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(value):
        return "n/a"
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        spread = max((high - low) / 2, 1e-9)
    elif n:
        spread = max(math.sqrt(max(value * (1 - value), 1e-9) / n), 1e-9)
    else:
        spread = 0.001
    decimals = min(3, max(0, -math.floor(math.log10(100 * spread))))  # the CI's first significant digit
    text = f"{100 * value:.{decimals}f} %"
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{100 * low:.{decimals}f}, {100 * high:.{decimals}f}]"
    return text
