"""The concept-bottleneck toolkit (Koh et al., ICML 2020): what makes a bottleneck worth having.

* **Interventions**: a person corrects a concept and the decision follows. :func:`intervention_matrix`
  validates what to override; ``Attr2GenderPipeline.predict(images, intervene=...)`` applies it.
* **The intervention curve** (:func:`intervention_curve`): Male accuracy after correcting the k "worst"
  attributes of each image to their true values, k = 0..39, under three policies (random, uncertainty,
  contribution). It starts at the pipeline's accuracy and rises toward the true-attribute ceiling.
* **Leakage** (:func:`leakage_report`): stage two's Male accuracy on the true attributes (what the 39
  concepts say: *dataset leakage*, Wang et al., ICCV 2019), on hard predictions (*model leakage*) and on soft
  ones. Soft minus hard is information carried beyond the 39 concepts. Permutation importance says which
  concepts carry the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.attributes import STAGE_ONE_ATTRIBUTES, TARGET
from ..metrics import accuracy_ci, markdown_table
from ..tabular.fitting import StageTwoData, fit_stage_two

POLICIES = ("random", "uncertainty", "contribution")
ATTRS = list(STAGE_ONE_ATTRIBUTES)


# --------------------------------------------------------------------------------------------------
# interventions
# --------------------------------------------------------------------------------------------------


def intervention_matrix(intervene, n_rows: int) -> np.ndarray:
    """(n_rows, 39) values to put in place of stage one's outputs, NaN where an output is kept.

    ``intervene``: ``{attribute: value}`` for every row, or a DataFrame with one row per image and attribute
    columns (NaN = keep). Values must lie in [0, 1]; unknown names raise, listing the valid ones."""
    if isinstance(intervene, pd.DataFrame):
        frame = intervene.reset_index(drop=True)
        if len(frame) != n_rows:
            raise ValueError(
                f"intervene has {len(frame)} rows but there are {n_rows} images; give one row per "
                "image (NaN keeps stage one's value), or a dict for every image"
            )
        names = [str(c) for c in frame.columns]
    elif isinstance(intervene, dict):
        names = [str(k) for k in intervene]
        frame = pd.DataFrame({str(k): [v] * n_rows for k, v in intervene.items()}, index=range(n_rows))
    else:
        raise ValueError(
            f"intervene must be a dict {{attribute: value}} or a DataFrame, got {type(intervene).__name__}"
        )
    unknown = [n for n in names if n not in STAGE_ONE_ATTRIBUTES]
    if unknown:
        raise ValueError(f"intervene names unknown attribute(s) {unknown}; the 39 are: {', '.join(ATTRS)}")
    try:
        values = frame.astype(float)
    except (TypeError, ValueError):
        raise ValueError("intervene values must be numbers in [0, 1] (NaN keeps stage one's value)") from None
    array = values.to_numpy()
    bad = np.isfinite(array) & ((array < 0) | (array > 1)) | np.isinf(array)
    if bad.any():
        col = names[int(np.argwhere(bad)[0][1])]
        raise ValueError(f"intervene value for {col} must lie in [0, 1] (a probability; 0 or 1 to assert it)")
    out = np.full((n_rows, len(ATTRS)), np.nan)
    for j, name in enumerate(names):
        out[:, ATTRS.index(name)] = array[:, j]
    return out


def apply_intervention(attributes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``attributes`` with the non-NaN entries of ``matrix`` put in their place."""
    return np.where(np.isnan(matrix), attributes, matrix)


# --------------------------------------------------------------------------------------------------
# the intervention curve
# --------------------------------------------------------------------------------------------------


def _male_accuracy(pipe, X: np.ndarray, male: np.ndarray) -> float:
    return float(((pipe.stage_two_probability(X) >= pipe.threshold).astype(int) == male).mean())


def _orders(pipe, probs: np.ndarray, policy: str, seed: int) -> np.ndarray:
    """(n, 39): for each image, the attributes in the order a person would correct them."""
    if policy == "random":
        rng = np.random.default_rng(seed)
        return np.argsort(rng.random(probs.shape), axis=1)
    if policy == "uncertainty":  # closest to 0.5 first
        return np.argsort(np.abs(probs - 0.5), axis=1, kind="stable")
    if policy == "contribution":  # the largest push on the Male log-odds first
        contributions = pipe.stage_two.contributions(pd.DataFrame(probs, columns=ATTRS))[:, : len(ATTRS)]
        return np.argsort(-np.abs(contributions), axis=1, kind="stable")
    raise ValueError(f"policy {policy!r} is not one of {POLICIES}")


def curve_from_probabilities(
    pipe, probs: np.ndarray, truth: pd.DataFrame, policies=POLICIES, max_k: int = 39, seeds=(0, 1, 2)
) -> pd.DataFrame:
    """:func:`intervention_curve` on stage-one outputs already computed (``probs`` (n, 39), readable rows)."""
    male = truth[TARGET].to_numpy().astype(int)
    true = truth[ATTRS].to_numpy().astype(np.float64)
    rows = []
    for policy in [policies] if isinstance(policies, str) else policies:
        curves = []
        for seed in seeds if policy == "random" else seeds[:1]:
            order = _orders(pipe, probs, policy, seed)
            X = probs.copy()
            curve = [_male_accuracy(pipe, X, male)]
            for k in range(1, max_k + 1):
                j = order[:, k - 1]
                X[np.arange(len(X)), j] = true[np.arange(len(X)), j]
                curve.append(_male_accuracy(pipe, X, male))
            curves.append(curve)
        for k, accuracy in enumerate(np.mean(curves, axis=0)):
            rows.append({"policy": policy, "k": k, "accuracy": float(accuracy), "n": len(male)})
    return pd.DataFrame(rows)


def intervention_curve(
    pipe,
    images,
    true_attributes: pd.DataFrame,
    policy=POLICIES,
    max_k: int = 39,
    seeds=(0, 1, 2),
    progress: bool | None = None,
    align: str | None = None,
) -> pd.DataFrame:
    """Male accuracy after correcting each image's k worst attributes to their true values, k = 0..max_k.
    ``align``: as in ``predict`` (``"none"`` for CelebA crops).

    ``true_attributes``: one row per image with ``Male`` and the 39 attribute columns (0/1). ``policy``: one
    of :data:`POLICIES` or several: ``random`` (averaged over ``seeds``), ``uncertainty`` (the attribute
    whose probability is closest to 0.5 first) or ``contribution`` (the largest |stage-two contribution|
    first). Returns one row per (policy, k): ``accuracy`` and ``n`` (readable images)."""
    missing = [c for c in [TARGET, *ATTRS] if c not in true_attributes.columns]
    if missing:
        raise ValueError(
            f"true_attributes lacks column(s) {missing[:5]}; it needs Male and the 39 attributes"
        )
    probs, errors = pipe.attribute_probabilities(images, progress=progress, align=align)
    if len(true_attributes) != len(errors):
        raise ValueError(f"{len(errors)} images but {len(true_attributes)} rows of true attributes")
    ok = np.array([not e for e in errors])
    return curve_from_probabilities(
        pipe, probs[ok], true_attributes.iloc[np.flatnonzero(ok)], policy, max_k, seeds
    )


# --------------------------------------------------------------------------------------------------
# leakage
# --------------------------------------------------------------------------------------------------


@dataclass
class Leakage:
    """Stage two on true attributes, hard and soft predictions; and which concepts carry the decision."""

    table: pd.DataFrame  # rows: true attributes, hard predictions, soft predictions; accuracy with its CI
    permutation: pd.Series  # per attribute: Male accuracy drop when it is permuted across images
    metrics: dict[str, float] = field(default_factory=dict)

    def markdown(self) -> str:
        rows = [
            {
                "stage two fitted and applied on": name,
                "Male accuracy": r["accuracy"],
                "95% CI": f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
            }
            for name, r in self.table.iterrows()
        ]
        top = self.permutation.head(10)
        gap = self.metrics["leakage_soft_minus_hard"]
        return "\n".join(
            [
                "# Leakage: what reaches stage two",
                "",
                markdown_table(rows),
                f"Soft minus hard: {100 * gap:+.2f} points of Male accuracy carried by stage one's probabilities beyond "
                "the 39 binary concepts (information that leaks through the bottleneck). True attributes: what the 39 "
                "concepts themselves say about Male (dataset leakage).",
                "",
                "## Which concepts carry the decision (permutation importance)",
                "",
                "Male accuracy drop when one attribute is replaced by its value on a random other image:",
                "",
                markdown_table([{"attribute": k, "accuracy drop": v} for k, v in top.items()]),
            ]
        )


def permutation_importance(
    pipe, probs: np.ndarray, male: np.ndarray, repeats: int = 5, seed: int = 0
) -> pd.Series:
    """Per attribute, the mean drop in Male accuracy when its column is shuffled across images."""
    rng = np.random.default_rng(seed)
    base = _male_accuracy(pipe, probs, male)
    drops = {}
    for j, name in enumerate(ATTRS):
        scores = []
        for _ in range(repeats):
            X = probs.copy()
            X[:, j] = X[rng.permutation(len(X)), j]
            scores.append(base - _male_accuracy(pipe, X, male))
        drops[name] = float(np.mean(scores))
    return pd.Series(drops, name="accuracy_drop").sort_values(ascending=False)


def leakage_report(
    pipe,
    val_probs: np.ndarray,
    val_truth: pd.DataFrame,
    test_probs: np.ndarray,
    test_truth: pd.DataFrame,
    seed: int = 0,
    n_boot: int = 1000,
) -> Leakage:
    """Three logistic stage twos, each fitted on the validation rows and scored on the test rows of one
    input kind: the true attributes, stage one's thresholded outputs (hard) and its probabilities (soft)."""
    y_val, y_test = val_truth[TARGET].to_numpy(), test_truth[TARGET].to_numpy().astype(int)
    inputs = {
        "true attributes": (val_truth[ATTRS].astype(float), test_truth[ATTRS].astype(float), "soft"),
        "hard predictions": (
            pd.DataFrame(val_probs, columns=ATTRS),
            pd.DataFrame(test_probs, columns=ATTRS),
            "hard",
        ),
        "soft predictions": (
            pd.DataFrame(val_probs, columns=ATTRS),
            pd.DataFrame(test_probs, columns=ATTRS),
            "soft",
        ),
    }
    rows, metrics = [], {}
    for name, (X_val, X_test, bottleneck) in inputs.items():
        data = StageTwoData(X_val.reset_index(drop=True), y_val, val_truth, None, "probability")
        est, _ = fit_stage_two(data, seed=seed, bottleneck=bottleneck)
        acc, low, high = accuracy_ci(y_test, est.predict_proba(X_test)[:, 1], n_boot=n_boot, seed=seed)
        rows.append({"input": name, "accuracy": acc, "ci_low": low, "ci_high": high})
        key = {"true attributes": "true", "hard predictions": "hard", "soft predictions": "soft"}[name]
        metrics |= {
            f"leakage_{key}_accuracy": acc,
            f"leakage_{key}_ci_low": low,
            f"leakage_{key}_ci_high": high,
        }
    metrics["leakage_soft_minus_hard"] = metrics["leakage_soft_accuracy"] - metrics["leakage_hard_accuracy"]
    permutation = permutation_importance(pipe, test_probs, y_test, seed=seed)
    metrics |= {f"permutation_drop_{k}": v for k, v in permutation.items()}
    return Leakage(pd.DataFrame(rows).set_index("input"), permutation, metrics)
