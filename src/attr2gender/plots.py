"""Figures for the experiment, as plain functions of arrays.

Every ``plot_*`` function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``, no global
backend switch), so it is safe headless and from worker threads. When ``path`` is given the figure is
also written there as a PNG (120 dpi, tight bounding box, white background). The figure is returned so
callers can log it elsewhere (e.g. MLflow's ``log_figure``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .constants import IMAGENET_MEAN, IMAGENET_STD
from .metrics import to_numpy

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "contact_sheet",
    "plot_concept_front",
    "feature_maps_of",
    "first_conv",
    "plot_attribute_accuracy",
    "plot_attribute_importance",
    "plot_comparison",
    "plot_confusion_matrix",
    "plot_conv_filters",
    "plot_cost_ratios",
    "plot_feature_maps",
    "plot_intervention_curve",
    "plot_learning_curves",
    "plot_lr_finder",
    "plot_prediction_grid",
    "save_figure",
    "select_prediction_examples",
]

DPI = 120
CORRECT_COLOR = "#1b7f3a"  # green
WRONG_COLOR = "#c62828"  # red
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
MALE_COLOR = "#2b6cb0"
FEMALE_COLOR = "#d53f8c"
NEUTRAL_COLOR = "#4a5568"


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


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
        "mean_attribute_accuracy": "Mean attribute accuracy",
        "precision": "Precision",
        "recall": "Recall",
        "log_loss": "Log loss",
    }
    if key in table:
        return table[key]
    return name.replace("_", " ").strip().capitalize()


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


# --------------------------------------------------------------------------------------------------
# learning curves
# --------------------------------------------------------------------------------------------------

_SPLIT_PREFIXES = (
    ("train", "train"),
    ("val", "val"),
    ("valid", "val"),
    ("validation", "val"),
    ("test", "test"),
)
_SPLIT_STYLE = {
    "train": dict(color=TRAIN_COLOR, linestyle="-", label="train"),
    "val": dict(color=VAL_COLOR, linestyle="-", label="validation"),
    "test": dict(color=CORRECT_COLOR, linestyle="--", label="test"),
}
_X_CANDIDATES = ("epoch", "step", "global_step", "iteration")
_LR_KEYS = ("lr", "learning_rate")


def _split_and_family(column: str) -> tuple[str, str] | None:
    """('val', 'acc') from 'val_acc' / 'val/acc' / 'acc_val'; None for columns that are not metrics."""
    parts = re.split(r"[_/]", column, maxsplit=1)
    if len(parts) == 2:
        for prefix, split in _SPLIT_PREFIXES:
            if parts[0].lower() == prefix:
                return split, parts[1]
    m = re.match(r"^(.*)[_/](train|val|valid|validation|test)$", column, flags=re.IGNORECASE)
    if m:
        split = dict(_SPLIT_PREFIXES)[m.group(2).lower()]
        return split, m.group(1)
    return None


def _family_key(family: str) -> str:
    key = family.lower()
    return {"accuracy": "acc", "roc_auc": "auc", "auroc": "auc"}.get(key, key)


def plot_learning_curves(
    history: Sequence[Mapping[str, Any]] | pd.DataFrame,
    path: str | Path | None = None,
    title: str = "Learning curves",
) -> Figure:
    """One panel for the losses and one per other metric family (accuracy, AUC, ...), train vs validation.

    ``history`` rows look like ``{"epoch": 0, "train_loss": .., "val_loss": .., "train_acc": .., ...}``.
    Prefixes ``train_``/``val_``/``valid_``/``test_`` (or the same as suffixes, or ``/`` separators) define
    the split; the rest of the name is the family (``acc`` and ``accuracy`` share a panel). A learning-rate
    column (``lr``) gets its own log-scale panel. Rows that repeat an epoch (e.g. separate train and
    validation log rows) are merged. The best validation value of each family is starred.
    """
    df = pd.DataFrame(list(history)) if not isinstance(history, pd.DataFrame) else history.copy()
    if df.empty:
        return _message_figure(title, "no training history", path)

    xcol = next((c for c in _X_CANDIDATES if c in df.columns), None)
    if xcol is None:
        df = df.reset_index(drop=True)
        df["epoch"] = np.arange(len(df))
        xcol = "epoch"
    numeric = df.apply(pd.to_numeric, errors="coerce")
    numeric = numeric.dropna(subset=[xcol])
    if numeric[xcol].duplicated().any():
        numeric = numeric.groupby(xcol, as_index=False).mean(numeric_only=True)
    numeric = numeric.sort_values(xcol)

    families: dict[str, dict[str, str]] = {}
    display_name: dict[str, str] = {}
    for col in numeric.columns:
        if col == xcol or numeric[col].notna().sum() == 0:
            continue
        parsed = _split_and_family(col)
        if parsed is None:
            continue
        split, family = parsed
        key = _family_key(family)
        families.setdefault(key, {})[split] = col
        display_name.setdefault(key, family)
    order = sorted(families, key=lambda k: (0 if "loss" in k else 1, list(families).index(k)))
    lr_col = next((c for c in _LR_KEYS if c in numeric.columns and numeric[c].notna().any()), None)
    panels: list[tuple[str, dict[str, str]]] = [(k, families[k]) for k in order]
    if lr_col is not None:
        panels.append(("lr", {"lr": lr_col}))
    if not panels:
        return _message_figure(title, "history has no train_/val_ metric columns", path)

    n = len(panels)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = _new_figure(4.6 * cols, 3.6 * rows)
    x_label = xcol.replace("_", " ").capitalize()
    for i, (key, splits) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        few_points = len(numeric) <= 30
        for split, col in splits.items():
            sub = numeric[[xcol, col]].dropna()
            if sub.empty:
                continue
            style = dict(_SPLIT_STYLE.get(split, dict(color=NEUTRAL_COLOR, linestyle="-", label=split)))
            if key == "lr":
                style = dict(color=NEUTRAL_COLOR, linestyle="-", label="learning rate")
            ax.plot(
                sub[xcol],
                sub[col],
                marker="o" if few_points or len(sub) == 1 else None,
                markersize=5,
                linewidth=1.8,
                **style,
            )
            if split == "val" and key != "lr" and len(sub) > 1:
                lower_is_better = "loss" in key or "error" in key
                best = sub[col].idxmin() if lower_is_better else sub[col].idxmax()
                bx, by = sub.loc[best, xcol], sub.loc[best, col]
                ax.plot(
                    [bx],
                    [by],
                    marker="*",
                    markersize=14,
                    color=VAL_COLOR,
                    markeredgecolor="black",
                    linestyle="none",
                    label=f"best val {by:.4g} ({x_label.lower()} {bx:g})",
                    zorder=5,
                )
        if key == "lr":
            ax.set_yscale("log")
            ax.set_title("Learning rate schedule")
            ax.set_ylabel("learning rate (log scale)")
        else:
            pretty = _pretty_metric(display_name[key])
            ax.set_title(pretty)
            ax.set_ylabel(pretty.lower() if pretty != "ROC AUC" else pretty)
        ax.set_xlabel(x_label)
        xs = numeric[xcol].to_numpy()
        if len(xs) and np.allclose(xs, np.round(xs)):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(xs) == 1:
            ax.set_xlim(xs[0] - 1, xs[0] + 1)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=13, fontweight="bold")
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# confusion matrix
# --------------------------------------------------------------------------------------------------


def plot_confusion_matrix(
    y_true: Any,
    y_pred: Any,
    labels: Sequence[str] = ("Female", "Male"),
    path: str | Path | None = None,
    title: str = "Confusion matrix",
) -> Figure:
    """Confusion matrix with the count and the row-normalised percentage (share of the true class) in
    each cell; cell colour is that percentage. ``y_true``/``y_pred`` are class indices (0 = ``labels[0]``),
    booleans, CelebA's {-1, 1}, or class-name strings."""
    labels = tuple(labels)
    k = len(labels)
    yt = _as_label_array(y_true, labels)
    yp = _as_label_array(y_pred, labels)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.shape} vs {yp.shape}")
    cm = np.zeros((k, k), dtype=np.int64)
    valid = (yt >= 0) & (yt < k) & (yp >= 0) & (yp < k)
    np.add.at(cm, (yt[valid], yp[valid]), 1)
    row_tot = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(row_tot > 0, cm / np.maximum(row_tot, 1), np.nan)

    size = max(4.2, 1.5 * k + 2.2)
    fig = _new_figure(size + 0.8, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.nan_to_num(pct), cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            share = pct[i, j]
            text = f"{cm[i, j]:,}\n" + ("–" if np.isnan(share) else f"{100 * share:.1f}%")
            color = "white" if (not np.isnan(share) and share > 0.55) else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=13, color=color, fontweight="bold")
    ax.set_xticks(range(k), labels=labels, fontsize=11)
    ax.set_yticks(range(k), labels=labels, fontsize=11)
    ax.set_xlabel("Predicted", fontsize=12)
    ax.set_ylabel("True", fontsize=12)
    total = int(cm.sum())
    acc = np.trace(cm) / total if total else float("nan")
    ax.set_title(
        f"{title}\naccuracy {100 * acc:.2f}%  (n = {total:,})" if total else f"{title}\n(no samples)",
        fontsize=12,
    )
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("share of the true class (row %)")
    cbar.ax.yaxis.set_major_formatter(lambda v, _pos: f"{100 * v:.0f}%")
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# prediction examples
# --------------------------------------------------------------------------------------------------


def select_prediction_examples(
    y_true: Any, y_pred: Any, n: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` random indices of correct and of incorrect predictions, each sorted; deterministic for
    a seed. Returns ``(correct_idx, incorrect_idx)`` as int64 arrays."""
    yt = to_numpy(y_true).reshape(-1)
    yp = to_numpy(y_pred).reshape(-1)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.shape} vs {yp.shape}")
    rng = np.random.default_rng(seed)
    hit = yt == yp
    out = []
    for mask in (hit, ~hit):
        idx = np.flatnonzero(mask)
        if len(idx) > n:
            idx = np.sort(rng.choice(idx, size=n, replace=False))
        out.append(idx.astype(np.int64))
    return out[0], out[1]


def plot_prediction_grid(
    images: Any,
    true_labels: Any,
    pred_labels: Any,
    probabilities: Any = None,
    path: str | Path | None = None,
    title: str = "Correct predictions",
    max_images: int = 16,
    class_names: Sequence[str] = ("Female", "Male"),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """Grid of images, each titled ``"pred Male 0.93 / true Male"`` in green when right, red when wrong.

    ``images``: a sequence/batch of HxWx3 uint8 arrays or CHW float tensors (un-normalised with
    ``mean``/``std``; ImageNet's by default when a float image holds negative values).
    ``probabilities``: per image either P(class 1) (1-D, e.g. P(Male)) or per-class probabilities (n, k);
    the number shown is the model's probability *of the class it predicted*. May be None.
    """
    n_total = len(images) if images is not None else 0
    n = min(n_total, max_images)
    if n == 0:
        return _message_figure(title, "no images", path)
    yt = _as_label_array(true_labels, class_names)
    yp = _as_label_array(pred_labels, class_names)
    probs = None if probabilities is None else to_numpy(probabilities).astype(float)

    rows, cols = _grid_shape(n)
    fig = _new_figure(2.3 * cols, 2.45 * rows + 0.5)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        _show_image(ax, _to_display_image(images[i], mean, std))
        pred_name = class_names[yp[i]] if 0 <= yp[i] < len(class_names) else str(yp[i])
        true_name = class_names[yt[i]] if 0 <= yt[i] < len(class_names) else str(yt[i])
        conf = ""
        if probs is not None:
            if probs.ndim == 2:
                p = probs[i, yp[i]]
            else:
                p = probs[i] if yp[i] == 1 else 1.0 - probs[i]
            conf = f" {p:.2f}"
        correct = yp[i] == yt[i]
        ax.set_title(
            f"pred {pred_name}{conf}\ntrue {true_name}",
            fontsize=9.5,
            color=CORRECT_COLOR if correct else WRONG_COLOR,
            fontweight="bold",
        )
        for spine in ax.spines.values():
            spine.set_edgecolor(CORRECT_COLOR if correct else WRONG_COLOR)
            spine.set_linewidth(2.5)
    shown = f"{n} of {n_total}" if n_total > n else f"{n}"
    sub = "number = model's probability of its predicted class; " if probs is not None else ""
    fig.suptitle(f"{title} ({shown} images)\n{sub}green = correct, red = wrong", fontsize=11.5)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# CNN internals
# --------------------------------------------------------------------------------------------------


def plot_conv_filters(
    conv_weight: Any,
    path: str | Path | None = None,
    max_filters: int = 64,
    title: str = "First convolution layer filters",
) -> Figure:
    """First-layer filters ``(out, in, k, k)`` as small tiles, min-max scaled per filter: RGB when
    ``in == 3``, otherwise input channel 0 in grayscale."""
    w = to_numpy(conv_weight).astype(np.float32)
    if w.ndim != 4:
        raise ValueError(f"expected a conv weight of shape (out, in, k, k), got {w.shape}")
    out_ch, in_ch, kh, kw = w.shape
    n = min(out_ch, max_filters)
    if n == 0:
        return _message_figure(title, "no filters", path)
    rows, cols = _grid_shape(n, max_cols=8)
    fig = _new_figure(1.15 * cols, 1.15 * rows + 0.7)
    rgb = in_ch == 3
    for i in range(n):
        f = w[i].transpose(1, 2, 0) if rgb else w[i, 0]
        lo, hi = float(f.min()), float(f.max())
        f = (f - lo) / (hi - lo) if hi > lo else np.full_like(f, 0.5)
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(f, cmap=None if rgb else "gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(i), fontsize=7, pad=1.5)
    kind = "RGB" if rgb else f"input channel 0 of {in_ch}, grayscale"
    fig.suptitle(
        f"{title}\n{n} of {out_ch} filters, {kh}×{kw} kernels, {kind}, min–max scaled per filter",
        fontsize=10.5,
    )
    return save_figure(fig, path)


def plot_feature_maps(
    feature_maps: Any,
    image: Any = None,
    path: str | Path | None = None,
    max_maps: int = 16,
    title: str = "Feature maps of the first convolution layer",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """The input ``image`` (optional; same formats as :func:`plot_prediction_grid`) followed by the first
    ``max_maps`` channels of ``feature_maps`` ``(C, H, W)`` (a leading batch dim of 1 is dropped), each in
    viridis with its own colour scale (yellow = strong activation)."""
    fm = to_numpy(feature_maps).astype(np.float32)
    if fm.ndim == 4 and fm.shape[0] == 1:
        fm = fm[0]
    if fm.ndim == 2:
        fm = fm[None]
    if fm.ndim != 3:
        raise ValueError(f"expected feature maps of shape (C, H, W), got {fm.shape}")
    n = min(fm.shape[0], max_maps)
    tiles = n + (image is not None)
    if tiles == 0:
        return _message_figure(title, "no feature maps", path)
    rows, cols = _grid_shape(tiles, max_cols=6)
    fig = _new_figure(2.0 * cols, 2.1 * rows + 0.6)
    pos = 1
    if image is not None:
        ax = fig.add_subplot(rows, cols, pos)
        _show_image(ax, _to_display_image(image, mean, std))
        ax.set_title("input image", fontsize=9, fontweight="bold")
        pos += 1
    for c in range(n):
        ax = fig.add_subplot(rows, cols, pos)
        ax.imshow(fm[c], cmap="viridis", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"channel {c}", fontsize=9)
        pos += 1
    fig.suptitle(
        f"{title}\n{n} of {fm.shape[0]} channels, {fm.shape[1]}×{fm.shape[2]}, "
        "each scaled to its own range (yellow = strongest)",
        fontsize=10.5,
    )
    return save_figure(fig, path)


def first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    """The first ``nn.Conv2d`` of ``model`` (its input filters, e.g. for visualisation)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            return module
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer; pass `layer=` explicitly")


def feature_maps_of(
    model: torch.nn.Module, image_tensor: torch.Tensor, layer: torch.nn.Module | None = None
) -> torch.Tensor:
    """Output ``(C, H, W)`` of ``layer`` (default: the model's first ``nn.Conv2d``) for one image.

    Registers a forward hook, runs an eval-mode ``no_grad`` forward pass on ``image_tensor``
    (``(1, 3, H, W)``; a 3-D image gets a batch dim) moved to the model's device, and removes the hook
    and restores the model's train/eval mode afterwards. Returns a detached CPU tensor.
    """
    import torch

    layer = first_conv(model) if layer is None else layer
    x = image_tensor if image_tensor.dim() == 4 else image_tensor.unsqueeze(0)
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype if param.is_floating_point() else x.dtype)

    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if not captured:
            out = output[0] if isinstance(output, tuple | list) else output
            captured.append(out.detach())

    was_training = model.training
    handle = layer.register_forward_hook(hook)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise RuntimeError("the chosen layer was not called during the forward pass")
    return captured[0][0].float().cpu()


# --------------------------------------------------------------------------------------------------
# attributes
# --------------------------------------------------------------------------------------------------


def plot_attribute_importance(
    importance: pd.Series,
    path: str | Path | None = None,
    title: str = "What drives the Male decision",
    top: int = 39,
    signed: bool | None = None,
    positive_label: str = "pushes toward Male",
    negative_label: str = "pushes toward Female",
) -> Figure:
    """Horizontal bars of ``importance`` (index = attribute), largest ``|value|`` on top.

    Signed values (e.g. logistic-regression coefficients; auto-detected when any value is negative, or
    forced with ``signed``) are coloured by direction with a legend; unsigned ones (e.g. LightGBM gain)
    get a single colour. The x-label is ``importance.name`` (e.g. "coefficient" or "gain").
    """
    s = pd.Series(importance, dtype=float).dropna()
    label = str(importance.name) if getattr(importance, "name", None) is not None else "importance"
    if s.empty:
        return _message_figure(title, "no attribute importances", path)
    s = s.reindex(s.abs().sort_values(ascending=False).index)[:top]
    s = s.iloc[::-1]  # largest at the top of a barh
    if signed is None:
        signed = bool((s < 0).any())
    colors = [MALE_COLOR if v >= 0 else FEMALE_COLOR for v in s] if signed else [NEUTRAL_COLOR] * len(s)

    fig = _new_figure(8.0, 0.27 * len(s) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(s))
    ax.barh(y, s.to_numpy(), color=colors, height=0.72)
    ax.set_yticks(y, labels=[str(i) for i in s.index], fontsize=9)
    ax.set_ylim(-0.6, len(s) - 0.4)
    ax.axvline(0, color="black", linewidth=0.8)
    span = float(s.abs().max()) or 1.0
    for yi, v in zip(y, s.to_numpy()):
        ax.text(
            v + (0.01 * span if v >= 0 else -0.01 * span),
            yi,
            f"{v:.3g}",
            va="center",
            ha="left" if v >= 0 else "right",
            fontsize=7.5,
            color="#333333",
        )
    lo, hi = float(min(s.min(), 0.0)), float(max(s.max(), 0.0))
    pad = 0.14 * (hi - lo or 1.0)
    ax.set_xlim(lo - (pad if lo < 0 else 0), hi + pad)
    ax.set_xlabel(label, fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    shown = (
        f"top {len(s)} of {len(importance)} by |{label}|"
        if len(importance) > len(s)
        else f"sorted by |{label}|"
    )
    ax.set_title(f"{title}\n({shown})", fontsize=12)
    if signed:
        ax.legend(
            handles=[
                Patch(color=MALE_COLOR, label=f"{positive_label} (> 0)"),
                Patch(color=FEMALE_COLOR, label=f"{negative_label} (< 0)"),
            ],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.06 if len(s) > 20 else -0.12),  # below the axis: never over a bar
            ncol=2,
            fontsize=9,
            frameon=False,
        )
    return save_figure(fig, path)


ROUTE_COLORS = ("#2b6cb0", "#dd6b20", "#2f855a", "#805ad5")


def plot_group_accuracy(
    tables: Mapping[str, pd.DataFrame], path: str | Path | None = None, title: str = "Male accuracy per group"
) -> Figure:
    """Accuracy per group with 95 % CI bars, one bar per route side by side.

    ``tables``: ``{route: group table}`` with columns ``n``, ``accuracy``, ``ci_low``, ``ci_high``,
    ``enough`` (see :func:`attr2gender.metrics.group_accuracy_table`); groups too small for a
    number are labelled "too few" instead of drawn."""
    tables = {k: v for k, v in tables.items() if v is not None and len(v)}
    if not tables:
        return _message_figure(title, "no groups", path)
    groups = list(next(iter(tables.values())).index)
    k = len(tables)
    height = 0.8 / k
    lows = [
        v for t in tables.values() for v in t.loc[t["enough"].astype(bool), "ci_low"].to_numpy(dtype=float)
    ]
    left = max(0.0, min(0.5, min([v for v in lows if np.isfinite(v)] or [0.5]) - 0.08))
    fig = _new_figure(8.5, 0.55 * len(groups) * max(1, k / 2) + 1.8)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(groups))[::-1]
    for j, (route, table) in enumerate(tables.items()):
        t = table.reindex(groups)
        offset = (j - (k - 1) / 2) * height
        acc = t["accuracy"].to_numpy(dtype=float)
        ok = t["enough"].fillna(False).to_numpy(dtype=bool)
        err = np.vstack([acc - t["ci_low"].to_numpy(dtype=float), t["ci_high"].to_numpy(dtype=float) - acc])
        color = ROUTE_COLORS[j % len(ROUTE_COLORS)]
        ax.barh(
            y[ok] - offset,
            acc[ok] - left,
            left=left,
            height=height * 0.9,
            color=color,
            xerr=err[:, ok],
            capsize=2.5,
            error_kw={"elinewidth": 1, "ecolor": "#333333"},
            label=route,
        )
        for yi, a, good, n in zip(y - offset, acc, ok, t["n"].to_numpy()):
            text = f" {a:.1%}" if good else f" {route}: too few ({int(n)} images)"
            ax.text(
                left,
                yi,
                text,
                va="center",
                ha="left",
                fontsize=7.5,
                color="white" if good else "#555555",
                fontweight="bold" if good else "normal",
            )
    counts = next(iter(tables.values())).reindex(groups)["n"].to_numpy()
    ax.set_yticks(
        y, labels=[f"{g.replace('_', ' ')}  (n={int(n):,})" for g, n in zip(groups, counts)], fontsize=9
    )
    ax.set_xlim(left, 1.0)
    ax.set_xlabel("Male accuracy (95 % bootstrap CI)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=k, fontsize=9, frameon=False)
    return save_figure(fig, path)


def plot_importance_change(
    change: pd.DataFrame,
    path: str | Path | None = None,
    title: str = "What the concept edit changed",
    top: int = 39,
) -> Figure:
    """Paired horizontal bars: stage two's importance of each attribute before (grey) and after (coloured
    by direction) a concept edit. ``change``: columns ``before`` and ``after``, one row per attribute."""
    frame = change[["before", "after"]].astype(float)
    if frame.dropna(how="all").empty:
        return _message_figure(title, "no attribute importances", path)
    frame = frame.loc[frame.abs().max(axis=1).sort_values(ascending=False).index][:top].iloc[::-1]
    fig = _new_figure(8.5, 0.32 * len(frame) + 1.8)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(frame))
    after = frame["after"].fillna(0).to_numpy()
    ax.barh(
        y + 0.19, frame["before"].fillna(0).to_numpy(), height=0.36, color="#b0b0b0", label="before the edit"
    )
    ax.barh(
        y - 0.19,
        after,
        height=0.36,
        color=[MALE_COLOR if v >= 0 else FEMALE_COLOR for v in after],
        label="after",
    )
    for yi, (b, a) in zip(y, frame.to_numpy()):
        if np.isfinite(b) and np.isfinite(a) and b != 0 and a == 0:
            ax.text(0, yi - 0.19, " excluded (0)", va="center", ha="left", fontsize=7.5, color="#333333")
    ax.set_yticks(y, labels=[str(i) for i in frame.index], fontsize=9)
    ax.set_ylim(-0.6, len(frame) - 0.4)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(
        "stage-two coefficient (> 0 pushes toward Male)" if (frame < 0).any().any() else "importance"
    )
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=12)
    ax.legend(
        handles=[
            Patch(color="#b0b0b0", label="before the edit"),
            Patch(color=MALE_COLOR, label="after: toward Male"),
            Patch(color=FEMALE_COLOR, label="after: toward Female"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.05 if len(frame) > 20 else -0.1),
        ncol=3,
        fontsize=9,
        frameon=False,
    )
    return save_figure(fig, path)


def plot_attribute_accuracy(
    accuracy: pd.Series,
    auc: pd.Series | None = None,
    path: str | Path | None = None,
    title: str = "Stage one: per-attribute test performance",
    baseline: pd.Series | None = None,
    label: str = "accuracy",
) -> Figure:
    """Horizontal bars of per-attribute accuracy (sorted, best on top), ROC AUC as diamonds when given,
    the optional majority-class accuracy (``baseline``, e.g. ``max(p, 1 - p)``) as grey ticks, and a
    dashed line at the mean accuracy. The x-axis is zoomed to the data range. ``label`` names the bars'
    metric (e.g. "balanced accuracy", whose always-majority baseline is 0.5)."""
    acc = pd.Series(accuracy, dtype=float).dropna().sort_values()
    if acc.empty:
        return _message_figure(title, "no attribute accuracies", path)
    fig = _new_figure(8.0, 0.27 * len(acc) + 1.8)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(acc))
    ax.barh(y, acc.to_numpy(), color="#90b4d8", height=0.72, label=label)
    values = [acc.to_numpy()]
    handles: list[Any] = [Patch(color="#90b4d8", label=label)]
    if baseline is not None:
        b = pd.Series(baseline, dtype=float).reindex(acc.index)
        ax.scatter(b.to_numpy(), y, marker="|", s=160, color="#555555", linewidths=2.2, zorder=3)
        values.append(b.dropna().to_numpy())
        handles.append(
            Line2D(
                [],
                [],
                marker="|",
                color="#555555",
                linestyle="none",
                markersize=11,
                markeredgewidth=2.2,
                label="majority-class accuracy",
            )
        )
    if auc is not None:
        a = pd.Series(auc, dtype=float).reindex(acc.index)
        ax.scatter(a.to_numpy(), y, marker="D", s=26, color="#d9480f", zorder=4)
        values.append(a.dropna().to_numpy())
        handles.append(
            Line2D([], [], marker="D", color="#d9480f", linestyle="none", markersize=6, label="ROC AUC")
        )
    mean_acc = float(acc.mean())
    ax.axvline(mean_acc, color="black", linestyle="--", linewidth=1.2)
    handles.append(Line2D([], [], color="black", linestyle="--", label=f"mean {label} {mean_acc:.3f}"))
    ax.set_yticks(y, labels=[str(i) for i in acc.index], fontsize=9)
    ax.set_ylim(-0.6, len(acc) - 0.4)
    lo = float(np.nanmin(np.concatenate(values)))
    left = max(0.0, math.floor((lo - 0.03) * 20) / 20)
    ax.set_xlim(left, 1.005 if np.nanmax(np.concatenate(values)) <= 1.0 else None)
    ax.set_xlabel("score on the test set" + (" (axis does not start at 0)" if left > 0 else ""), fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"{title}\n({len(acc)} attributes, sorted by {label})", fontsize=12)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8.5, frameon=False)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------------
# learning-rate finder and final comparison
# --------------------------------------------------------------------------------------------------


def plot_lr_finder(
    lrs: Any,
    losses: Any,
    suggestion: float | None = None,
    path: str | Path | None = None,
    title: str = "Learning-rate range test",
) -> Figure:
    """Loss vs learning rate on a log x-axis, the suggested learning rate marked. The y-axis is clipped
    so a final divergence does not flatten the useful part of the curve."""
    lr = to_numpy(lrs).astype(float).reshape(-1)
    loss = to_numpy(losses).astype(float).reshape(-1)
    if lr.shape != loss.shape:
        raise ValueError(f"lrs and losses differ in length: {lr.shape} vs {loss.shape}")
    ok = np.isfinite(lr) & np.isfinite(loss) & (lr > 0)
    lr, loss = lr[ok], loss[ok]
    if lr.size == 0:
        return _message_figure(title, "no learning-rate finder results", path)
    fig = _new_figure(7.0, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(
        lr,
        loss,
        color=TRAIN_COLOR,
        linewidth=1.8,
        marker="o" if lr.size <= 30 else None,
        label="training loss",
    )
    ax.set_xscale("log")
    lo = float(loss.min())
    start = float(np.median(loss[: max(1, lr.size // 10)]))
    hi = min(float(loss.max()), start + 1.5 * max(start - lo, 1e-12))
    if hi > lo:
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    if suggestion is not None and np.isfinite(suggestion) and suggestion > 0:
        ax.axvline(
            suggestion,
            color=WRONG_COLOR,
            linestyle="--",
            linewidth=1.4,
            label=f"suggested lr = {suggestion:.2e}",
        )
        j = int(np.argmin(np.abs(np.log(lr) - math.log(suggestion))))
        ax.plot([lr[j]], [loss[j]], marker="o", markersize=9, color=WRONG_COLOR, linestyle="none")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=12, fontweight="bold")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="best")
    return save_figure(fig, path)


_COUNT_KEYS = {"n", "tn", "fp", "fn", "tp", "support", "n_boot", "threshold"}


def plot_comparison(
    metrics: Mapping[str, Mapping[str, float]],
    path: str | Path | None = None,
    title: str = "Two-stage (attributes → Male) vs direct (pixels → Male)",
    metric_names: Sequence[str] | None = None,
    zoom: bool = True,
    ci_label: str = "95% bootstrap confidence interval",
) -> Figure:
    """Grouped bars: one group per metric, one bar per approach, value written on each bar.

    ``metrics`` is ``{"two_stage": {"accuracy": .., "roc_auc": .., "accuracy_ci_low": .., ...}, ...}``.
    ``<metric>_ci_low``/``<metric>_ci_high`` keys become error bars (described by ``ci_label``). ``metric_names`` picks and orders
    the metrics (default: every non-CI, non-count key in first-seen order). ``zoom`` starts the y-axis
    near the smallest value (and says so) so that small differences are visible.
    """
    approaches = list(metrics)
    if metric_names is None:
        seen: list[str] = []
        for m in metrics.values():
            for key in m:
                if key.endswith(("_ci_low", "_ci_high")) or key in _COUNT_KEYS or key in seen:
                    continue
                seen.append(key)
        metric_names = seen
    metric_names = [k for k in metric_names if any(_finite(metrics[a].get(k)) for a in approaches)]
    if not approaches or not metric_names:
        return _message_figure(title, "no metrics to compare", path)

    palette = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#c53030", "#718096"]
    k, m = len(approaches), len(metric_names)
    width = 0.8 / k
    fig = _new_figure(max(6.0, 1.1 + m * (0.55 + 0.5 * k)), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(m)
    all_vals: list[float] = []
    for i, name in enumerate(approaches):
        vals = np.array([_num(metrics[name].get(key)) for key in metric_names])
        lows = np.array([_num(metrics[name].get(f"{key}_ci_low")) for key in metric_names])
        highs = np.array([_num(metrics[name].get(f"{key}_ci_high")) for key in metric_names])
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(
            pos,
            np.nan_to_num(vals),
            width=width * 0.92,
            color=palette[i % len(palette)],
            label=name.replace("_", " "),
        )
        has_ci = np.isfinite(lows) & np.isfinite(highs) & np.isfinite(vals)
        if has_ci.any():
            err = np.vstack([vals - lows, highs - vals])[:, has_ci]
            ax.errorbar(
                pos[has_ci],
                vals[has_ci],
                yerr=np.abs(err),
                fmt="none",
                ecolor="black",
                elinewidth=1.3,
                capsize=4,
            )
            all_vals += list(lows[has_ci])
            highs_for_label = np.where(has_ci, highs, vals)
        else:
            highs_for_label = vals
        all_vals += [v for v in vals if np.isfinite(v)]
        for p, v, top in zip(pos, vals, highs_for_label):
            if np.isfinite(v):
                ax.text(
                    p,
                    (top if np.isfinite(top) else v),
                    f"{v:.3f}",
                    ha="center",
                    va="bottom",
                    fontsize=8.5,
                    rotation=0 if k <= 3 else 90,
                )
    ax.set_xticks(x, labels=[_pretty_metric(key) for key in metric_names], fontsize=10.5)
    vmin, vmax = min(all_vals), max(all_vals)
    bounded = vmin >= 0 and vmax <= 1.0
    if zoom and vmin > 0:
        spread = max(vmax - vmin, 0.01)
        bottom = max(0.0, vmin - 1.2 * spread)
        top = vmax + 0.35 * spread
        if bounded:
            top = min(top, 1.0 + 0.02 * spread) if vmax < 1.0 else vmax + 0.35 * spread
    else:
        bottom, top = min(0.0, vmin), vmax * 1.12 if vmax > 0 else 1.0
    ax.set_ylim(bottom, top)
    ax.set_ylabel("score" + (" (axis does not start at 0)" if bottom > 0 else ""))
    if any(f"{key}_ci_low" in metrics[a] for a in approaches for key in metric_names):
        ax.set_title(f"{title}\nerror bars: {ci_label}", fontsize=11.5)
    else:
        ax.set_title(title, fontsize=11.5)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(title="approach", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9.5)
    return save_figure(fig, path)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _finite(v: Any) -> bool:
    return bool(np.isfinite(_num(v)))


def plot_cost_ratios(metrics: Mapping[str, float], path: str | Path | None = None):
    """Horizontal bars of the cost ratios (two-stage ÷ direct) with reference lines at 1 (same cost) and
    2 (the source study's "about twice")."""
    labels, values = [], []
    prefix = "inference_time_ratio_b"
    for b in sorted(
        int(k[len(prefix) :]) for k in metrics if k.startswith(prefix) and k[len(prefix) :].isdigit()
    ):
        labels.append(f"inference time, batch {b}")
        values.append(metrics[f"inference_time_ratio_b{b}"])
    for key, label in (
        ("training_time_ratio", "training time"),
        ("size_ratio", "bundle size"),
        ("param_ratio", "parameters"),
    ):
        labels.append(label)
        values.append(metrics.get(key, float("nan")))
    fig = _new_figure(7.5, 0.55 * len(labels) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(labels))[::-1]
    shown = np.nan_to_num(np.asarray(values, dtype=float))
    ax.barh(y, shown, color=["#dd6b20" if v > 1 else "#2b6cb0" for v in shown], height=0.6)
    for yi, v in zip(y, values):
        ax.text(
            v if math.isfinite(v) else 0,
            yi,
            f" {v:.2f}×" if math.isfinite(v) else " n/a",
            va="center",
            fontsize=10,
            zorder=5,
            bbox=dict(facecolor="white", edgecolor="none", pad=1.0, alpha=0.85),
        )
    ax.axvline(1, color="black", linewidth=1.2)
    ax.axvline(2, color="#c62828", linestyle="--", linewidth=1.2, label="source study: about twice")
    ax.set_yticks(y, labels=labels, fontsize=10)
    top = max([2.0, *[v for v in shown if math.isfinite(v)]])
    ax.set_xlim(0, top * 1.18)
    ax.set_xlabel("two-stage ÷ direct (1 = same cost; above 1 = the detour costs more)")
    ax.set_title("What the detour through 39 attributes costs", fontsize=12, fontweight="bold")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return save_figure(fig, path)


POLICY_STYLE = {
    "uncertainty": ("#2b6cb0", "-"),
    "contribution": ("#dd6b20", "-"),
    "random": ("#4a5568", "--"),
}


def plot_intervention_curve(
    curve: pd.DataFrame,
    references: Mapping[str, float] | None = None,
    path: str | Path | None = None,
    title: str = "Interventions: correcting the k worst concepts",
) -> Figure:
    """Male accuracy against k, the number of attributes corrected to their true values per image, one
    line per policy (columns ``policy``, ``k``, ``accuracy``); ``references`` are horizontal lines (e.g.
    the direct route's accuracy, stage two on the true attributes)."""
    if curve is None or curve.empty:
        return _message_figure(title, "no intervention curve", path)
    fig = _new_figure(7.5, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for policy, part in curve.groupby("policy", sort=False):
        color, style = POLICY_STYLE.get(str(policy), (NEUTRAL_COLOR, "-"))
        ax.plot(
            part["k"], part["accuracy"], color=color, linestyle=style, linewidth=2, label=f"policy: {policy}"
        )
    for (name, value), color in zip((references or {}).items(), ("#c62828", "#2f855a", "#805ad5")):
        if value is not None and math.isfinite(value):
            ax.axhline(value, color=color, linestyle=":", linewidth=1.5, label=f"{name} ({value:.3f})")
    ax.set_xlabel("attributes corrected to their true value, per image (k)")
    ax.set_ylabel("Male accuracy")
    ax.set_xlim(0, int(curve["k"].max()))
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=12)
    ax.legend(loc="lower right", fontsize=9)
    return save_figure(fig, path)


def plot_concept_front(
    points: pd.DataFrame,
    direct_accuracy: float | None = None,
    sequential_auc: float | None = None,
    tolerance_floor: float | None = None,
    path: str | Path | None = None,
    title: str = "Male accuracy against concept quality (validation)",
) -> Figure:
    """One point per joint model (columns ``name``, ``concept_auc``, ``accuracy``, ``chosen``): the accuracy
    a concept bottleneck buys by letting its concepts go. The sequential model is a vertical line at its
    concept AUC (its stage two is fitted on the validation images: no honest validation accuracy), the
    shaded band the concept AUCs below ``tolerance_floor`` (its AUC minus the tolerance), and the direct
    route (no concepts) a horizontal line."""
    if points is None or points.empty:
        return _message_figure(title, "no models to place", path)
    fig = _new_figure(7.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    for _, row in points.iterrows():
        chosen = bool(row.get("chosen", False))
        ax.scatter(
            row["concept_auc"],
            row["accuracy"],
            s=90 if chosen else 50,
            color="#2f855a" if chosen else NEUTRAL_COLOR,
            edgecolor="black" if chosen else "none",
            zorder=3,
        )
        ax.annotate(
            str(row["name"]) + (" (chosen)" if chosen else ""),
            (row["concept_auc"], row["accuracy"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=9,
        )
    if sequential_auc is not None and math.isfinite(sequential_auc):
        ax.axvline(
            sequential_auc, color="#2b6cb0", linestyle="--", label=f"sequential ({sequential_auc:.3f})"
        )
    if tolerance_floor is not None and math.isfinite(tolerance_floor):
        low = min(float(points["concept_auc"].min()), tolerance_floor) - 0.01
        ax.axvspan(low, tolerance_floor, color="#c62828", alpha=0.08, label="concepts lost (below the floor)")
    if direct_accuracy is not None and math.isfinite(direct_accuracy):
        ax.axhline(
            direct_accuracy, color="#c62828", linestyle=":", label=f"direct route ({direct_accuracy:.3f})"
        )
    ax.set_xlabel("mean concept AUC over the 39 attributes")
    ax.set_ylabel("Male accuracy")
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=12)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=9)
    return save_figure(fig, path)


def contact_sheet(
    pairs: Sequence[tuple[Any, Any, Any, Any]],
    path: str | Path | None = None,
    cell: int = 160,
    columns: int = 4,
):
    """What the model sees, next to what it was given: per entry (original image, face box, 5 landmarks,
    aligned crop[, why not]), the original with its box (green) and landmarks (red), then the aligned crop.
    Without an aligned crop the box (if any) is red and the last element says why ("no face", "too small").
    Returns a PIL image (PNG at ``path``). Drawn with Pillow, not matplotlib: 64 photos at full detail would
    make a slow, huge figure."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=16)
    n = max(1, len(pairs))
    rows = math.ceil(n / columns)
    pad = 6
    width = columns * (2 * cell + 3 * pad)
    sheet = Image.new("RGB", (width, rows * (cell + 2 * pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (original, box, landmarks, aligned, *why) in enumerate(pairs):
        r, c = divmod(k, columns)
        x0, y0 = c * (2 * cell + 3 * pad) + pad, r * (cell + 2 * pad) + pad
        shown = original.convert("RGB").copy()
        scale = cell / max(shown.size)
        shown = shown.resize((max(1, round(shown.width * scale)), max(1, round(shown.height * scale))))
        marks = ImageDraw.Draw(shown)
        if box is not None:
            colour = (0, 220, 0) if aligned is not None else (230, 0, 0)
            marks.rectangle([v * scale for v in box], outline=colour, width=2)
        if landmarks is not None:
            for x, y in np.asarray(landmarks, dtype=float) * scale:
                marks.ellipse((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=(255, 40, 40))
        sheet.paste(shown, (x0 + (cell - shown.width) // 2, y0 + (cell - shown.height) // 2))
        if aligned is not None:
            crop = aligned.convert("RGB")
            crop_scale = cell / max(crop.size)
            crop = crop.resize(
                (max(1, round(crop.width * crop_scale)), max(1, round(crop.height * crop_scale)))
            )
            sheet.paste(crop, (x0 + cell + pad + (cell - crop.width) // 2, y0 + (cell - crop.height) // 2))
        else:
            label = why[0] if why else "no face"
            draw.text((x0 + cell + pad + 8, y0 + cell // 2 - 8), label, fill=(200, 0, 0), font=font)
    if path is not None:
        sheet.save(path)
    return sheet


def plot_reliability(
    curves: Mapping[str, pd.DataFrame],
    ece: Mapping[str, float] | None = None,
    path: str | Path | None = None,
    title: str = "Reliability: predicted P(Male) against the observed share of men",
) -> Figure:
    """Reliability diagram, one line per route: per bin of predicted P(Male), the mean prediction (x)
    against the observed share of Male (y), marker area ~ images in the bin. The diagonal is perfect
    calibration; ``ece`` values go into the legend. ``curves``: ``{route: calibration_bins(...)}``."""
    curves = {k: v[v["n"] > 0] for k, v in curves.items() if v is not None and (v["n"] > 0).any()}
    if not curves:
        return _message_figure(title, "no predictions", path)
    fig = _new_figure(6.4, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="#888888", linestyle="--", linewidth=1, label="perfect calibration")
    biggest = max(float(c["n"].max()) for c in curves.values())
    for j, (route, c) in enumerate(curves.items()):
        color = ROUTE_COLORS[j % len(ROUTE_COLORS)]
        label = route + (f" (ECE {ece[route]:.3f})" if ece and route in ece else "")
        ax.plot(c["mean_probability"], c["male_rate"], color=color, linewidth=1.5, label=label)
        ax.scatter(
            c["mean_probability"],
            c["male_rate"],
            s=15 + 185 * c["n"] / biggest,
            color=color,
            alpha=0.7,
            zorder=3,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(Male), mean per bin")
    ax.set_ylabel("observed share of men")
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper left", fontsize=9, frameon=False)
    return save_figure(fig, path)


def plot_explanation_waterfall(
    explanation, i: int, k: int = 10, path: str | Path | None = None, title: str | None = None
) -> Figure:
    """Why image ``i`` of ``explanation`` (:meth:`Attr2GenderPipeline.explain`) got its P(Male), as a
    waterfall in Male log-odds, top to bottom: the bias (where every image starts), then the ``k``
    attributes that pushed hardest (each bar starts where the last ended; blue toward Male, pink toward
    Female), the rest lumped as "other N attributes", and the image's log-odds, with P(Male) in the title.

    Whatever stage two is, its contributions add up to the log-odds (logistic: coefficient x value and
    the intercept; LightGBM: SHAP values and the expected value), so the last bar ends where the pushes do.
    A row with no prediction gets a figure saying why."""
    predictions = explanation.predictions
    contrib = explanation.contributions.iloc[i]
    image = predictions["image"].iloc[i]
    name = Path(image).name if isinstance(image, str) else f"image #{image}"
    if contrib.isna().all():
        error = predictions["error"].iloc[i] if "error" in predictions else ""
        return _message_figure(title or f"Why {name}?", f"no prediction\n{error}"[:200], path)
    bias = float(contrib["bias"])
    pushes = contrib.drop("bias").astype(float)
    pushes = pushes.reindex(pushes.abs().sort_values(ascending=False, kind="stable").index)
    shown, rest = pushes[:k], pushes[k:]
    log_odds = float(contrib.sum())
    probability = float(predictions["male_probability"].iloc[i])
    label = predictions["label"].iloc[i] if "label" in predictions else None

    def attribute_label(attribute: str) -> str:  # with the value stage two read, when predict gave it
        if attribute in predictions:
            return f"{attribute} = {float(predictions[attribute].iloc[i]):.2f}"
        return str(attribute)

    steps = [("bias (base rate)", bias)] + [(attribute_label(a), float(v)) for a, v in shown.items()]
    if len(rest):
        steps.append((f"other {len(rest)} attributes", float(rest.sum())))
    starts = np.cumsum([0.0] + [v for _, v in steps])  # where each bar starts; the last is the log-odds

    fig = _new_figure(8.5, 0.32 * (len(steps) + 1) + 1.8)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(steps) + 1)[::-1]  # the bias on top, the log-odds at the bottom
    for yi, (_, v), start in zip(y, steps, starts):
        ax.barh(yi, v, left=start, height=0.7, color=MALE_COLOR if v >= 0 else FEMALE_COLOR)
    ax.barh(y[-1], log_odds, height=0.7, color=NEUTRAL_COLOR)
    # Thin connectors: each bar starts where the one above ended.
    for yi, end in zip(y[:-1], starts[1:]):
        ax.plot([end, end], [yi - 0.35, yi - 0.65], color="#888888", linewidth=0.8)
    span = float(max(np.abs(starts).max(), abs(log_odds), 1e-9))
    values = [v for _, v in steps] + [log_odds]
    ends = list(starts[1:]) + [log_odds]
    for yi, v, end in zip(y, values, ends):  # each value past the end of its bar
        ax.text(
            end + (0.01 * span if v >= 0 else -0.01 * span),
            yi,
            f"{v:+.2f}",
            va="center",
            ha="left" if v >= 0 else "right",
            fontsize=7.5,
            color="#333333",
        )
    ax.set_yticks(y, labels=[s for s, _ in steps] + ["log-odds (Male)"], fontsize=9)
    ax.set_ylim(-0.6, len(steps) + 0.6)
    lo, hi = float(min(starts.min(), log_odds, 0.0)), float(max(starts.max(), log_odds, 0.0))
    pad = 0.14 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.axvline(0, color="black", linewidth=0.8)  # log-odds 0: P(Male) = 0.5
    ax.set_xlabel("Male log-odds (0 = P(Male) 0.5)", fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    decided = f", {label}" if isinstance(label, str) else ""
    ax.set_title(
        title or f"Why {name}: P(Male) = {probability:.3f}{decided}\n(log-odds {log_odds:+.2f})", fontsize=12
    )
    ax.legend(
        handles=[
            Patch(color=MALE_COLOR, label="pushes toward Male"),
            Patch(color=FEMALE_COLOR, label="pushes toward Female"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1 if len(steps) > 8 else -0.18),  # below the axis: never over a bar
        ncol=2,
        fontsize=9,
        frameon=False,
    )
    return save_figure(fig, path)
