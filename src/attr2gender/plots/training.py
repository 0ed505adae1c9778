"""Figures of training: learning curves (losses and metrics per epoch, the learning-rate schedule) and the
learning-rate range test. Used by ``experiments.route_run`` and ``training.engine``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..metrics import to_numpy
from ._style import (
    CORRECT_COLOR,
    NEUTRAL_COLOR,
    TRAIN_COLOR,
    VAL_COLOR,
    WRONG_COLOR,
    _message_figure,
    _new_figure,
    _pretty_metric,
    save_figure,
)

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
    kept_epoch: int | None = None,
    kept_by: str = "",
) -> Figure:
    """One panel for the losses and one per other metric family (accuracy, AUC, ...), train vs validation.

    ``history`` rows look like ``{"epoch": 0, "train_loss": .., "val_loss": .., "train_acc": .., ...}``.
    Prefixes ``train_``/``val_``/``valid_``/``test_`` (or the same as suffixes, or ``/`` separators) define
    the split; the rest of the name is the family (``acc`` and ``accuracy`` share a panel). A learning-rate
    column (``lr``) gets its own log-scale panel. Rows that repeat an epoch (e.g. separate train and
    validation log rows) are merged. ``kept_epoch`` (the epoch the checkpoint kept, chosen by ``kept_by``)
    is starred on every validation curve, the same epoch in every panel; without it each panel stars its own
    best validation value, labelled so.
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
                if kept_epoch is not None and xcol == "epoch":
                    at = sub.index[sub[xcol] == kept_epoch]
                    star = at[-1] if len(at) else None
                    text = f"kept {{:.4g}} (epoch {kept_epoch}{f', by {kept_by}' if kept_by else ''})"
                else:
                    lower_is_better = "loss" in key or "error" in key
                    star = sub[col].idxmin() if lower_is_better else sub[col].idxmax()
                    text = f"best val {{:.4g}} ({x_label.lower()} {{:g}})"
                if star is not None:
                    bx, by = sub.loc[star, xcol], sub.loc[star, col]
                    ax.plot(
                        [bx],
                        [by],
                        marker="*",
                        markersize=14,
                        color=VAL_COLOR,
                        markeredgecolor="black",
                        linestyle="none",
                        label=text.format(by, bx),
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
