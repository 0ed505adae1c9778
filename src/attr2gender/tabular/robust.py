"""Stage two fitted for its worst group, not its average.

Stage two learns CelebA's shortcut "makeup means female" because it pays on average. Two remedies, both
on groups defined by true attributes (:mod:`attr2gender.data.groups`):

* **group-reweighted** logistic regression / LightGBM: each row weighted 1 / (rows of its group), so every
  group counts equally in the loss;
* **group DRO** (Sagawa et al., ICLR 2020), here by iterative reweighting: the group weights ``q`` follow
  exponentiated gradient ascent on the group losses (``q_g <- q_g exp(step * loss_g)``), and the model is
  refitted on the ``q``-weighted loss, so the worst group's loss is driven down.

:func:`fit_worst_group` scores both by cross-validation on the rows it is given, folds split by identity
(no person on both sides), keeps the one with the better out-of-fold worst-group accuracy, refits it on
all rows, and reports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .estimators import StageTwoClassifier

OBJECTIVES = ("erm", "worst_group")
METHODS = ("reweighted", "group_dro")
MIN_GROUP_ROWS = 10  # a group with fewer rows cannot be scored out of fold; it is reported, not ranked on


@dataclass
class WorstGroupFit:
    """What :func:`fit_worst_group` chose and why."""

    estimator: StageTwoClassifier
    method: str  # "reweighted" | "group_dro"
    cv_worst_group_accuracy: dict[str, float] = field(default_factory=dict)  # per method, out of fold
    cv_accuracy: dict[str, float] = field(default_factory=dict)
    folds: int = 0


def _group_weights(groups: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row weights ``q[g] / n_g``, scaled to mean 1."""
    counts = np.bincount(groups, minlength=len(q)).astype(np.float64)
    per_group = np.where(counts > 0, q / np.maximum(counts, 1), 0.0)
    weights = per_group[groups]
    return weights * (len(groups) / weights.sum())


def fit_reweighted(X, y, groups, **params) -> StageTwoClassifier:
    """Stage two with every group weighted equally (inverse group frequency)."""
    groups = np.asarray(groups, dtype=np.int64)
    n_groups = int(groups.max()) + 1
    return StageTwoClassifier(**params).fit(X, y, sample_weight=_group_weights(groups, np.ones(n_groups)))


def fit_group_dro(X, y, groups, step: float = 1.0, rounds: int = 20, **params) -> StageTwoClassifier:
    """Group DRO by iterative reweighting: ``rounds`` refits, the group weights moving toward the groups
    with the highest log loss (exponentiated gradient with step ``step``)."""
    groups = np.asarray(groups, dtype=np.int64)
    y = np.asarray(y)
    n_groups = int(groups.max()) + 1
    present = np.bincount(groups, minlength=n_groups) > 0
    q = present / present.sum()
    est = None
    for _ in range(rounds):
        est = StageTwoClassifier(**params).fit(X, y, sample_weight=_group_weights(groups, q))
        p = np.clip(est.predict_proba(X)[:, 1], 1e-7, 1 - 1e-7)
        positive = y == est.classes_[1]
        loss = -np.where(positive, np.log(p), np.log(1 - p))
        group_loss = np.array([loss[groups == g].mean() if present[g] else 0.0 for g in range(n_groups)])
        q = q * np.exp(step * group_loss) * present
        q = q / q.sum()
    return est


def group_dro_weights(q: np.ndarray, group_losses: np.ndarray, step: float) -> np.ndarray:
    """One exponentiated-gradient step of the group weights (the update :func:`fit_group_dro` iterates)."""
    q = np.asarray(q, dtype=np.float64) * np.exp(step * np.asarray(group_losses, dtype=np.float64))
    return q / q.sum()


def worst_group_accuracy(y, pred, groups, min_rows: int = MIN_GROUP_ROWS) -> float:
    """Lowest per-group accuracy among groups with at least ``min_rows`` rows (NaN when none has)."""
    y, pred, groups = np.asarray(y), np.asarray(pred), np.asarray(groups)
    scores = [
        float((pred[groups == g] == y[groups == g]).mean())
        for g in np.unique(groups)
        if (groups == g).sum() >= min_rows
    ]
    return min(scores) if scores else float("nan")


def fit_worst_group(
    X, y, groups, identities=None, folds: int = 5, seed: int = 0, dro_step: float = 1.0, **params
) -> WorstGroupFit:
    """Both methods scored out of fold (folds by identity), the better one refitted on every row."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    X = np.asarray(X, dtype=np.float64) if not hasattr(X, "iloc") else X
    y, groups = np.asarray(y), np.asarray(groups, dtype=np.int64)
    fitters = {
        "reweighted": lambda Xa, ya, ga: fit_reweighted(Xa, ya, ga, **params),
        "group_dro": lambda Xa, ya, ga: fit_group_dro(Xa, ya, ga, step=dro_step, **params),
    }
    if identities is not None and len(np.unique(identities)) >= folds:
        splitter = GroupKFold(n_splits=folds).split(np.zeros(len(y)), y, np.asarray(identities))
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    splits = list(splitter)
    take = (lambda a, i: a.iloc[i]) if hasattr(X, "iloc") else (lambda a, i: a[i])
    wga, acc = {}, {}
    for name, fit in fitters.items():
        pred = np.empty(len(y), dtype=y.dtype)
        for train, test in splits:
            est = fit(take(X, train), y[train], groups[train])
            pred[test] = est.predict(take(X, test))
        wga[name] = worst_group_accuracy(y, pred, groups)
        acc[name] = float((pred == y).mean())
    # Ties (or no scorable group) go to the simpler method.
    best = max(METHODS, key=lambda m: (np.nan_to_num(wga[m], nan=-1.0), m == "reweighted"))
    return WorstGroupFit(fitters[best](X, y, groups), best, wga, acc, len(splits))
