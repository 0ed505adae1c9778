"""Evaluate a fitted pipeline on a user's own labelled images, sliced by the user's own groups."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.groups import masks_from_frame
from ..metrics import MIN_GROUP_SIZE, slice_metrics, slice_table


def slice_report(
    pipeline,
    images,
    y_true,
    groups: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    min_size: int = MIN_GROUP_SIZE,
    **predict_kwargs,
) -> pd.DataFrame:
    """Male accuracy, false-male and false-female rates with 95 % bootstrap CIs, per slice of ``groups``.

    ``images``: anything ``pipeline.predict`` reads (paths, a folder, PIL images, arrays); ``y_true``: one
    Male label per image (0/1, bool or CelebA's -1/1); ``groups``: a DataFrame with one row per image and one
    column per grouping. A boolean (or 0/1) column gives two slices, ``col`` and ``not_col``; any other column
    one slice per value (``age=30-39``). A slice of fewer than ``min_size`` images says "too few" instead of
    a number. Images that could not be read or held no usable face are left out of every slice and counted
    in ``attrs["skipped"]``; the row ``all`` covers every scored image. ``attrs`` also holds
    ``worst_slice``, ``worst_slice_accuracy`` and ``worst_slice_gap``.

    ``predict_kwargs`` go to ``predict`` (``align``, ``fallback``, ``batch_size`` ...); one row per image, so
    ``faces`` is always ``"center"``."""
    if not isinstance(groups, pd.DataFrame):
        raise TypeError(
            "groups must be a pandas DataFrame with one row per image and one column per grouping, "
            f"got {type(groups).__name__}"
        )
    y = np.asarray(y_true).reshape(-1)
    if predict_kwargs.pop("faces", "center") != "center":
        raise ValueError('slice_report scores one face per image: drop faces= (it is always "center")')
    frame = pipeline.predict(images, progress=predict_kwargs.pop("progress", None), **predict_kwargs)
    if not (len(frame) == len(y) == len(groups)):
        raise ValueError(
            f"{len(frame)} images, {len(y)} labels (y_true) and {len(groups)} group rows: give one label and "
            "one groups row per image, in the same order"
        )
    prob = frame["male_probability"].to_numpy(dtype=float)
    scored = ~np.isnan(prob)
    masks = {"all": np.ones(len(y), dtype=bool)} | masks_from_frame(groups.reset_index(drop=True))
    table = slice_table(
        y[scored],
        prob[scored],
        {name: mask[scored] for name, mask in masks.items()},
        threshold=pipeline.threshold,
        n_boot=n_boot,
        seed=seed,
        min_size=min_size,
    )
    overall = float(table.loc["all", "accuracy"]) if table.loc["all", "enough"] else float("nan")
    flat = slice_metrics(table.drop(index="all"), overall)
    eligible = table.drop(index="all")
    eligible = eligible[eligible["enough"]]
    table.attrs = {
        "skipped": int((~scored).sum()),
        "worst_slice": str(eligible["accuracy"].idxmin()) if len(eligible) else "",
        "worst_slice_accuracy": flat["worst_slice_accuracy"],
        "worst_slice_gap": flat["worst_slice_gap"],
    }
    return table
