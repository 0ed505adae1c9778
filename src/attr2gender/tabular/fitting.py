"""Fitting stage two on stage one's outputs: the one function trainers, concept editing and benchmarks share.

Needs no image model and no Lightning: :class:`StageTwoData` holds the rows (stage one's probabilities, or
true attributes) with their truth, and :func:`fit_stage_two` fits on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.groups import group_ids
from ..tabular import StageTwoClassifier
from ..tabular.robust import fit_worst_group


@dataclass
class StageTwoData:
    """What stage two is fitted on, kept in memory so it can be refitted (concept editing, another
    objective) without running stage one again."""

    X: pd.DataFrame  # (n, 39): stage one's probabilities (predicted) or the true 0/1 attributes (labels)
    y: np.ndarray  # (n,) Male
    truth: pd.DataFrame  # (n, 40) true attributes of those rows: where the groups come from
    identities: np.ndarray | None  # person per row (cross-validation folds never split a person)
    input_kind: str  # "probability" | "binary"


def fit_stage_two(
    data: StageTwoData,
    model: str = "logistic",
    objective: str = "erm",
    exclude=(),
    group_by: str = "makeup",
    threshold: float = 0.5,
    class_weight: str | None = None,
    seed: int = 0,
    bottleneck: str = "soft",
) -> tuple[StageTwoClassifier, dict[str, float]]:
    """Stage two on ``data``: ``model``, ``exclude`` (concept editing: attributes it must not use),
    ``objective`` (``erm``; or ``worst_group``: group-reweighted vs group DRO on the Male x ``group_by``
    groups, whichever has the better cross-validated worst-group accuracy) and ``bottleneck`` (``hard``:
    inputs thresholded at 0.5 at fit and predict time). Returns the estimator and what the fit measured."""
    params = dict(
        model=model,
        input_kind="binary" if bottleneck == "hard" else data.input_kind,
        threshold=threshold,
        class_weight=class_weight or None,
        random_state=seed,
        exclude=tuple(exclude),
    )
    if objective == "erm":
        return StageTwoClassifier(**params).fit(data.X, data.y), {}
    if objective != "worst_group":
        raise ValueError(f"objective={objective!r} is not valid; choose 'erm' or 'worst_group'")
    groups = group_ids(data.truth, grouping=group_by)
    chosen = fit_worst_group(data.X, data.y, groups, identities=data.identities, seed=seed, **params)
    info = {"stage_two_method_group_dro": float(chosen.method == "group_dro")}
    for method, value in chosen.cv_worst_group_accuracy.items():
        info[f"stage_two_cv_worst_group_accuracy_{method}"] = value
        info[f"stage_two_cv_accuracy_{method}"] = chosen.cv_accuracy[method]
    return chosen.estimator, info
