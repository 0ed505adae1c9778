"""Groups of people defined by true attributes: the ones CelebA's shortcuts fail.

Both routes learn "makeup means female" from CelebA, so accuracy is lowest exactly for the people that
shortcut misdescribes: women without makeup or lipstick and men with either. A *grouping* splits images
into Male x something; worst-group accuracy is the accuracy of the worst group that has enough images.

    makeup   Male x (Heavy_Makeup or Wearing_Lipstick)   4 groups  (used by group-robust training)
    blond    Male x Blond_Hair                          4 groups  (Sagawa et al. 2020's CelebA groups)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .attributes import ATTRIBUTE_NAMES, STAGE_ONE_ATTRIBUTES, TARGET

# grouping name -> (the attributes whose OR is the second axis, its short label)
GROUPINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "makeup": (("Heavy_Makeup", "Wearing_Lipstick"), "makeup"),
    "blond": (("Blond_Hair",), "blond"),
}
# The grouping group-robust training balances, reweights and takes the worst of.
TRAINING_GROUPING = "makeup"
# Fairness slices reported for both routes (each attribute with and without), beside the blond groups.
SLICE_ATTRIBUTES = ("Young", "Pale_Skin", "Eyeglasses", "Wearing_Hat", "Heavy_Makeup", "Bald")


def group_names(grouping: str) -> tuple[str, ...]:
    """Names of a grouping's 4 groups, in group-id order: id = 2 * male + has_attribute."""
    _, label = _spec(grouping)
    return (f"female_no_{label}", f"female_{label}", f"male_no_{label}", f"male_{label}")


def _spec(grouping: str) -> tuple[tuple[str, ...], str]:
    if grouping not in GROUPINGS:
        raise ValueError(f"unknown grouping {grouping!r}; choose one of {sorted(GROUPINGS)}")
    return GROUPINGS[grouping]


def group_ids(attributes, male=None, grouping: str = TRAINING_GROUPING) -> np.ndarray:
    """Group id (0..3, see :func:`group_names`) per row.

    ``attributes``: a 0/1 frame with the named columns (``Male`` too unless ``male`` is given), or an
    (n, 39) array in ``STAGE_ONE_ATTRIBUTES`` order, or an (n, 40) array in file order."""
    names, _ = _spec(grouping)
    if isinstance(attributes, pd.DataFrame):
        has = attributes[list(names)].to_numpy().astype(bool).any(axis=1)
        male = attributes[TARGET].to_numpy() if male is None else male
    else:
        array = np.asarray(attributes)
        if array.ndim != 2 or array.shape[1] not in (len(STAGE_ONE_ATTRIBUTES), len(ATTRIBUTE_NAMES)):
            raise ValueError(f"attributes must be an (n, 39) or (n, 40) array, got shape {array.shape}")
        order = STAGE_ONE_ATTRIBUTES if array.shape[1] == len(STAGE_ONE_ATTRIBUTES) else ATTRIBUTE_NAMES
        has = array[:, [order.index(n) for n in names]].astype(bool).any(axis=1)
        if male is None:
            if order is STAGE_ONE_ATTRIBUTES:
                raise ValueError("pass male= with an (n, 39) attribute array (Male is not among its columns)")
            male = array[:, ATTRIBUTE_NAMES.index(TARGET)]
    male = np.asarray(male).astype(bool)
    if len(male) != len(has):
        raise ValueError(f"{len(has)} attribute rows but {len(male)} Male labels")
    return (2 * male + has).astype(np.int64)


def group_masks(attributes, male=None, groupings=tuple(GROUPINGS)) -> dict[str, np.ndarray]:
    """``{group name: boolean mask}`` for every group of every named grouping."""
    out: dict[str, np.ndarray] = {}
    for grouping in groupings:
        ids = group_ids(attributes, male, grouping)
        for k, name in enumerate(group_names(grouping)):
            out[name] = ids == k
    return out


def slice_masks(attributes: pd.DataFrame, names=SLICE_ATTRIBUTES) -> dict[str, np.ndarray]:
    """``{slice name: boolean mask}`` from the true attributes (a 0/1 or -1/1 frame with ``Male`` and the
    named columns): ``Young`` and ``not_Young`` for each named attribute, then the four Blond_Hair x Male
    groups. Slices overlap; every image is in exactly one of each pair."""
    missing = [c for c in (*names, TARGET, "Blond_Hair") if c not in attributes.columns]
    if missing:
        raise ValueError(f"slice_masks needs the true attributes {missing}; pass CelebA's attribute columns")
    out: dict[str, np.ndarray] = {}
    for name in names:
        has = attributes[name].to_numpy() > 0
        out[name] = has
        out[f"not_{name}"] = ~has
    return out | group_masks((attributes > 0).astype(int), groupings=("blond",))


def masks_from_frame(groups: pd.DataFrame) -> dict[str, np.ndarray]:
    """Slices from a user's group labels: a boolean / 0-1 column gives ``col`` and ``not_col``; any other
    column gives ``col=value`` per distinct value (missing values belong to no slice of that column)."""
    if not isinstance(groups, pd.DataFrame) or groups.shape[1] == 0:
        raise ValueError("groups must be a DataFrame with one column per grouping (e.g. age_band, skin_tone)")
    out: dict[str, np.ndarray] = {}
    for col in groups.columns:
        values = groups[col]
        present = values.dropna().unique()
        if values.dtype == bool or (len(present) and set(present.tolist()) <= {0, 1}):
            has = values.fillna(False).astype(bool).to_numpy()
            known = values.notna().to_numpy()
            out[str(col)] = has & known
            out[f"not_{col}"] = ~has & known
        else:
            for v in sorted(present.tolist(), key=str):
                out[f"{col}={v}"] = (values == v).to_numpy()
    return out


def inverse_frequency_weights(ids: np.ndarray) -> np.ndarray:
    """Per-row weight 1 / (rows in its group), scaled to mean 1; groups with no row get no weight."""
    ids = np.asarray(ids, dtype=np.int64)
    counts = np.bincount(ids).astype(np.float64)
    weights = 1.0 / counts[ids]
    return weights * (len(ids) / weights.sum())


def describe_groups(masks: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{name} {int(mask.sum()):,}" for name, mask in masks.items())


# --------------------------------------------------------------------------------------------------
# Age band x gender and race x gender cells: the people an average over everyday photos hides
# --------------------------------------------------------------------------------------------------

# Ten-year bands, the last open: (label, lowest age, first age of the next band).
AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("0-9", 0, 10),
    ("10-19", 10, 20),
    ("20-29", 20, 30),
    ("30-39", 30, 40),
    ("40-49", 40, 50),
    ("50-59", 50, 60),
    ("60-69", 60, 70),
    ("70+", 70, float("inf")),
)
AGE_BAND_LABELS = tuple(label for label, _, _ in AGE_BANDS)


def age_bands(ages) -> np.ndarray:
    """The :data:`AGE_BANDS` label of each age in years ("" where the age is unknown)."""
    ages = np.asarray(ages, dtype=np.float64).reshape(-1)
    out = np.full(len(ages), "", dtype=object)
    for label, low, high in AGE_BANDS:
        out[(ages >= low) & (ages < high)] = label
    return out


def cell_masks(male, by: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``{axis: {value: mask}}`` for each named axis (e.g. ``age_band``, ``race``) in its values' order;
    rows with an unknown ("") value belong to no cell. The gender split is done by the tables that read
    these (women's and men's recall per cell)."""
    male = np.asarray(male).reshape(-1)
    out: dict[str, dict[str, np.ndarray]] = {}
    for axis, values in by.items():
        values = np.asarray(values, dtype=object).reshape(-1)
        if len(values) != len(male):
            raise ValueError(f"{axis}: {len(values)} values for {len(male)} rows")
        present = [v for v in dict.fromkeys(values.tolist()) if v not in ("", None)]
        order = AGE_BAND_LABELS if axis == "age_band" else sorted(present, key=str)
        out[axis] = {str(v): values == v for v in order if v in present}
    return out


# How the rows of two training sources weigh in the Male loss (RunConfig.source_weighting).
SOURCE_WEIGHTINGS = ("rows", "sources", "cells")
CELEBA_SOURCE = "celeba"


def source_weights(sources, male, bands, scheme: str = "cells") -> np.ndarray:
    """Per-row weights, mean 1, for rows from several sources (``sources``: the source of each row;
    ``bands``: its age band, "" unknown, as from :func:`age_bands`):

    - ``rows``: each row weighs the same, so the bigger source dominates;
    - ``sources``: each source's rows together weigh the same;
    - ``cells``: as ``sources``, and within a source that has ages every gender x age band cell weighs the
      same (rows of unknown age form a cell per gender), so 75 women over 70 count as much as 1,200 women
      in their twenties. CelebA has no ages: its rows weigh equally within it."""
    if scheme not in SOURCE_WEIGHTINGS:
        raise ValueError(f"source_weighting={scheme!r} is not one of {SOURCE_WEIGHTINGS}")
    sources = np.asarray(sources, dtype=object).reshape(-1)
    male = np.asarray(male).reshape(-1).astype(np.int64)
    bands = np.asarray(bands, dtype=object).reshape(-1)
    if not len(sources) == len(male) == len(bands):
        raise ValueError(f"{len(sources)} sources, {len(male)} labels and {len(bands)} age bands")
    if len(sources) == 0:
        return np.zeros(0)
    if scheme == "rows":
        return np.ones(len(sources))
    weights = np.zeros(len(sources))
    names = list(dict.fromkeys(sources.tolist()))
    for source in names:
        rows = sources == source
        if scheme == "cells" and (bands[rows] != "").any():
            cells = np.char.add(male[rows].astype(str), bands[rows].astype(str))
            _, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
            within = 1.0 / (counts[inverse] * len(counts))
        else:
            within = np.full(int(rows.sum()), 1.0 / rows.sum())
        weights[rows] = within / len(names)
    return weights * (len(weights) / weights.sum())
