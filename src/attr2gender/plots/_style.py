"""What every figure shares: the colours, a headless figure (Agg canvas, no ``pyplot``), saving as PNG,
the "nothing to draw" figure, label and image normalisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..metrics import to_numpy

DPI = 120
CORRECT_COLOR = "#1b7f3a"  # green
WRONG_COLOR = "#c62828"  # red
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
MALE_COLOR = "#2b6cb0"
FEMALE_COLOR = "#d53f8c"
NEUTRAL_COLOR = "#4a5568"
ROUTE_COLORS = ("#2b6cb0", "#dd6b20", "#2f855a", "#805ad5")


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path | None) -> Figure:
    """Write ``fig`` as a PNG to ``path`` (parents created) when ``path`` is not None; return ``fig``."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white", format="png")
    return fig


def _message_figure(title: str, message: str, path: str | Path | None, size=(6.0, 2.5)) -> Figure:
    fig = _new_figure(*size)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.text(
        0.5, 0.5, message, ha="center", va="center", fontsize=14, color=NEUTRAL_COLOR, transform=ax.transAxes
    )
    fig.suptitle(title, fontsize=13, fontweight="bold")
    return save_figure(fig, path)


def _as_label_array(y: Any, class_names: Sequence[str] | None = None) -> np.ndarray:
    """Integer class indices from ints, bools, {-1, 1} labels or class-name strings."""
    arr = to_numpy(y).reshape(-1)
    if arr.size == 0:
        return arr.astype(int)
    if arr.dtype.kind in "USO":
        if class_names is None:
            raise ValueError("string labels need class_names")
        lookup = {name: i for i, name in enumerate(class_names)}
        return np.array([lookup[str(v)] for v in arr], dtype=int)
    arr = arr.astype(float)
    if (
        class_names is not None
        and len(class_names) == 2
        and np.all(np.isin(arr, (-1.0, 1.0)))
        and (arr == -1).any()
    ):
        arr = (arr > 0).astype(float)  # CelebA's {-1, 1} encoding
    return np.rint(arr).astype(int)


def _pretty_metric(name: str) -> str:
    key = name.lower()
    table = {
        "loss": "Loss",
        "acc": "Accuracy",
        "accuracy": "Accuracy",
        "auc": "ROC AUC",
        "roc_auc": "ROC AUC",
        "auroc": "ROC AUC",
        "f1": "F1",
        "lr": "Learning rate",
        "learning_rate": "Learning rate",
        "balanced_accuracy": "Balanced accuracy",
        "concept_mean_accuracy": "Mean attribute accuracy",
        "precision": "Precision",
        "recall": "Recall",
        "log_loss": "Log loss",
    }
    if key in table:
        return table[key]
    return name.replace("_", " ").strip().capitalize()


# Metric keys in words, for panel titles (plot_comparison). Keys not listed get _metric_title's fallback.
_METRIC_TITLES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC AUC",
    "auc": "ROC AUC",
    "f1": "F1 score",
    "f1_male": "F1 score (Male)",
    "f1_female": "F1 score (Female)",
    "precision": "Precision",
    "recall": "Recall",
    "specificity": "Specificity",
    "log_loss": "Log loss",
    "loss": "Loss",
    "ece": "Calibration error (ECE)",
    "brier": "Brier score",
    "worst_group_accuracy": "Worst-group accuracy",
    "worst_group_gap": "Worst-group gap",
    "worst_slice_accuracy": "Worst-slice accuracy",
    "worst_slice_gap": "Worst-slice gap",
    "concept_mean_accuracy": "Mean attribute accuracy",
    "concept_mean_auc": "Mean attribute ROC AUC",
    "val_accuracy": "Validation accuracy",
    "val_auc": "Validation ROC AUC",
    "temperature": "Temperature",
}
# Per-name families: "<prefix><name>" reads "<words> (<name>)".
_METRIC_FAMILIES = (
    ("slice_accuracy_", "Accuracy"),
    ("group_accuracy_", "Group accuracy"),
    ("group_n_", "Images in group"),
    ("attr_accuracy_", "Accuracy"),
    ("attr_auc_", "ROC AUC"),
)
_ACRONYMS = {"auc", "roc", "ece", "f1", "mae", "mse", "rmse", "lr", "id", "cpu", "gpu"}
# Metrics where a smaller number is the better one (said under the panel's title).
LOWER_IS_BETTER = {"ece", "brier", "log_loss", "loss", "worst_group_gap", "worst_slice_gap"}


def _metric_title(key: str) -> str:
    """A metric key in words: ``worst_group_gap`` -> "Worst-group gap", ``ece`` -> "Calibration error (ECE)",
    ``slice_accuracy_not_Bald`` -> "Accuracy (not Bald)"; an unknown key gets its words with acronyms in
    capitals and the first letter raised (``top5_auc`` -> "Top5 AUC")."""
    text = str(key)
    if text.lower() in _METRIC_TITLES:
        return _METRIC_TITLES[text.lower()]
    for prefix, words in _METRIC_FAMILIES:
        if text.startswith(prefix) and len(text) > len(prefix):
            return f"{words} ({text[len(prefix) :].replace('_', ' ')})"
    parts = [w.upper() if w.lower() in _ACRONYMS else w for w in text.replace("-", "_").split("_") if w]
    if not parts:
        return text
    return (parts[0][:1].upper() + parts[0][1:] + " " + " ".join(parts[1:])).strip()


def _grid_shape(n: int, max_cols: int = 8) -> tuple[int, int]:
    cols = min(max_cols, max(1, math.ceil(math.sqrt(n))))
    rows = max(1, math.ceil(n / cols))
    return rows, cols


def _to_display_image(
    img: Any,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """HxWx3 (or HxW) array in [0, 1] (float) or uint8, ready for ``imshow``.

    Accepts HWC uint8, HWC float, CHW float (e.g. an ImageNet-normalised tensor) and 1-channel images.
    Float input is un-normalised with ``mean``/``std`` when given, with ImageNet's when it holds negative
    values, and scaled by 1/255 when it looks like 0..255.
    """
    arr = to_numpy(img)
    arr = np.squeeze(arr) if arr.ndim == 4 and arr.shape[0] == 1 else arr
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.transpose(arr, (1, 2, 0))  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float32)
    if mean is None and std is None and np.nanmin(arr) < 0:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if mean is not None or std is not None:
        m = np.asarray(mean if mean is not None else 0.0, dtype=np.float32)
        s = np.asarray(std if std is not None else 1.0, dtype=np.float32)
        if arr.ndim == 2:  # grayscale: use the first channel's statistics
            m, s = m.reshape(-1)[0], s.reshape(-1)[0]
        arr = arr * s + m
    elif np.nanmax(arr) > 1.5:
        arr = arr / 255.0
    return np.clip(np.nan_to_num(arr), 0.0, 1.0)


def _show_image(ax, img: np.ndarray) -> None:
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0, vmax=255 if img.dtype == np.uint8 else 1)
    else:
        ax.imshow(img)
    ax.set_xticks([])
    ax.set_yticks([])
