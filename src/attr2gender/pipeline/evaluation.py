"""Evaluate a fitted pipeline on labelled images: one entry point, :func:`evaluate_pipeline`.

It composes the library's measures, it does not redo them: accuracy with its CI
(:func:`attr2gender.metrics.accuracy_ci`), AUC, calibration (ECE with its CI, Brier), CelebA's groups
(:func:`attr2gender.metrics.group_accuracy_table`), a user's own slices (:func:`slice_report`), CelebA-C
(:func:`attr2gender.pipeline.robustness.corruption_accuracy`) and, for the two-stage route, concept
quality (:func:`attr2gender.metrics.concept_quality`). :func:`evaluate_probabilities` is its arithmetic
half, for probabilities already computed (the benchmarks score many stage twos on one stage one)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..data.corruptions import CORRUPTIONS
from ..data.groups import GROUPINGS, group_masks, masks_from_frame
from ..metrics import (
    MIN_GROUP_SIZE,
    Evaluation,
    accuracy_ci,
    binary_metrics,
    brier_score,
    concept_quality,
    expected_calibration_error_ci,
    group_accuracy_table,
    group_metrics,
    slice_metrics,
    slice_table,
    worst_group_name,
)
from .inputs import expand_images
from .robustness import corruption_accuracy
from .two_stage import Attr2GenderPipeline

# The attributes CelebA's groups are made of (Male x makeup, Male x blond: attr2gender.data.groups).
GROUP_ATTRIBUTES = tuple(dict.fromkeys(a for names, _ in GROUPINGS.values() for a in names))
_NAN = float("nan")


def _slices(
    y: np.ndarray,
    prob: np.ndarray,
    groups: pd.DataFrame,
    threshold: float,
    n_boot: int,
    seed: int,
    min_size: int,
) -> pd.DataFrame:
    """:func:`slice_report`'s table from P(Male) per image (NaN: not scored, left out and counted)."""
    scored = ~np.isnan(prob)
    masks = {"all": np.ones(len(y), dtype=bool)} | masks_from_frame(groups.reset_index(drop=True))
    table = slice_table(
        y[scored],
        prob[scored],
        {name: mask[scored] for name, mask in masks.items()},
        threshold=threshold,
        n_boot=n_boot,
        seed=seed,
        min_size=min_size,
    )
    overall = float(table.loc["all", "accuracy"]) if table.loc["all", "enough"] else _NAN
    slices = table.drop(index="all")
    flat = slice_metrics(slices, overall)
    table.attrs = {
        "skipped": int((~scored).sum()),
        "worst_slice": worst_group_name(slices),
        "worst_slice_accuracy": flat["worst_slice_accuracy"],
        "worst_slice_gap": flat["worst_slice_gap"],
    }
    return table


def _check_groups(groups) -> None:
    if not isinstance(groups, pd.DataFrame):
        raise TypeError(
            "groups must be a pandas DataFrame with one row per image and one column per grouping, "
            f"got {type(groups).__name__}"
        )


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
    _check_groups(groups)
    y = np.asarray(y_true).reshape(-1)
    frame = _predict(pipeline, images, "slice_report", predict_kwargs)
    if not (len(frame) == len(y) == len(groups)):
        raise ValueError(
            f"{len(frame)} images, {len(y)} labels (y_true) and {len(groups)} group rows: give one label and "
            "one groups row per image, in the same order"
        )
    prob = frame["male_probability"].to_numpy(dtype=float)
    return _slices(y, prob, groups, pipeline.threshold, n_boot, seed, min_size)


def _predict(pipeline, images, caller: str, predict_kwargs: dict) -> pd.DataFrame:
    if predict_kwargs.pop("faces", "center") != "center":
        raise ValueError(f'{caller} scores one face per image: drop faces= (it is always "center")')
    return pipeline.predict(images, progress=predict_kwargs.pop("progress", None), **predict_kwargs)


def _male_labels(male) -> np.ndarray:
    """0/1 labels from 0/1, booleans or CelebA's -1/1."""
    y = np.asarray(male, dtype=float).reshape(-1)
    if not np.isin(y, (-1.0, 0.0, 1.0)).all():
        raise ValueError("Male labels must be 0/1, booleans or -1/1")
    return (y > 0).astype(np.int64)


def _binary_frame(attributes: pd.DataFrame, columns: Sequence[str], rows: np.ndarray) -> pd.DataFrame:
    """The named columns of the true attributes as 0/1 (CelebA's -1/1 too), on the scored rows."""
    return (attributes[list(columns)].reset_index(drop=True).loc[rows] > 0).astype(int).reset_index(drop=True)


def evaluate_probabilities(
    male,
    prob,
    threshold: float = 0.5,
    attributes: pd.DataFrame | None = None,
    groups: pd.DataFrame | None = None,
    attribute_probabilities: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_size: int = MIN_GROUP_SIZE,
    accuracy_n_boot: int | None = None,
) -> Evaluation:
    """:func:`evaluate_pipeline`'s measures from P(Male) already computed (no CelebA-C: that needs images).

    ``male``: 0/1 (bool, -1/1) truth; ``prob``: P(Male) per image, NaN where nothing was predicted (left out,
    counted in ``skipped``). ``attributes``: the true attributes, one row per image (CelebA's columns; 0/1
    or -1/1): with Heavy_Makeup, Wearing_Lipstick and Blond_Hair they give the groups; with the 39 of
    :data:`attr2gender.data.STAGE_ONE_ATTRIBUTES` and ``attribute_probabilities`` (stage one's (n, 39)
    outputs) the concept quality. ``groups``: a user's groupings, as :func:`slice_report` reads them.
    Bootstraps use ``n_boot`` resamples (``accuracy_n_boot`` for the accuracy's CI, when given) and ``seed``."""
    y_all = _male_labels(male)
    p_all = np.asarray(prob, dtype=float).reshape(-1)
    if y_all.shape != p_all.shape:
        raise ValueError(f"{len(y_all)} Male labels but {len(p_all)} probabilities")
    given = {"attributes": attributes, "groups": groups, "attribute_probabilities": attribute_probabilities}
    for name, rows in given.items():
        if rows is not None and len(rows) != len(y_all):
            raise ValueError(f"{len(rows)} rows of {name} for {len(y_all)} images: give one row per image")
    scored = ~np.isnan(p_all)
    y, p = y_all[scored], p_all[scored]
    acc, low, high = accuracy_ci(
        y, p, threshold, n_boot=n_boot if accuracy_n_boot is None else accuracy_n_boot, seed=seed
    )
    ece, ece_low, ece_high = (
        expected_calibration_error_ci(y, p, n_boot=n_boot, seed=seed) if len(y) else (_NAN, _NAN, _NAN)
    )
    evaluation = Evaluation(
        n=int(scored.sum()),
        accuracy=acc,
        ci_low=low,
        ci_high=high,
        auc=binary_metrics(y, p, threshold=threshold)["roc_auc"],
        ece=ece,
        ece_ci=(ece_low, ece_high),
        brier=brier_score(y, p),
        threshold=float(threshold),
        skipped=int((~scored).sum()),
    )
    if attributes is not None and set(GROUP_ATTRIBUTES) <= set(attributes.columns):
        truth = _binary_frame(attributes, GROUP_ATTRIBUTES, scored)
        table = group_accuracy_table(
            y, p, group_masks(truth, male=y), threshold=threshold, n_boot=n_boot, seed=seed, min_size=min_size
        )
        flat = group_metrics(table, acc)
        worst = worst_group_name(table)
        evaluation.groups = table
        evaluation.worst_group = worst
        evaluation.worst_group_accuracy = flat["worst_group_accuracy"]
        evaluation.worst_group_gap = flat["worst_group_gap"]
        if worst:
            evaluation.worst_group_ci = (
                float(table.loc[worst, "ci_low"]),
                float(table.loc[worst, "ci_high"]),
            )
    if groups is not None:
        _check_groups(groups)
        evaluation.slices = _slices(y_all, p_all, groups, threshold, n_boot, seed, min_size)
    if (
        attributes is not None
        and attribute_probabilities is not None
        and set(STAGE_ONE_ATTRIBUTES) <= set(attributes.columns)
    ):
        truth = _binary_frame(attributes, STAGE_ONE_ATTRIBUTES, scored).to_numpy()
        outputs = np.asarray(attribute_probabilities, dtype=float)[scored]
        evaluation.concepts = concept_quality(truth, outputs, STAGE_ONE_ATTRIBUTES)
    return evaluation


def evaluate_pipeline(
    pipeline,
    images,
    male,
    attributes: pd.DataFrame | None = None,
    groups: pd.DataFrame | None = None,
    corruptions: Sequence[str] = (),
    n_boot: int = 1000,
    seed: int = 0,
    min_size: int = MIN_GROUP_SIZE,
    batch_size: int | None = None,
    progress: bool = False,
    **predict_kwargs,
) -> Evaluation:
    """Everything the library measures about a fitted pipeline, on labelled images, in one call.

    ``images``: anything ``pipeline.predict`` reads (paths, a folder, PIL images, arrays), one face per
    image; ``male``: one Male label per image (0/1, bool or CelebA's -1/1). Optional, one row per image:
    ``attributes``, the true CelebA attributes (a DataFrame; 0/1 or -1/1), for accuracy per Male x makeup
    and Male x blond group and, for a two-stage pipeline, the quality of stage one's 39 concepts;
    ``groups``, a user's own groupings, for :func:`slice_report`'s table. ``corruptions``: CelebA-C names
    (:data:`attr2gender.data.corruptions.CORRUPTIONS` for all six), each scored on the readable images read
    as they are (``align="none"``, CelebA-C's protocol) by :func:`~attr2gender.pipeline.robustness.corruption_accuracy`.

    One ``predict`` pass (``batch_size``, ``progress`` and ``predict_kwargs``, e.g. ``align``, go to it)
    gives every number but CelebA-C's; bootstraps use ``n_boot`` resamples and ``seed``. Returns an
    :class:`Evaluation`; ``.summary()`` flattens it."""
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose among {CORRUPTIONS}")
    if groups is not None:
        _check_groups(groups)
    sources = [source for _, source in expand_images(images)]
    y = _male_labels(male)
    if len(y) != len(sources):
        raise ValueError(f"{len(sources)} images but {len(y)} Male labels: give one label per image")
    frame = _predict(
        pipeline,
        sources,
        "evaluate_pipeline",
        predict_kwargs | {"batch_size": batch_size, "progress": progress},
    )
    prob = frame["male_probability"].to_numpy(dtype=float)
    two_stage = isinstance(pipeline, Attr2GenderPipeline)
    evaluation = evaluate_probabilities(
        y,
        prob,
        pipeline.threshold,
        attributes=attributes,
        groups=groups,
        attribute_probabilities=frame[list(STAGE_ONE_ATTRIBUTES)].to_numpy(dtype=float)
        if two_stage
        else None,
        n_boot=n_boot,
        seed=seed,
        min_size=min_size,
    )
    if corruptions:
        scored = ~np.isnan(prob)
        evaluation.corruptions = corruption_accuracy(
            pipeline,
            [s for s, ok in zip(sources, scored) if ok],
            y[scored],
            corruptions=tuple(corruptions),
            seed=seed,
            n_boot=n_boot,
            batch_size=batch_size,
            progress=progress,
        )
    return evaluation
