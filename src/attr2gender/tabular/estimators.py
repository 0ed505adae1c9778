"""Stage two: predict ``Male`` from the 39 stage-one attribute probabilities.

:class:`StageTwoClassifier` is a scikit-learn estimator (``clone``, ``get_params``, pipelines and
``check_estimator`` work) wrapping either a logistic regression or a LightGBM model.

Inputs are attribute values in ``[0, 1]``: stage one's probabilities, or 0/1 ground-truth labels.
``input_kind`` says how the model treats them:

* ``"probability"`` -- values are used as they are, at fit and at predict time;
* ``"binary"`` -- values are thresholded at ``threshold`` to 0/1, at fit and at predict time.

The trap this class guards against: a tree model fitted on 0/1 labels splits each attribute just above
0, so stage one's probabilities (0.1, 0.3, ...) all land on the "attribute present" side. Measured on
real faces, such a LightGBM called nearly every face male (36% accuracy). A model fitted with
``input_kind="probability"`` on 0/1-valued X therefore refuses non-binary inputs with
:class:`InputKindMismatchError`; fit with ``input_kind="binary"`` (or fit on probabilities) instead.
"""

from __future__ import annotations

import re

import lightgbm
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from attr2gender.constants import THRESHOLD_BOUNDS
from attr2gender.errors import InputKindMismatchError

MODELS: tuple[str, ...] = ("logistic", "lightgbm")
INPUT_KINDS: tuple[str, ...] = ("probability", "binary")
CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")

# LightGBM refuses some characters in feature names; only pass names that are plainly safe.
_SAFE_LGBM_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _quote_list(names) -> str:
    return ", ".join(repr(str(n)) for n in names)


class StageTwoClassifier(ClassifierMixin, BaseEstimator):
    """Binary classifier from stage-one attribute values in ``[0, 1]`` to ``Male``.

    Parameters
    ----------
    model : {"logistic", "lightgbm"}
        ``"logistic"``: :class:`sklearn.linear_model.LogisticRegression` (lbfgs);
        ``"lightgbm"``: :class:`lightgbm.LGBMClassifier` (deterministic, single thread, silent).
    input_kind : {"probability", "binary"}
        ``"probability"``: use values as they are. ``"binary"``: threshold at ``threshold`` (``>=``)
        to 0/1 at fit and predict time, so a model fitted on 0/1 labels can be applied to
        probabilities.
    threshold : float in (0, 1)
        Threshold for ``input_kind="binary"``; ignored otherwise.
    class_weight : {None, "balanced"}
    C, max_iter : logistic regression's inverse regularisation strength and iteration cap.
    n_estimators, learning_rate, num_leaves : LightGBM's boosting parameters.
    random_state : int
        Seed (LightGBM; lbfgs is deterministic anyway).
    exclude : tuple of str
        Concept editing: feature names the model must not use (their coefficient is fixed at 0 for
        logistic regression; LightGBM never sees them). The model still takes every column, so it stays
        a drop-in replacement and its explanations show the excluded attributes at 0.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Sorted class labels; column order of :meth:`predict_proba`. The second is the positive class.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` in ``fit`` was a DataFrame with string column names.
    fit_input_is_binary_ : bool
        Whether every training value (before any thresholding) was exactly 0 or 1.
    estimator_ : LogisticRegression or LGBMClassifier
        The fitted inner model (``None`` for a LightGBM model loaded from JSON; use ``booster_``).
    booster_ : lightgbm.Booster
        LightGBM only. All LightGBM predictions go through it, for fitted and loaded models alike.
    n_iter_ : ndarray of shape (1,)
        lbfgs iterations (logistic) or boosting rounds (LightGBM).
    """

    def __init__(
        self,
        model="logistic",
        input_kind="probability",
        threshold=0.5,
        class_weight=None,
        C=1.0,
        max_iter=1000,
        n_estimators=200,
        learning_rate=0.05,
        num_leaves=31,
        random_state=0,
        exclude=(),
    ):
        self.model = model
        self.input_kind = input_kind
        self.threshold = threshold
        self.class_weight = class_weight
        self.C = C
        self.max_iter = max_iter
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.random_state = random_state
        self.exclude = exclude

    # ------------------------------------------------------------------ tags and params

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.allow_nan = False
        # Values must lie in [0, 1]; positive_only is the closest tag scikit-learn has.
        tags.input_tags.positive_only = True
        return tags

    def _check_params(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r} is not valid; choose one of {_quote_list(MODELS)}")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(
                f"input_kind={self.input_kind!r} is not valid; choose one of {_quote_list(INPUT_KINDS)}"
            )
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"class_weight={self.class_weight!r} is not valid; choose None or 'balanced'")
        low, high = THRESHOLD_BOUNDS
        if not (isinstance(self.threshold, int | float) and low <= float(self.threshold) <= high):
            raise ValueError(f"threshold must be a number from {low} to {high}, got {self.threshold!r}")
        if self.model == "logistic":
            if not self.C > 0:
                raise ValueError(f"C must be > 0, got {self.C!r}")
            if not (isinstance(self.max_iter, int | np.integer) and self.max_iter >= 1):
                raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        else:
            if not (isinstance(self.n_estimators, int | np.integer) and self.n_estimators >= 1):
                raise ValueError(f"n_estimators must be an integer >= 1, got {self.n_estimators!r}")
            if not self.learning_rate > 0:
                raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
            if not (isinstance(self.num_leaves, int | np.integer) and self.num_leaves >= 2):
                raise ValueError(f"num_leaves must be an integer >= 2, got {self.num_leaves!r}")

    def _kept_indices(self) -> np.ndarray:
        """Columns the model uses: all but ``exclude`` (validated against the feature names)."""
        names = self._feature_names()
        excluded = [str(e) for e in (self.exclude or ())]
        unknown = [e for e in excluded if e not in names]
        if unknown:
            raise ValueError(
                f"exclude names unknown feature(s) {_quote_list(unknown)}; valid names: {_quote_list(names)}"
            )
        kept = np.array([i for i, n in enumerate(names) if n not in excluded], dtype=np.intp)
        if kept.size == 0:
            raise ValueError("exclude names every feature; stage two needs at least one attribute to use")
        return kept

    def _feature_names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names]
        return [f"x{i}" for i in range(self.n_features_in_)]

    # ------------------------------------------------------------------ input validation

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """Return X as a float64 array in fitted column order, after the NaN / range / kind checks."""
        return self._check_X_values(self._check_X_structure(X, reset=reset), reset=reset)

    def _check_X_structure(self, X, *, reset: bool, y=None):
        """Shape, dtype and column checks (scikit-learn's ``validate_data``); values are checked later.

        A DataFrame is matched to the fitted feature names by name and reordered to fitted order.
        """
        if not reset and isinstance(X, pd.DataFrame) and getattr(self, "feature_names_in_", None) is not None:
            fitted = [str(n) for n in self.feature_names_in_]
            given = [str(c) for c in X.columns]
            missing = [n for n in fitted if n not in given]
            unexpected = [c for c in given if c not in fitted]
            if missing or unexpected:
                parts = []
                if missing:
                    parts.append(f"missing attribute columns: {_quote_list(missing)}")
                if unexpected:
                    parts.append(f"unexpected columns (not seen at fit time): {_quote_list(unexpected)}")
                raise ValueError("; ".join(parts))
            X = X.loc[:, list(self.feature_names_in_)]  # reorder to fitted order by name
        if y is None and not reset:
            return validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite=False)
        # fit: y is validated together with X (a missing y raises scikit-learn's standard message)
        return validate_data(self, X, y, reset=True, dtype=np.float64, ensure_all_finite=False)

    def _check_X_values(self, X: np.ndarray, *, reset: bool) -> np.ndarray:
        """NaN, [0, 1] range and input-kind checks on a validated float array; applies ``input_kind``."""
        names = self._feature_names()

        nan_cols = np.isnan(X).any(axis=0)
        if nan_cols.any():
            bad = [names[i] for i in np.flatnonzero(nan_cols)]
            raise ValueError(f"attribute column(s) {_quote_list(bad)} contain NaN; impute or drop those rows")
        inf_cols = np.isinf(X).any(axis=0)
        if inf_cols.any():
            bad = [names[i] for i in np.flatnonzero(inf_cols)]
            raise ValueError(
                f"attribute column(s) {_quote_list(bad)} contain inf; values must be probabilities in [0, 1]"
            )
        neg_cols = (X < 0).any(axis=0)
        big_cols = (X > 1).any(axis=0)
        if neg_cols.any() or big_cols.any():
            bad = [names[i] for i in np.flatnonzero(neg_cols | big_cols)]
            lead = "Negative values in data" if neg_cols.any() else "Values above 1 in data"
            raise ValueError(
                f"{lead} passed to {type(self).__name__}: attribute column(s) {_quote_list(bad)} lie outside "
                f"[0, 1] (min {X.min():.4g}, max {X.max():.4g}); stage two expects stage-one probabilities "
                "or 0/1 labels"
            )

        is_binary = bool(np.isin(X, (0.0, 1.0)).all())
        if reset:
            self.fit_input_is_binary_ = is_binary
        elif self.input_kind == "probability" and self.fit_input_is_binary_ and not is_binary:
            soft = ((X > 0) & (X < 1)).any(axis=0)
            bad = [names[i] for i in np.flatnonzero(soft)]
            shown = _quote_list(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise InputKindMismatchError(
                "this model was fitted with input_kind='probability' on 0/1-valued attributes, but is now "
                f"given values strictly between 0 and 1 (column(s) {shown}). A model fitted on 0/1 labels "
                "places its decision points just above 0, so probabilities like 0.1 would be read as "
                "'attribute present' (a LightGBM fitted this way called nearly every real face male). "
                "Fix: fit with input_kind='binary' (inputs are thresholded at `threshold` at fit and "
                "predict time), or fit on stage one's probabilities instead of labels."
            )

        if self.input_kind == "binary":
            X = (X >= float(self.threshold)).astype(np.float64)
        return X

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, sample_weight=None):
        """Fit on attribute values ``X`` (n, n_features) in ``[0, 1]`` and binary target ``y``
        (``sample_weight``: optional per-row weights, e.g. inverse group frequencies)."""
        self._check_params()
        X, y = self._check_X_structure(X, reset=True, y=y)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y")
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}.")
        classes, y_enc = np.unique(y, return_inverse=True)
        if classes.shape[0] != 2:
            raise ValueError(f"stage two needs both classes in y; got one class only: {classes.tolist()!r}")
        Xt = self._check_X_values(X, reset=True)
        self.kept_ = self._kept_indices()
        if sample_weight is not None:  # one finite, non-negative weight per row (scikit-learn's own checks)
            sample_weight = _check_sample_weight(
                sample_weight, Xt, dtype=np.float64, ensure_non_negative=True
            )
        self.classes_ = classes
        if hasattr(self, "booster_"):  # refit after a LightGBM fit: drop the stale booster
            del self.booster_

        if self.model == "logistic":
            est = LogisticRegression(
                C=self.C, solver="lbfgs", max_iter=self.max_iter, class_weight=self.class_weight
            )
            est.fit(Xt[:, self.kept_], y_enc, sample_weight=sample_weight)
            if len(self.kept_) < self.n_features_in_:  # excluded attributes: coefficient fixed at 0
                coef = np.zeros((1, self.n_features_in_))
                coef[0, self.kept_] = est.coef_.ravel()
                est.coef_, est.n_features_in_ = coef, self.n_features_in_
            self.estimator_ = est
            self.n_iter_ = np.asarray(est.n_iter_, dtype=np.int32).copy()
        else:
            # Name the booster's features after the attributes when X had (LightGBM-safe) names.
            names = [self._feature_names()[i] for i in self.kept_]
            has_names = getattr(self, "feature_names_in_", None) is not None
            safe = has_names and all(_SAFE_LGBM_NAME.match(n) for n in names)
            feature_name = names if safe else "auto"
            est = lightgbm.LGBMClassifier(
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                class_weight=self.class_weight,
                random_state=self.random_state,
                n_jobs=1,
                deterministic=True,
                force_row_wise=True,
                verbose=-1,
            )
            est.fit(Xt[:, self.kept_], y_enc, sample_weight=sample_weight, feature_name=feature_name)
            self.estimator_ = est
            self.booster_ = est.booster_
            self.n_iter_ = np.array([self.booster_.current_iteration()], dtype=np.int32)
        return self

    # ------------------------------------------------------------------ predict

    def _check_is_fitted(self) -> None:
        check_is_fitted(self, ("classes_", "n_features_in_", "fit_input_is_binary_", "kept_"))

    def _raw(self, Xt: np.ndarray) -> np.ndarray:
        """Log-odds of ``classes_[1]`` for already validated/transformed X."""
        if self.model == "logistic":  # X @ coef + b: what decision_function computes, minus re-validation
            return Xt @ self.estimator_.coef_.ravel() + float(self.estimator_.intercept_[0])
        return np.asarray(self.booster_.predict(Xt[:, self.kept_], raw_score=True), dtype=np.float64)

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the positive class ``classes_[1]`` (LightGBM: its raw score), shape (n,)."""
        self._check_is_fitted()
        return self._raw(self._validate_X(X, reset=False))

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities of shape (n, 2), columns in ``classes_`` order; rows sum to 1."""
        self._check_is_fitted()
        Xt = self._validate_X(X, reset=False)
        if self.model == "logistic":
            return self.estimator_.predict_proba(Xt)
        p = expit(self._raw(Xt))
        return np.column_stack([1.0 - p, p])

    def positive_probability(self, X: np.ndarray) -> np.ndarray:
        """P(``classes_[1]``) for a float array already in fitted column order: the per-batch fast path of
        the pipelines (no DataFrame, no scikit-learn re-validation), with the same NaN, range and
        input-kind checks as :meth:`predict_proba`."""
        self._check_is_fitted()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected an array of shape (n, {self.n_features_in_}), got {X.shape}")
        return expit(self._raw(self._check_X_values(X, reset=False)))

    def predict(self, X) -> np.ndarray:
        """Class labels: ``classes_[1]`` where the log-odds are > 0."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(np.intp)]

    # ------------------------------------------------------------------ explanations

    def contributions(self, X) -> np.ndarray:
        """Per-row contribution of each attribute to the positive-class log-odds, shape (n, n_features + 1).

        The last column is the bias. Rows sum to :meth:`decision_function`. Logistic: ``coef * value``
        (after the ``input_kind`` transform) and the intercept; LightGBM: its SHAP values
        (``pred_contrib=True``) and expected value.
        """
        self._check_is_fitted()
        Xt = self._validate_X(X, reset=False)
        if self.model == "logistic":
            coef = self.estimator_.coef_.ravel()
            bias = np.full((Xt.shape[0], 1), float(self.estimator_.intercept_[0]))
            return np.hstack([Xt * coef, bias])
        kept = np.asarray(self.booster_.predict(Xt[:, self.kept_], pred_contrib=True), dtype=np.float64)
        out = np.zeros((Xt.shape[0], self.n_features_in_ + 1))
        out[:, self.kept_], out[:, -1] = kept[:, :-1], kept[:, -1]
        return out

    def feature_importance(self) -> pd.Series:
        """Per-attribute importance: signed coefficients (logistic) or total split gain (LightGBM)."""
        self._check_is_fitted()
        index = pd.Index(self._feature_names(), name="feature")
        if self.model == "logistic":
            return pd.Series(self.estimator_.coef_.ravel().copy(), index=index, name="coefficient")
        gain = np.zeros(self.n_features_in_)
        gain[self.kept_] = self.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=index, name="gain")


def logistic_from_coefficients(
    coef, intercept: float, feature_names, input_kind: str = "probability", threshold: float = 0.5
) -> StageTwoClassifier:
    """A fitted logistic :class:`StageTwoClassifier` with the given coefficients, no data needed: how a
    jointly trained network's linear Male head becomes a stage two (same predictions, same explanations)."""
    coef = np.asarray(coef, dtype=np.float64).reshape(-1)
    names = [str(n) for n in feature_names]
    if coef.shape != (len(names),) or not np.isfinite(coef).all() or not np.isfinite(intercept):
        raise ValueError(f"need {len(names)} finite coefficients (one per feature) and a finite intercept")
    est = StageTwoClassifier(model="logistic", input_kind=input_kind, threshold=threshold)
    est._check_params()
    inner = LogisticRegression(C=est.C, solver="lbfgs", max_iter=est.max_iter)
    inner.classes_ = np.array([0, 1])
    inner.coef_ = coef.reshape(1, -1)
    inner.intercept_ = np.array([float(intercept)])
    inner.n_features_in_ = len(names)
    inner.n_iter_ = np.zeros(1, dtype=np.int32)
    est.estimator_, est.classes_, est.n_features_in_ = inner, np.array([0, 1]), len(names)
    est.feature_names_in_ = np.asarray(names, dtype=object)
    est.fit_input_is_binary_ = False
    est.n_iter_ = np.zeros(1, dtype=np.int32)
    est.kept_ = est._kept_indices()
    return est
