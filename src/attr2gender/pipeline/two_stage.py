"""The two-stage route: image -> 39 attribute probabilities (stage one) -> P(Male) (stage two).

One image pass: stage two reads stage one's probabilities from the same forward pass, so the route
costs the tabular model on top (microseconds), not a second CNN.
Its selling point is :meth:`Attr2GenderPipeline.explain`: every decision decomposes into named
attributes (logistic: coefficient x value; LightGBM: SHAP-style ``pred_contrib``).
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..data.faces import MIN_EYE_DISTANCE
from ..tabular import StageTwoClassifier, save_stage_two
from ..tabular.fitting import StageTwoData, fit_stage_two
from .base import GenderPredictor, _MovedToTraining
from .cache import StageOneCache
from .concept_quality import NOT_CONCEPTS, ConceptRecord
from .concepts import apply_intervention, intervention_matrix
from .inputs import expand_images

# The first entry of Explanation.top: where every image's log-odds start before any attribute pushes. Not a
# base rate: for logistic regression the intercept, the log-odds of an image with all 39 attributes at 0
# (+2.4 reads as 92 % Male where CelebA is 42 % male); for LightGBM its expected score over training rows.
BIAS_LABELS = {
    "logistic": "(intercept: all 39 attributes at 0)",
    "lightgbm": "(start: the average training row)",
}
BIAS_LABEL = BIAS_LABELS["logistic"]
REPR_MAX_IMAGES = 20  # repr(explanation) lists this many images, then says how many more


@dataclass
class Explanation:
    """Why the two-stage pipeline decided what it did.

    Per image (row ``i`` of ``predictions``, ``contributions`` and :attr:`log_odds`), the ``bias`` plus the
    pushes of all 39 attributes add up to the image's Male log-odds, and ``1 / (1 + exp(-log_odds))`` is the
    ``male_probability`` that ``predict`` gave it (temperature scaling included: see
    :meth:`Attr2GenderPipeline.explain`). A row that got no prediction (its ``error`` says why) is all NaN.
    """

    predictions: pd.DataFrame  # predict() rows
    contributions: pd.DataFrame  # per image: each attribute's push on the Male log-odds, plus "bias"
    global_importance: pd.Series  # coefficients (signed) or LightGBM gain, sorted by |value|
    importance_change: pd.DataFrame | None = None  # after a concept edit: importance before and after
    bias_label: str = BIAS_LABEL  # what "bias" is for this stage two (BIAS_LABELS)

    @property
    def log_odds(self) -> pd.Series:
        """Per row, ``bias`` + every attribute's push: the Male log-odds behind ``male_probability``."""
        return self.contributions.sum(axis=1, skipna=False).rename("log_odds")

    def top(self, row: int, k: int = 5, bias: bool = True) -> pd.Series:
        """Image ``row``'s bias, then the ``k`` attributes that pushed it hardest, in Male log-odds (signed:
        + toward Male, - toward Female), largest ``|push|`` first.

        The first entry (:attr:`bias_label`) is where every image starts before any attribute pushes:
        stage two's intercept (logistic regression; the log-odds of an image with every attribute at 0, not
        a base rate) or its expected raw score over the training rows (LightGBM). It is shown because it can
        be large: an image predicted 0.39 Male may show only negative pushes when the intercept is +3. The bias and the pushes
        of all 39 attributes (not only the ``k`` shown) add up to :attr:`log_odds` of the row, and
        ``1 / (1 + exp(-log_odds))`` is its predicted ``male_probability``. ``bias=False``: the ``k``
        attributes alone. Raises ``ValueError`` for a row that got no prediction."""
        contrib = self.contributions.iloc[row]
        if contrib.isna().all():
            error = self.predictions["error"].iloc[row] if "error" in self.predictions else ""
            raise ValueError(f"row {row} ({contrib.name}) got no prediction, so nothing to explain: {error}")
        pushes = contrib.drop("bias")
        # Stable sort: ties (e.g. attributes a concept edit zeroed) keep CelebA's order, run after run.
        pushes = pushes.reindex(pushes.abs().sort_values(ascending=False, kind="stable").index)[:k]
        # Built from a dict, not pd.concat: concat turns the series' names into an index, and a file name
        # that is not UTF-8 cannot become an Arrow string.
        values = ({self.bias_label: float(contrib["bias"])} if bias else {}) | pushes.to_dict()
        return pd.Series(values, dtype=float, name=contrib.name)

    def line(self, row: int, k: int = 3) -> str:
        """Image ``row`` in one line that adds up: its label and P(Male), then the terms its Male log-odds
        is the sum of (the intercept, the ``k`` strongest pushes, the other attributes as one term), then
        that sum, e.g. ``Female, P(Male) 0.16 = intercept +2.43, No_Beard -2.11, ..., 36 others +0.89:
        log-odds -1.65``. A row without a prediction gives its error."""
        probability = float(self.predictions["male_probability"].iloc[row])
        if np.isnan(probability):
            return f"error: {self.predictions['error'].iloc[row]}"
        contrib = self.contributions.iloc[row]
        top = self.top(row, k)
        rest = float(contrib.drop("bias").sum() - top.iloc[1:].sum())
        others = len(contrib) - 1 - (len(top) - 1)
        terms = [f"{self.bias_label} {top.iloc[0]:+.2f}"]
        terms += [f"{name} {value:+.2f}" for name, value in top.iloc[1:].items()]
        if others:
            terms.append(f"{others} others {rest:+.2f}")
        label = self.predictions["label"].iloc[row]
        return (
            f"{label}, P(Male) {probability:.2f} = {', '.join(terms)}: log-odds {float(contrib.sum()):+.2f}"
        )

    def __repr__(self) -> str:
        """One line per image: name, label, P(Male), bias and the three strongest pushes (or its error)."""
        n = len(self.predictions)
        shown = min(n, REPR_MAX_IMAGES)
        names = [_short_name(self.predictions, i) for i in range(shown)]
        width = max((len(name) for name in names), default=0)
        lines = [f"Explanation({n} image{'' if n == 1 else 's'})"]
        for i, name in enumerate(names):
            lines.append(f"  {name.ljust(width)}  {self._summary(i)}")
        if n > shown:
            lines.append(f"  ... {n - shown} more")
        return "\n".join(lines)

    def _summary(self, i: int) -> str:
        probability = float(self.predictions["male_probability"].iloc[i])
        if np.isnan(probability):
            return f"error: {self.predictions['error'].iloc[i]}"
        top = self.top(i, 3)
        pushes = ", ".join(f"{name} {value:+.2f}" for name, value in top.iloc[1:].items())
        label = self.predictions["label"].iloc[i]
        start = "intercept" if self.bias_label == BIAS_LABELS["logistic"] else "start"
        return f"{label:<6} {probability:.2f}  {start} {top.iloc[0]:+.2f} | {pushes}"


def _short_name(predictions: pd.DataFrame, i: int) -> str:
    """A row's image as the repr shows it: a path's file name (the full path is in ``predictions``), an
    in-memory image's position, and the face when ``faces="all"`` gave several rows per image."""
    image = predictions["image"].iloc[i]
    # A file name that is not UTF-8 keeps its bytes as surrogates, which no terminal can print: escape them.
    name = (
        os.fsencode(Path(image).name).decode("utf-8", "backslashreplace")
        if isinstance(image, str)
        else f"#{image}"
    )
    if "face_index" in predictions and not pd.isna(predictions["face_index"].iloc[i]):
        name += f" face {int(predictions['face_index'].iloc[i])}"
    return name


class Attr2GenderPipeline(GenderPredictor):
    """Stage one (CNN, 39 attributes) + stage two (tabular, attributes -> Male)."""

    route = "two_stage"
    trained_model = "AttributeModel"
    outputs = ("multilabel",)
    extra_columns = ("attributes",)

    def __init__(
        self,
        attribute_model,
        stage_two: StageTwoClassifier,
        preprocessing=224,
        threshold: float = 0.5,
        cache_dir: str | Path | None = None,
        **kw,
    ):
        if stage_two is not _STAGE_ONE_ONLY:
            _check_stage_two_columns(stage_two)
        super().__init__(attribute_model, preprocessing, threshold, **kw)
        self.stage_two = stage_two
        self.cache_dir = (
            cache_dir  # on-disk cache of stage one's outputs for file paths (no pickle); None = off
        )
        self.last_cache_hit = False  # whether the last attribute_probabilities call was served from the cache
        self.edited_from: StageTwoClassifier | None = None  # stage two before a concept edit
        # Concept quality on validation (set by training, stored in bundles): None when unknown (built from
        # parts, or a bundle saved before it was recorded).
        self.concepts: ConceptRecord | None = None

    def _warn_if_not_concepts(self, what: str) -> None:
        """One line when the 39 outputs are not reliable concepts (see attr2gender.pipeline.concept_quality)."""
        if self.concepts is not None and not self.concepts.reliable:
            warnings.warn(f"{what}: {NOT_CONCEPTS} ({self.concepts.why()})", stacklevel=3)

    def __repr__(self) -> str:
        text = super().__repr__()
        if self.concepts is not None and not self.concepts.reliable:
            text = text[:-1] + f"; {NOT_CONCEPTS})"
        return text

    @property
    def attribute_model(self):
        """Stage one: the plain image model from pixels to the 39 attribute probabilities."""
        return self.image_model

    @classmethod
    def _stage_one_only(cls, attribute_model, preprocessing, **kw) -> Attr2GenderPipeline:
        """A pipeline without stage two, for the trainers to compute stage one's outputs on the rows stage
        two is then fitted on. Never returned to users: they get ``with_stage_two(...)`` of it."""
        return cls(attribute_model, _STAGE_ONE_ONLY, preprocessing, **kw)

    def extra_column_names(self, key: str) -> list[str]:
        return list(STAGE_ONE_ATTRIBUTES)

    def stage_two_probability(self, attributes: np.ndarray) -> np.ndarray:
        if self.stage_two is _STAGE_ONE_ONLY:
            raise RuntimeError("this pipeline has no stage two yet; use with_stage_two(...)")
        return self.calibrated(male_probability(self.stage_two, attributes))

    def _predict_batch(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        attributes = self._forward(x)
        return {"male_probability": self.stage_two_probability(attributes), "attributes": attributes}

    def predict(
        self,
        images,
        errors: str = "coerce",
        progress: bool | None = None,
        batch_size: int | None = None,
        align: str | None = None,
        faces: str = "center",
        fallback: str = "error",
        min_eye_distance: float = MIN_EYE_DISTANCE,
        max_pixels: int | None = None,
        intervene=None,
    ) -> pd.DataFrame:
        """One row per input image, in input order: ``image``, ``male_probability``, ``label``, the 39 attribute
        probabilities and ``error``. Every argument of :meth:`attr2gender.pipeline.base.GenderPredictor.predict`
        (``errors``, ``progress``, ``batch_size``; the photo alignment ``align``, ``faces``, ``fallback``,
        ``min_eye_distance``; the pixel cap ``max_pixels``), and:

        ``intervene``: a person corrects concepts and the decision follows. ``{"Eyeglasses": 1,
        "Wearing_Lipstick": 0}`` overrides those stage-one outputs (values in [0, 1]) for every image before
        stage two; a DataFrame with one row per input image does it per image (NaN keeps stage one's value;
        with ``faces="all"`` an image's row applies to each of its faces). It is checked before any image is
        read. The attribute columns then show the values stage two read, and ``male_probability_intervened``
        / ``label_intervened`` sit next to the original ``male_probability`` / ``label``."""
        alignment = self.alignment(align, faces, fallback, min_eye_distance)
        matrix = None
        if intervene is not None:
            self._warn_if_not_concepts("predict(intervene=...)")
            matrix = intervention_matrix(intervene, len(expand_images(images)))  # before any image is read
        rows = self._run(images, errors, progress, batch_size, alignment=alignment, max_pixels=max_pixels)
        frame = self._frame(rows)
        if matrix is None:
            return frame
        attributes = frame[list(STAGE_ONE_ATTRIBUTES)].to_numpy()
        changed = apply_intervention(attributes, matrix[np.asarray(rows.positions, dtype=int)])
        ok = ~np.isnan(attributes).any(axis=1)
        male = np.full(len(frame), np.nan)
        if ok.any():
            male[ok] = self.stage_two_probability(changed[ok])
        frame[list(STAGE_ONE_ATTRIBUTES)] = changed
        frame.insert(3, "male_probability_intervened", male)
        label = np.where(np.isnan(male), None, np.where(male >= self.threshold, "Male", "Female"))
        frame.insert(4, "label_intervened", label)
        return frame

    # --- stage one alone, cached ---
    def attribute_probabilities(
        self, images, progress: bool | None = None, align: str | None = None, read_cache: bool = True
    ) -> tuple[np.ndarray, list[str]]:
        """Stage one's (n, 39) probabilities and per-row errors, one row per input image (its face nearest
        the centre with ``align="auto"``). For file paths with ``cache_dir`` set, cached on disk by (model
        hash, preprocessing and alignment, image list), so refitting or swapping stage two never re-runs the
        CNN. ``read_cache=False`` runs the CNN even when a cached answer exists (and refreshes the cache):
        for anything that is timed."""
        alignment = self.alignment(align)
        items = expand_images(images)
        self.last_cache_hit = False
        if not (self.cache_dir and items and all(isinstance(source, Path) for _, source in items)):
            return self._stage_one(images, progress, alignment)
        paths = [source for _, source in items]
        cache = StageOneCache(self.cache_dir)
        what = self.preprocessing | ({"align": alignment.cache_key()} if alignment.enabled else {})
        key, described = cache.key(self.model_hash, what, paths)
        hit = cache.load(key, len(paths), len(STAGE_ONE_ATTRIBUTES)) if read_cache else None
        if hit is not None:
            self.last_cache_hit = True
            return hit
        probs, errors = self._stage_one(paths, progress, alignment)
        cache.store(key, described, probs, errors)
        return probs, errors

    def _stage_one(self, images, progress, alignment) -> tuple[np.ndarray, list[str]]:
        stage_one = lambda x: {"attributes": self._forward(x)}  # noqa: E731
        rows = self._run(images, "coerce", progress, None, stage_one, alignment)
        n = len(rows.errors)
        return rows.outputs.get("attributes", np.full((n, len(STAGE_ONE_ATTRIBUTES)), np.nan)), rows.errors

    def with_stage_two(
        self,
        stage_two: StageTwoClassifier,
        metrics: dict | None = None,
        config: dict | None = None,
    ) -> Attr2GenderPipeline:
        """The same stage one with another stage two (no retraining of the CNN); ``metrics`` and ``config``
        describe the new pipeline (the config defaults to this one's)."""
        _check_stage_two_columns(stage_two)
        other = copy.copy(self)  # the same stage one, runtime, cache and settings
        other.stage_two = stage_two
        other.metrics = metrics
        other.config = dict(self.config if config is None else config)
        other.edited_from = None
        other.temperature = 1.0  # fitted for the old stage two's probabilities
        return other

    # --- concept editing ---
    def without_attributes(
        self,
        names,
        images=None,
        truth: pd.DataFrame | None = None,
        objective: str = "erm",
        data: StageTwoData | None = None,
    ) -> Attr2GenderPipeline:
        """A new pipeline whose stage two is refitted without the attributes ``names`` (for logistic
        regression their coefficient is fixed at 0; LightGBM never sees them). Stage one is not retrained.

        Refits on ``data``, the rows stage two was fitted on (``report.stage_two_data`` from
        ``train_two_stage``), or on ``images`` whose
        true attributes are ``truth`` (a DataFrame with the 40 CelebA columns, one row per image; stage
        one's outputs come from its cache when the images are paths). ``objective="worst_group"`` refits
        for the worst Male x makeup group instead of the average."""
        names = list(dict.fromkeys([names] if isinstance(names, str) else list(names)))
        unknown = [n for n in names if n not in STAGE_ONE_ATTRIBUTES]
        if unknown:
            raise ValueError(
                f"unknown attribute(s) {unknown}; choose among the 39: {', '.join(STAGE_ONE_ATTRIBUTES)}"
            )
        if images is not None:
            if truth is None or len(truth) != len(expand_images(images)):
                raise ValueError("pass truth=, a DataFrame of the 40 true attributes with one row per image")
            probs, errors = self.attribute_probabilities(images)
            ok = np.array([not e for e in errors])
            kind = self.stage_two.input_kind
            data = StageTwoData(
                pd.DataFrame(probs[ok], columns=list(STAGE_ONE_ATTRIBUTES)),
                truth["Male"].to_numpy()[ok],
                truth.iloc[np.flatnonzero(ok)],
                None,
                kind,
            )
        elif data is None:
            raise ValueError(
                "refit on what? pass data=report.stage_two_data (the rows stage two was fitted on, from "
                "train_two_stage), or images= and truth= to refit on"
            )
        params = self.stage_two.get_params()
        exclude = list(dict.fromkeys([*params.get("exclude", ()), *names]))
        stage_two, _ = fit_stage_two(
            data,
            model=params["model"],
            objective=objective,
            exclude=exclude,
            threshold=params["threshold"],
            class_weight=params["class_weight"],
            seed=params["random_state"],
        )
        edited = self.with_stage_two(stage_two)
        edited.edited_from = self.edited_from or self.stage_two
        edited.config = dict(self.config) | {"stage_two_exclude": exclude}
        return edited

    def importance_change(self) -> pd.DataFrame:
        """Stage two's attribute importance before and after the concept edit (``before`` is NaN for a
        pipeline that was not edited), sorted by the larger of the two."""
        after = self.global_importance().rename("after")
        if self.edited_from is None:
            before = pd.Series(np.nan, index=after.index, name="before")
        else:
            before = (
                self.edited_from.feature_importance().set_axis(list(STAGE_ONE_ATTRIBUTES)).rename("before")
            )
        frame = pd.concat([before, after], axis=1)
        order = frame.abs().max(axis=1).sort_values(ascending=False).index
        return frame.loc[order]

    # --- explanation ---
    def explain(self, images, progress: bool | None = None, **alignment) -> Explanation:
        """Per row of :meth:`predict` (``alignment``: its ``align``, ``faces``, ``fallback`` and
        ``min_eye_distance``), each attribute's contribution to the Male log-odds, and the global ranking.

        Each row's bias and 39 pushes add up to the log-odds of the ``male_probability`` it was given. With a
        temperature T (``calibrate: true``) stage two's contributions are divided by T, as its log-odds are
        before the sigmoid, so that stays true (up to a stage-two log-odds beyond about +-16, where
        calibration clips the probability to 1e-7 from 0 or 1 first)."""
        self._warn_if_not_concepts("explain()")
        predictions = self.predict(images, progress=progress, **alignment)
        contributions = pd.DataFrame(
            self.attribute_contributions(predictions[list(STAGE_ONE_ATTRIBUTES)].to_numpy()),
            columns=[*STAGE_ONE_ATTRIBUTES, "bias"],
            index=predictions["image"],
        )
        return Explanation(
            predictions,
            contributions,
            self.global_importance(),
            self.importance_change() if self.edited_from is not None else None,
            self.bias_label,
        )

    @property
    def bias_label(self) -> str:
        """What the bias of an explanation is for this stage two (:data:`BIAS_LABELS`)."""
        return BIAS_LABELS.get(getattr(self.stage_two, "model", "logistic"), BIAS_LABEL)

    def attribute_contributions(self, attributes: np.ndarray) -> np.ndarray:
        """Per row of ``attributes`` ((n, 39) concept values, stage one's or a person's corrections), each
        attribute's push on the Male log-odds and, last, the bias: (n, 40). A row adds up to the log-odds of
        :meth:`stage_two_probability` of it (the temperature divides both); a row with a NaN is all NaN. One
        computation for :meth:`explain` and anything that edits concepts and shows why (the demo page)."""
        attributes = np.asarray(attributes, dtype=float)
        ok = ~np.isnan(attributes).any(axis=1)
        contrib = np.full((len(attributes), len(STAGE_ONE_ATTRIBUTES) + 1), np.nan)
        if ok.any():
            frame = pd.DataFrame(attributes[ok], columns=list(STAGE_ONE_ATTRIBUTES))
            if getattr(self.stage_two, "feature_names_in_", None) is None:
                frame = frame.to_numpy()
            contrib[ok] = self.stage_two.contributions(frame) / self.temperature
        return contrib

    def global_importance(self) -> pd.Series:
        importance = self.stage_two.feature_importance()
        importance.index = list(STAGE_ONE_ATTRIBUTES)
        return importance.reindex(importance.abs().sort_values(ascending=False).index)

    # --- persistence ---
    def _save_parts(self, directory: Path) -> None:
        save_stage_two(self.stage_two, directory)

    def _manifest(self) -> dict:
        concepts = {"concepts": self.concepts.to_json()} if self.concepts is not None else {}
        return (
            super()._manifest()
            | concepts
            | {
                "attribute_names": list(STAGE_ONE_ATTRIBUTES),
                "stage_two": {"model": self.stage_two.model, "input_kind": self.stage_two.input_kind},
            }
        )

    @classmethod
    def from_parts(
        cls, attribute_model, stage_two: StageTwoClassifier, image_size: int = 224, **kw
    ) -> Attr2GenderPipeline:
        """Build from already-trained parts: a stage-one model (plain or Lightning) and a fitted stage two."""
        return cls(attribute_model, stage_two, image_size, **kw)

    train = _MovedToTraining(
        "attr2gender.train_two_stage(config, **overrides), which returns (pipeline, report)"
    )
    fit = _MovedToTraining("attr2gender.train_two_stage(config, **overrides)[0]")
    load = _MovedToTraining("attr2gender.load_pipeline(directory)")


_STAGE_ONE_ONLY = object()  # the stage two of a pipeline the trainers use for stage one alone


def male_probability(stage_two: StageTwoClassifier, attributes: np.ndarray) -> np.ndarray:
    """P(Male) from (n, 39) stage-one outputs in ``STAGE_ONE_ATTRIBUTES`` order."""
    # The array fast path: no DataFrame per batch, which at batch 1 cost as much as a tenth of the CNN.
    male = stage_two.positive_probability(attributes)
    return male if list(stage_two.classes_).index(1) == 1 else 1.0 - male


def _check_stage_two_columns(stage_two: StageTwoClassifier) -> None:
    if not hasattr(stage_two, "classes_"):
        raise ValueError("stage_two must be a fitted StageTwoClassifier (call fit first)")
    if stage_two.n_features_in_ != len(STAGE_ONE_ATTRIBUTES):
        raise ValueError(
            f"stage two was fitted on {stage_two.n_features_in_} features, expected the 39 attributes"
        )
    names = getattr(stage_two, "feature_names_in_", None)
    if names is not None and [str(n) for n in names] != list(STAGE_ONE_ATTRIBUTES):
        raise ValueError(
            "stage two's feature names must be the 39 attributes in CelebA file order "
            "(attr2gender.data.STAGE_ONE_ATTRIBUTES); refit it on a frame with those columns"
        )
    if set(np.asarray(stage_two.classes_).tolist()) != {0, 1}:
        raise ValueError(f"stage two's classes must be 0/1 (Female/Male), got {list(stage_two.classes_)}")
