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

from ..metrics import worst_group_score
from .estimators import StageTwoClassifier

OBJECTIVES = ("erm", "worst_group")
METHODS = ("reweighted", "group_dro")


@dataclass
class WorstGroupFit:
    """What :func:`fit_worst_group` chose and why."""

    estimator: StageTwoClassifier
    method: str  # "reweighted" | "group_dro"
    cv_worst_group_accuracy: dict[str, float] = field(default_factory=dict)  # per method, out of fold
    cv_accuracy: dict[str, float] = field(default_factory=dict)
    folds: int = 0


def _group_weights(groups: np.ndarray, q: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Row weights ``q[g] * base / (base summed over g)`` (``base`` 1: ``q[g] / n_g``), scaled to mean 1:
    group ``g`` weighs ``q[g]`` in all, its rows in proportion to ``base``."""
    base = np.ones(len(groups)) if base is None else np.asarray(base, dtype=np.float64)
    totals = np.bincount(groups, weights=base, minlength=len(q))
    per_group = np.where(totals > 0, q / np.where(totals > 0, totals, 1.0), 0.0)
    weights = per_group[groups] * base
    return weights * (len(groups) / weights.sum())


def _prior(groups: np.ndarray, group_prior: np.ndarray | None) -> np.ndarray:
    """The groups' starting weights: ``group_prior`` where given, else equal among the groups present."""
    n_groups = int(groups.max()) + 1
    present = np.bincount(groups, minlength=n_groups) > 0
    if group_prior is None:
        return present / present.sum()
    q = np.zeros(n_groups)
    q[: min(n_groups, len(group_prior))] = np.asarray(group_prior, dtype=np.float64)[:n_groups]
    q = q * present
    return q / q.sum()


def fit_reweighted(X, y, groups, base_weight=None, group_prior=None, **params) -> StageTwoClassifier:
    """Stage two with every group weighing its ``group_prior`` share (default: all groups equally, inverse
    group frequency); within a group rows weigh as ``base_weight``."""
    groups = np.asarray(groups, dtype=np.int64)
    q = _prior(groups, group_prior)
    return StageTwoClassifier(**params).fit(X, y, sample_weight=_group_weights(groups, q, base_weight))


def fit_group_dro(
    X, y, groups, step: float = 1.0, rounds: int = 20, base_weight=None, group_prior=None, **params
) -> StageTwoClassifier:
    """Group DRO by iterative reweighting: ``rounds`` refits, the group weights moving from
    ``group_prior`` toward the groups with the highest log loss (exponentiated gradient, step ``step``)."""
    groups = np.asarray(groups, dtype=np.int64)
    y = np.asarray(y)
    n_groups = int(groups.max()) + 1
    present = np.bincount(groups, minlength=n_groups) > 0
    q = _prior(groups, group_prior)
    est = None
    for _ in range(rounds):
        est = StageTwoClassifier(**params).fit(X, y, sample_weight=_group_weights(groups, q, base_weight))
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


def worst_group_accuracy(y, pred, groups) -> float:
    """Out-of-fold worst-group accuracy by the library's one rule (:func:`attr2gender.metrics.worst_group_score`:
    groups of at least 30 rows, NaN when none has that many)."""
    return worst_group_score(np.asarray(pred) == np.asarray(y), groups)


def fit_worst_group(
    X,
    y,
    groups,
    identities=None,
    folds: int = 5,
    seed: int = 0,
    dro_step: float = 1.0,
    base_weight=None,
    group_prior=None,
    **params,
) -> WorstGroupFit:
    """Both methods scored out of fold (folds by identity), the better one refitted on every row.
    ``base_weight`` / ``group_prior``: see :func:`fit_reweighted` (rows from two sources)."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    X = np.asarray(X, dtype=np.float64) if not hasattr(X, "iloc") else X
    y, groups = np.asarray(y), np.asarray(groups, dtype=np.int64)
    base = None if base_weight is None else np.asarray(base_weight, dtype=np.float64)
    fitters = {
        "reweighted": lambda Xa, ya, ga, ba: fit_reweighted(Xa, ya, ga, ba, group_prior, **params),
        "group_dro": lambda Xa, ya, ga, ba: fit_group_dro(
            Xa, ya, ga, step=dro_step, base_weight=ba, group_prior=group_prior, **params
        ),
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
            est = fit(take(X, train), y[train], groups[train], None if base is None else base[train])
            pred[test] = est.predict(take(X, test))
        wga[name] = worst_group_accuracy(y, pred, groups)
        acc[name] = float((pred == y).mean())
    # Ties (or no scorable group) go to the simpler method.
    best = max(METHODS, key=lambda m: (np.nan_to_num(wga[m], nan=-1.0), m == "reweighted"))
    return WorstGroupFit(fitters[best](X, y, groups, base), best, wga, acc, len(splits))
