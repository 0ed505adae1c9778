"""Figures of one model's test results: the confusion matrix, correct and wrong examples, accuracy per group
(with confidence intervals), reliability (calibration) and stage one's per-attribute accuracy. Used by
``experiments.route_run`` and ``experiments.comparison_report``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..metrics import to_numpy
from ._style import (
    CORRECT_COLOR,
    FEMALE_COLOR,
    MALE_COLOR,
    NEUTRAL_COLOR,
    ROUTE_COLORS,
    WRONG_COLOR,
    _as_label_array,
    _grid_shape,
    _message_figure,
    _new_figure,
    _show_image,
    _to_display_image,
    save_figure,
)


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


def plot_cell_heatmap(
    accuracy: pd.DataFrame,
    counts: pd.DataFrame,
    path: str | Path | None = None,
    title: str = "Male accuracy by age band and race",
    min_count: int = 10,
) -> Figure:
    """A heatmap of ``accuracy`` (rows x columns, e.g. age band x race; values in [0, 1]) with each cell's
    accuracy and photo count written in it. A cell of fewer than ``min_count`` photos is grey, its number
    shown only as "n=": too few to colour as a rate."""
    if accuracy.empty:
        return _message_figure(title, "no cell with photos", path)
    values = accuracy.to_numpy(dtype=float)
    n = counts.reindex(index=accuracy.index, columns=accuracy.columns).fillna(0).to_numpy(dtype=int)
    shown = np.where(n >= min_count, values, np.nan)
    rows, cols = values.shape
    fig = _new_figure(1.3 * cols + 2.6, 0.55 * rows + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    # Colour spans 70-100 %: every cell of a usable model lies there, and the weak ones must stand out.
    cmap = colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=0.7, vmax=1.0, aspect="auto")
    for i in range(rows):
        for j in range(cols):
            if n[i, j] == 0:
                continue
            text = f"{100 * values[i, j]:.0f}%\nn={n[i, j]}" if n[i, j] >= min_count else f"n={n[i, j]}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(cols), [str(c) for c in accuracy.columns])
    ax.set_yticks(range(rows), [str(r) for r in accuracy.index])
    ax.set_xlabel(str(accuracy.columns.name or ""))
    ax.set_ylabel(str(accuracy.index.name or ""))
    fig.colorbar(im, ax=ax, label="Male accuracy (colour from 70 %)", shrink=0.8)
    ax.set_title(title, fontsize=11)
    return save_figure(fig, path)


def plot_cell_recall(cells: pd.DataFrame, path: str | Path | None = None, title: str = "") -> Figure:
    """Female and male recall per age band (from :func:`attr2gender.metrics.cell_table`), with 95 % CIs and
    each cell's n under its band: where one gender is called the other."""
    rows = cells[cells["axis"] == "age_band"]
    if rows.empty:
        return _message_figure(title or "Recall by age band", "no ages known", path)
    fig = _new_figure(max(6.0, 0.9 * len(rows) + 2.0), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    for offset, key, colour, label in (
        (-0.18, "female_recall", FEMALE_COLOR, "women called women"),
        (0.18, "male_recall", MALE_COLOR, "men called men"),
    ):
        value = rows[key].to_numpy(dtype=float)
        low = np.nan_to_num(value - rows[f"{key}_low"].to_numpy(dtype=float))
        high = np.nan_to_num(rows[f"{key}_high"].to_numpy(dtype=float) - value)
        ax.bar(x + offset, value, 0.36, yerr=[low, high], capsize=2, color=colour, label=label)
    ax.set_xticks(
        x, [f"{c}\n{w}F / {m}M" for c, w, m in zip(rows["cell"], rows["women"], rows["men"])], fontsize=8
    )
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("recall (95 % CI)")
    ax.axhline(0.92, color=NEUTRAL_COLOR, lw=0.8, ls="--")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Recall by age band", fontsize=11)
    return save_figure(fig, path)
