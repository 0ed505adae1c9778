"""Figures of the two-route comparison (two-stage vs direct): the metrics side by side with their confidence
intervals, and what the detour through the attributes costs. Used by ``experiments.comparison_report``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._style import LOWER_IS_BETTER, _message_figure, _metric_title, _new_figure, save_figure

_COUNT_KEYS = {"n", "tn", "fp", "fn", "tp", "support", "n_boot", "threshold"}


def plot_comparison(
    metrics: Mapping[str, Mapping[str, float]],
    path: str | Path | None = None,
    title: str = "Two-stage (attributes → Male) vs direct (pixels → Male)",
    metric_names: Sequence[str] | None = None,
    zoom: bool = False,
    ci_label: str = "95% bootstrap confidence interval",
    difference: tuple[float, float, float] | None = None,
    difference_label: str = "Two-stage minus direct accuracy",
) -> Figure:
    """A grid of small panels, one per metric, titled in words ("Worst-group accuracy", "Calibration error
    (ECE)"); in each, one bar per route with its value written on it. ``difference`` (point, low, high;
    proportions) makes the first panel the paired difference with its CI, in points, against 0: the answer
    a reader wants, where two bars of 0.738 and 0.739 say nothing. The axes start at 0 (``zoom=True`` starts
    them near the smallest value, and says so: it makes any gap look large).

    ``metrics`` is ``{"two_stage": {"accuracy": .., "roc_auc": .., "accuracy_ci_low": .., ...}, ...}``.
    ``<metric>_ci_low``/``<metric>_ci_high`` keys become error bars (described by ``ci_label``). ``metric_names`` picks and orders
    the metrics (default: every non-CI, non-count key in first-seen order). ``zoom`` starts each panel's
    y-axis near its smallest value (and says so) so that small differences are visible. The grid has at most
    :data:`MAX_COLUMNS` columns, so the PNG stays within about 1,600 px wide (at 120 dpi) however many
    metrics there are; more metrics add rows.
    """
    routes = list(metrics)
    if metric_names is None:
        seen: list[str] = []
        for m in metrics.values():
            for key in m:
                if key.endswith(("_ci_low", "_ci_high")) or key in _COUNT_KEYS or key in seen:
                    continue
                seen.append(key)
        metric_names = seen
    metric_names = [k for k in metric_names if any(_finite(metrics[a].get(k)) for a in routes)]
    if not routes or not metric_names:
        return _message_figure(title, "no metrics to compare", path)

    palette = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#c53030", "#718096"]
    colors = [palette[i % len(palette)] for i in range(len(routes))]
    labels = [a.replace("_", " ") for a in routes]
    headline = difference is not None and all(_finite(v) for v in difference)
    k, n = len(routes), len(metric_names) + int(headline)
    rows, cols = _comparison_grid(n)
    panel_w, panel_h = (3.7, 2.9) if cols <= 3 else (3.2, 2.7)
    fig = _new_figure(max(5.0, cols * panel_w), rows * panel_h + 0.9)
    any_ci = any_zoomed = False
    x = np.arange(k)
    if headline:
        _difference_panel(fig.add_subplot(rows, cols, 1), difference, difference_label)
        any_ci = True
    for j, key in enumerate(metric_names, start=int(headline)):
        ax = fig.add_subplot(rows, cols, j + 1)
        vals = np.array([_num(metrics[a].get(key)) for a in routes])
        lows = np.array([_num(metrics[a].get(f"{key}_ci_low")) for a in routes])
        highs = np.array([_num(metrics[a].get(f"{key}_ci_high")) for a in routes])
        ax.bar(x, np.nan_to_num(vals), width=0.7, color=colors)
        has_ci = np.isfinite(lows) & np.isfinite(highs) & np.isfinite(vals)
        if has_ci.any():
            any_ci = True
            err = np.abs(np.vstack([vals - lows, highs - vals])[:, has_ci])
            ax.errorbar(
                x[has_ci], vals[has_ci], yerr=err, fmt="none", ecolor="black", elinewidth=1.3, capsize=4
            )
        finite = np.isfinite(vals)
        shown = np.concatenate([vals[finite], lows[has_ci], highs[has_ci]])
        bottom, top = _panel_limits(float(shown.min()), float(shown.max()), zoom)
        any_zoomed |= bottom > 0
        ax.set_ylim(bottom, top)
        for xi, v, ci_top, ci in zip(x, vals, highs, has_ci):
            y = (ci_top if ci else v) if np.isfinite(v) else bottom
            ax.text(
                xi,
                y if bottom > 0 or not np.isfinite(v) else max(y, 0.0),
                _value_text(v),
                ha="center",
                va="bottom",
                fontsize=9,
                rotation=0 if k <= 3 else 90,
            )
        ax.set_xticks(x, labels=labels, fontsize=9.5, rotation=0 if k <= 3 else 30)
        ax.set_title(_metric_title(key), fontsize=11.5, fontweight="bold")
        if key.lower() in LOWER_IS_BETTER:
            ax.set_ylabel("lower is better", fontsize=9)
        ax.tick_params(axis="y", labelsize=8.5)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(title, fontsize=12.5, fontweight="bold")
    notes = [f"error bars: {ci_label}"] if any_ci else []
    if any_zoomed:
        notes.append("zoomed y-axes: a panel's axis may not start at 0")
    if notes:
        fig.supxlabel("; ".join(notes), fontsize=9.5, color="#4a5568")
    return save_figure(fig, path)


def _difference_panel(ax, difference: tuple[float, float, float], label: str) -> None:
    """The paired difference in points with its CI as a bar across 0: on one side of 0, a difference; across
    it, none shown."""
    point, low, high = (100 * float(v) for v in difference)
    colour = "#2f855a" if low > 0 else "#c53030" if high < 0 else "#718096"
    ax.errorbar([point], [0], xerr=[[point - low], [high - point]], fmt="o", color=colour, capsize=6, lw=2)
    ax.axvline(0, color="black", lw=1)
    span = max(abs(low), abs(high), 0.5) * 1.35
    ax.set_xlim(-span, span)
    ax.set_ylim(-1, 1)
    ax.set_yticks([])
    ax.set_xlabel("points (positive: two-stage more accurate)", fontsize=9)
    verdict = (
        "two-stage more accurate"
        if low > 0
        else "direct more accurate"
        if high < 0
        else "no difference shown"
    )
    ax.text(point, 0.35, f"{point:+.2f} [{low:+.2f}, {high:+.2f}]\n{verdict}", ha="center", fontsize=9)
    ax.set_title(f"{label} (paired)", fontsize=11.5, fontweight="bold")
    ax.grid(True, axis="x", alpha=0.3)


MAX_COLUMNS = 4  # 4 panels of 3.2 in at 120 dpi: about 1,540 px


def _comparison_grid(n: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: 2 columns for 2 or 4, 3 up to 9 (3 x 3), then 4 (more rows)."""
    cols = 1 if n == 1 else 2 if n in (2, 4) else 3 if n <= 9 else MAX_COLUMNS
    return math.ceil(n / cols), cols


def _panel_limits(low: float, high: float, zoom: bool) -> tuple[float, float]:
    """A panel's y-range: zoomed near the smallest value when ``zoom`` and every value is positive (so
    0.962 vs 0.981 shows), from 0 otherwise; room above the highest bar for its label, and no needless
    headroom past 1 for scores that live in [0, 1]."""
    if zoom and low > 0:
        spread = max(high - low, 0.01 * abs(high), 1e-9)
        bottom = max(0.0, low - 1.2 * spread)
    else:
        bottom = min(0.0, low)
    room = (high - bottom) or (abs(high) or 1.0)
    top = high + 0.25 * room
    if low >= 0 and high <= 1:
        top = min(top, max(1.0, high + 0.12 * room))
    return bottom, top


def _value_text(v: float) -> str:
    """3 decimals; 4 below 0.1 (calibration errors, gaps), where 3 would round 0.0065 and 0.0126 alike."""
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.4f}" if abs(v) < 0.1 else f"{v:.3f}"


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _finite(v: Any) -> bool:
    return bool(np.isfinite(_num(v)))


def plot_cost_ratios(metrics: Mapping[str, float], path: str | Path | None = None):
    """Horizontal bars of the cost ratios (two-stage ÷ direct) with reference lines at 1 (same cost) and
    2 (the source study's "about twice"); an inference ratio timed in interleaved rounds shows their range
    as whiskers (a ratio of single timings has none, and says so)."""
    labels, values, lows, highs = [], [], [], []
    prefix = "inference_time_ratio_b"
    for b in sorted(
        int(k[len(prefix) :]) for k in metrics if k.startswith(prefix) and k[len(prefix) :].isdigit()
    ):
        timed = f"inference_time_ratio_low_b{b}" in metrics
        labels.append(f"inference time, batch {b}" + ("" if timed else " (one timing)"))
        values.append(metrics[f"inference_time_ratio_b{b}"])
        lows.append(metrics.get(f"inference_time_ratio_low_b{b}", float("nan")))
        highs.append(metrics.get(f"inference_time_ratio_high_b{b}", float("nan")))
    for key, label in (
        ("training_time_ratio", "training time (one timing)"),
        ("size_ratio", "bundle size"),
        ("param_ratio", "parameters"),
    ):
        labels.append(label)
        values.append(metrics.get(key, float("nan")))
        lows.append(float("nan"))
        highs.append(float("nan"))
    fig = _new_figure(7.5, 0.55 * len(labels) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(labels))[::-1]
    shown = np.nan_to_num(np.asarray(values, dtype=float))
    ax.barh(y, shown, color=["#dd6b20" if v > 1 else "#2b6cb0" for v in shown], height=0.6)
    ranged = np.isfinite(lows) & np.isfinite(highs)
    if ranged.any():
        err = np.vstack([shown - np.asarray(lows), np.asarray(highs) - shown])[:, ranged]
        ax.errorbar(shown[ranged], y[ranged], xerr=np.abs(err), fmt="none", ecolor="black", capsize=4)
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
    ax.set_xlabel(
        "two-stage ÷ direct (1 = same cost; above 1 = the detour costs more)"
        + ("; whiskers: the range of interleaved timing rounds" if ranged.any() else "")
    )
    ax.set_title("What the detour through 39 attributes costs", fontsize=12, fontweight="bold")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return save_figure(fig, path)
