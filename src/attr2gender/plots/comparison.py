"""Figures of the two-route comparison (two-stage vs direct): the metrics side by side with their confidence
intervals, and what the detour through the attributes costs. Used by ``experiments.comparison_report``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._style import _message_figure, _new_figure, _pretty_metric, save_figure

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
