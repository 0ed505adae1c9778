"""Accuracy per group, slice and cell of people (with bootstrap CIs): where the average hides the people a
shortcut fails (Male x makeup groups, fairness slices, age band x gender and race x gender cells)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .core import _as_binary, _prob_of_positive, accuracy_ci, markdown_table, proportion_ci

# --------------------------------------------------------------------------------------------------
# groups: where the average hides the people a shortcut fails
# --------------------------------------------------------------------------------------------------

MIN_GROUP_SIZE = 30  # below this a group's accuracy is reported as "too few", never as a number


def group_accuracy_table(
    y_true: Any,
    prob_male: Any,
    masks: Mapping[str, Any],
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_size: int = MIN_GROUP_SIZE,
) -> pd.DataFrame:
    """Male accuracy per group with a percentile bootstrap CI.

    ``masks``: ``{group name: boolean mask over the rows}`` (groups may overlap). Returns one row per group
    (index ``group``): ``n``, ``accuracy``, ``ci_low``, ``ci_high``, ``enough`` (n >= ``min_size``) and
    ``note`` ("", "too few (n < 30)" or "empty"). Accuracy and CI are NaN for groups that are not enough.
    """
    y = _as_binary(y_true).reshape(-1)
    pred = (_prob_of_positive(prob_male) >= threshold).astype(np.int64)
    if y.shape != pred.shape:
        raise ValueError(f"y_true and prob_male differ in length: {y.shape} vs {pred.shape}")
    rows = []
    for name, mask in masks.items():
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.shape != y.shape:
            raise ValueError(f"group {name!r}: mask has {mask.size} rows, the predictions {y.size}")
        n = int(mask.sum())
        if n >= min_size:
            acc, low, high = accuracy_ci(y[mask], pred[mask], n_boot=n_boot, seed=seed, alpha=alpha)
            note = ""
        else:
            acc = low = high = float("nan")
            note = "empty" if n == 0 else f"too few ({n} < {min_size})"
        rows.append(
            {
                "group": name,
                "n": n,
                "accuracy": acc,
                "ci_low": low,
                "ci_high": high,
                "enough": n >= min_size,
                "note": note,
            }
        )
    return pd.DataFrame(
        rows, columns=["group", "n", "accuracy", "ci_low", "ci_high", "enough", "note"]
    ).set_index("group")


def slice_table(
    y_true: Any,
    prob_male: Any,
    masks: Mapping[str, Any],
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_size: int = MIN_GROUP_SIZE,
) -> pd.DataFrame:
    """Per slice: Male accuracy, false-male rate (women called men, over the slice's women) and
    false-female rate (men called women, over its men), each with a percentile bootstrap CI.

    Extends :func:`group_accuracy_table` (same ``n``/``enough``/``note`` columns; accuracy is NaN for a
    slice of fewer than ``min_size`` images) with ``women``, ``men``, ``false_male_rate`` (+ ``_low`` /
    ``_high``) and ``false_female_rate`` (+ ``_low``/``_high``); a rate is NaN where its denominator is
    under ``min_size`` too, so no number rests on a handful of people."""
    table = group_accuracy_table(
        y_true,
        prob_male,
        masks,
        threshold=threshold,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        min_size=min_size,
    )
    y = _as_binary(y_true).reshape(-1)
    pred = (_prob_of_positive(prob_male) >= threshold).astype(np.int64)
    extra = []
    for mask in masks.values():
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        women, men = mask & (y == 0), mask & (y == 1)
        row = {"women": int(women.sum()), "men": int(men.sum())}
        for key, group, wrong_label in (("false_male_rate", women, 1), ("false_female_rate", men, 0)):
            if group.sum() >= min_size:
                point, low, high = proportion_ci(pred[group] == wrong_label, n_boot, seed, alpha)
            else:
                point = low = high = float("nan")
            row |= {key: point, f"{key}_low": low, f"{key}_high": high}
        extra.append(row)
    return pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1)


def cell_table(
    y_true: Any,
    prob_male: Any,
    cells: Mapping[str, Mapping[str, Any]],
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_size: int = MIN_GROUP_SIZE,
) -> pd.DataFrame:
    """Per cell of each axis (``{"age_band": {"70+": mask, ...}, "race": {...}}``, as from
    :func:`attr2gender.data.groups.cell_masks`): ``n``, ``women``, ``men``, Male ``accuracy``, ``female_recall``
    (women called women) and ``male_recall``, each with ``_low`` / ``_high`` (95 % percentile bootstrap).
    A number resting on fewer than ``min_size`` photos is NaN, with ``note`` saying so (see :func:`slice_table`)."""
    rows = []
    for axis, masks in cells.items():
        table = slice_table(
            y_true, prob_male, masks, threshold, n_boot=n_boot, seed=seed, alpha=alpha, min_size=min_size
        )
        for name, r in table.iterrows():
            rows.append(
                {
                    "axis": axis,
                    "cell": str(name),
                    "n": int(r["n"]),
                    "women": int(r["women"]),
                    "men": int(r["men"]),
                    "accuracy": r["accuracy"],
                    "accuracy_low": r["ci_low"],
                    "accuracy_high": r["ci_high"],
                    # recall = 1 - the rate of the other label, its CI flipped
                    "female_recall": 1 - r["false_male_rate"],
                    "female_recall_low": 1 - r["false_male_rate_high"],
                    "female_recall_high": 1 - r["false_male_rate_low"],
                    "male_recall": 1 - r["false_female_rate"],
                    "male_recall_low": 1 - r["false_female_rate_high"],
                    "male_recall_high": 1 - r["false_female_rate_low"],
                    "note": r["note"],
                }
            )
    columns = [
        "axis", "cell", "n", "women", "men", "accuracy", "accuracy_low", "accuracy_high", "female_recall",
        "female_recall_low", "female_recall_high", "male_recall", "male_recall_low", "male_recall_high", "note",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def cell_table_markdown(table: pd.DataFrame) -> str:
    """:func:`cell_table` for a report: each rate with its CI and count, "too few" where it rests on fewer
    photos than the table's minimum."""

    def rate(r, key: str, n: int) -> str:
        value = r[key]
        if not np.isfinite(value):
            return f"too few (n={n})" if n else "none"
        return f"{100 * value:.1f} [{100 * r[f'{key}_low']:.1f}, {100 * r[f'{key}_high']:.1f}] (n={n})"

    rows = [
        {
            "axis": r["axis"].replace("_", " "),
            "cell": r["cell"],
            "accuracy % [95% CI]": rate(r, "accuracy", int(r["n"])),
            "women called women %": rate(r, "female_recall", int(r["women"])),
            "men called men %": rate(r, "male_recall", int(r["men"])),
        }
        for _, r in table.iterrows()
    ]
    return markdown_table(rows)


def cell_key(axis: str, cell: str) -> str:
    """A metric-name-safe key of a cell: ``age_70_up``, ``age_10_19``, ``race_white``."""
    safe = "".join(c if c.isalnum() else "_" for c in str(cell).replace("+", "_up")).strip("_").lower()
    return f"{'age' if axis == 'age_band' else axis}_{safe}"


def worst_cell(
    table: pd.DataFrame,
    axis: str = "age_band",
    skip: Sequence[str] = (),
    genders: Sequence[str] = ("women", "men"),
) -> dict[str, Any]:
    """The lowest recall of ``genders`` (``women``: female recall, ``men``: male recall) among ``axis``'s
    cells (those with enough photos, not in ``skip``): ``{"recall", "low", "high", "cell", "gender", "n"}``;
    recall NaN when no cell has enough."""
    rows = table[(table["axis"] == axis) & ~table["cell"].isin(list(skip))]
    best = {
        "recall": float("nan"),
        "low": float("nan"),
        "high": float("nan"),
        "cell": "",
        "gender": "",
        "n": 0,
    }
    for _, r in rows.iterrows():
        for gender, key, n in (("women", "female_recall", r["women"]), ("men", "male_recall", r["men"])):
            if gender not in genders:
                continue
            value = r[key]
            if np.isfinite(value) and (np.isnan(best["recall"]) or value < best["recall"]):
                best = {
                    "recall": float(value),
                    "low": float(r[f"{key}_low"]),
                    "high": float(r[f"{key}_high"]),
                    "cell": str(r["cell"]),
                    "gender": gender,
                    "n": int(n),
                }
    return best


def cell_metrics(table: pd.DataFrame, prefix: str) -> dict[str, float]:
    """Flat metrics of :func:`cell_table`: ``<prefix>_accuracy_<cell>``, ``_female_recall_<cell>``,
    ``_male_recall_<cell>`` and ``_n_<cell>`` (numbers only where the cell has enough photos)."""
    out: dict[str, float] = {}
    for _, r in table.iterrows():
        key = cell_key(r["axis"], r["cell"])
        out[f"{prefix}_n_{key}"] = float(r["n"])
        for name in ("accuracy", "female_recall", "male_recall"):
            if np.isfinite(r[name]):
                out[f"{prefix}_{name}_{key}"] = float(r[name])
    return out


def cross_table(
    y_true: Any, prob_male: Any, rows: Any, columns: Any, threshold: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy, n): Male accuracy and the photo count of every ``rows`` x ``columns`` cell (e.g. age band x
    race; "" values are left out), NaN accuracy where a cell is empty. Values that start with a number
    (age bands: "0-9", "70+") are ordered by it, the others by name."""
    y = _as_binary(y_true).reshape(-1)
    correct = ((_prob_of_positive(prob_male) >= threshold).astype(np.int64) == y).astype(float)
    frame = pd.DataFrame(
        {"r": np.asarray(rows, dtype=object), "c": np.asarray(columns, dtype=object), "ok": correct}
    )
    frame = frame[(frame["r"] != "") & (frame["c"] != "")]

    def order(values) -> list:
        def key(v):
            digits = "".join(itertools.takewhile(str.isdigit, str(v)))
            return (0, int(digits), str(v)) if digits else (1, 0, str(v))

        return sorted(dict.fromkeys(values), key=key)

    index, cols = order(frame["r"].tolist()), order(frame["c"].tolist())
    accuracy = frame.pivot_table(index="r", columns="c", values="ok", aggfunc="mean").reindex(
        index=index, columns=cols
    )
    n = frame.pivot_table(index="r", columns="c", values="ok", aggfunc="size").reindex(
        index=index, columns=cols
    )
    return accuracy, n.fillna(0).astype(int)


def slice_metrics(table: pd.DataFrame, overall_accuracy: float) -> dict[str, float]:
    """``worst_slice_accuracy``, ``worst_slice_gap`` (overall minus it) and ``slice_accuracy_<name>`` for
    every slice with enough images, from :func:`slice_table`."""
    eligible = table[table["enough"]]
    worst = float(eligible["accuracy"].min()) if len(eligible) else float("nan")
    out = {"worst_slice_accuracy": worst, "worst_slice_gap": float(overall_accuracy) - worst}
    for name, row in eligible.iterrows():
        out[f"slice_accuracy_{name}"] = float(row["accuracy"])
    return out


def slice_table_markdown(table: pd.DataFrame) -> str:
    """:func:`slice_table` for a report: "too few" instead of a number for small slices and rates."""

    def shown(r, key: str, n: int) -> str:
        if not np.isfinite(r[key]):
            return f"too few ({n} < {MIN_GROUP_SIZE})" if n else "none"
        return f"{r[key]:.3f} [{r[f'{key}_low']:.3f}, {r[f'{key}_high']:.3f}]"

    rows = []
    for name, r in table.iterrows():
        accuracy = (
            f"{r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["enough"] else r["note"]
        )
        rows.append(
            {
                "slice": name,
                "images": int(r["n"]),
                "Male accuracy [95% CI]": accuracy,
                "false-male rate (women called men)": shown(r, "false_male_rate", int(r["women"])),
                "false-female rate (men called women)": shown(r, "false_female_rate", int(r["men"])),
            }
        )
    return markdown_table(rows)


def worst_group_score(scores: Any, groups: Any, min_size: int = MIN_GROUP_SIZE) -> float:
    """The one worst-group rule, for reports, model selection and checkpoints alike: the lowest mean of
    ``scores`` (per row: 1/0 for right/wrong, or any per-row score) among the groups with at least
    ``min_size`` rows; NaN when no group has that many (a smaller group is reported, never ranked on)."""
    scores, groups = np.asarray(scores, dtype=np.float64), np.asarray(groups)
    if scores.shape != groups.shape:
        raise ValueError(f"scores and groups differ in shape: {scores.shape} vs {groups.shape}")
    means = [scores[groups == g].mean() for g in np.unique(groups) if (groups == g).sum() >= min_size]
    return float(min(means)) if means else float("nan")


def group_metrics(table: pd.DataFrame, overall_accuracy: float) -> dict[str, float]:
    """Flat metrics from :func:`group_accuracy_table`: ``worst_group_accuracy`` (NaN when no group is big
    enough), ``worst_group_gap`` (overall accuracy minus it), and ``group_accuracy_<name>`` /
    ``group_n_<name>`` per group (accuracy only where the group is big enough)."""
    eligible = table[table["enough"]]
    worst = float(eligible["accuracy"].min()) if len(eligible) else float("nan")
    out = {"worst_group_accuracy": worst, "worst_group_gap": float(overall_accuracy) - worst}
    for name, row in table.iterrows():
        out[f"group_n_{name}"] = float(row["n"])
        if row["enough"]:
            out[f"group_accuracy_{name}"] = float(row["accuracy"])
    return out


def worst_group_name(table: pd.DataFrame) -> str:
    eligible = table[table["enough"]]
    return str(eligible["accuracy"].idxmin()) if len(eligible) else ""


def group_table_markdown(table: pd.DataFrame) -> str:
    """The table for a report: "too few" instead of a number where a group is small."""
    rows = []
    for name, r in table.iterrows():
        shown = f"{r['accuracy']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["enough"] else r["note"]
        rows.append({"group": name, "images": int(r["n"]), "accuracy [95% CI]": shown})
    return markdown_table(rows)
