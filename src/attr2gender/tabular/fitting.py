"""Fitting stage two on stage one's outputs: the one function trainers, concept editing and benchmarks share.

Needs no image model and no Lightning: :class:`StageTwoData` holds the rows (stage one's probabilities, or
true attributes) with their truth, and :func:`fit_stage_two` fits on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.groups import AGE_BAND_LABELS, CELEBA_SOURCE, group_ids, source_weights
from ..tabular import StageTwoClassifier
from ..tabular.robust import fit_worst_group


@dataclass
class StageTwoData:
    """What stage two is fitted on, kept in memory so it can be refitted (concept editing, another
    objective) without running stage one again."""

    X: pd.DataFrame  # (n, 39): stage one's probabilities (predicted) or the true 0/1 attributes (labels)
    y: np.ndarray  # (n,) Male
    # (n, 40) true attributes of those rows: where CelebA's groups come from. A source without CelebA's
    # attributes (labelled faces) has only Male there, the 39 others NaN.
    truth: pd.DataFrame
    identities: np.ndarray | None  # person per row (cross-validation folds never split a person)
    input_kind: str  # "probability" | "binary"
    source: np.ndarray | None = None  # per row: "celeba" or the labelled faces' name; None: all CelebA
    age_band: np.ndarray | None = None  # per row (attr2gender.data.groups.AGE_BANDS, "" unknown)
    weighting: str = "rows"  # how the sources weigh (RunConfig.source_weighting); one source: "rows"

    def sources(self) -> np.ndarray:
        return np.full(len(self.y), CELEBA_SOURCE, dtype=object) if self.source is None else self.source

    def row_weights(self) -> np.ndarray | None:
        """Per-row weights (mean 1) of :attr:`weighting` when the rows come from several sources; None
        for one source, whose rows weigh the same."""
        sources = self.sources()
        if len(set(sources.tolist())) < 2:
            return None
        bands = np.full(len(self.y), "", dtype=object) if self.age_band is None else self.age_band
        return source_weights(sources, self.y, bands, self.weighting)

    def groups(self, grouping: str = "makeup") -> np.ndarray:
        """A group per row for the worst-group objective: CelebA's rows Male x ``grouping`` (0-3, from their
        true attributes); another source's rows one group per gender x age band (4 on)."""
        sources = self.sources()
        celeba = sources == CELEBA_SOURCE
        out = np.empty(len(self.y), dtype=np.int64)
        if celeba.any():
            out[celeba] = group_ids(self.truth.loc[celeba], grouping=grouping)
        if (~celeba).any():
            bands = np.full(len(self.y), "", dtype=object) if self.age_band is None else self.age_band
            order = {label: k for k, label in enumerate(AGE_BAND_LABELS)}
            band = np.array([order.get(b, len(AGE_BAND_LABELS)) for b in bands[~celeba]])
            out[~celeba] = 4 + np.asarray(self.y)[~celeba] * (len(AGE_BAND_LABELS) + 1) + band
        return out

    def group_prior(self, groups: np.ndarray) -> np.ndarray | None:
        """Each group's starting share for the worst-group objective: its source's share of the row
        weights, split equally among that source's groups (None for one source: all groups equal)."""
        weights = self.row_weights()
        if weights is None:
            return None
        sources = self.sources()
        prior = np.zeros(int(groups.max()) + 1)
        for source in dict.fromkeys(sources.tolist()):
            rows = sources == source
            present = np.unique(groups[rows])
            prior[present] = weights[rows].sum() / len(present)
        return prior / prior.sum()


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
    inputs thresholded at 0.5 at fit and predict time). Rows from two sources weigh as ``data.weighting``
    says; for ``worst_group`` each source keeps that share and its groups split it (CelebA's Male x
    ``group_by``, the labelled faces' gender x age band). Returns the estimator and what the fit measured."""
    params = dict(
        model=model,
        input_kind="binary" if bottleneck == "hard" else data.input_kind,
        threshold=threshold,
        class_weight=class_weight or None,
        random_state=seed,
        exclude=tuple(exclude),
    )
    weights = data.row_weights()
    if objective == "erm":
        return StageTwoClassifier(**params).fit(data.X, data.y, sample_weight=weights), {}
    if objective != "worst_group":
        raise ValueError(f"objective={objective!r} is not valid; choose 'erm' or 'worst_group'")
    groups = data.groups(group_by)
    chosen = fit_worst_group(
        data.X,
        data.y,
        groups,
        identities=data.identities,
        seed=seed,
        base_weight=weights,
        group_prior=data.group_prior(groups),
        **params,
    )
    info = {"stage_two_method_group_dro": float(chosen.method == "group_dro")}
    for method, value in chosen.cv_worst_group_accuracy.items():
        info[f"stage_two_cv_worst_group_accuracy_{method}"] = value
        info[f"stage_two_cv_accuracy_{method}"] = chosen.cv_accuracy[method]
    return chosen.estimator, info
