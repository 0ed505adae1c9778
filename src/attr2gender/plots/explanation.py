"""Figures that explain stage two's Male decision: attribute importance (and how a concept edit changed it),
one image's waterfall of pushes, interventions on the concepts, and the concept-quality front. Used by
``experiments.route_run``, ``experiments.comparison_run`` and :meth:`Attr2GenderPipeline.explain`'s callers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ._style import (
    FEMALE_COLOR,
    MALE_COLOR,
    NEUTRAL_COLOR,
    _message_figure,
    _new_figure,
    save_figure,
)


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
