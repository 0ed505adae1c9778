"""Save and load a fitted :class:`StageTwoClassifier` as JSON (+ LightGBM's text model) -- never pickle.

Layout written by :func:`save_stage_two`::

    stage_two.json             params, classes, feature names, fit_input_is_binary, and
                               logistic: coef + intercept | lightgbm: name + sha256 of the text model
    stage_two_lightgbm.txt     lightgbm only: ``booster_.model_to_string()``

A reloaded model's ``predict_proba`` equals the original's exactly: JSON floats round-trip exactly,
and a LightGBM model is predicted through ``booster_`` both when fitted and when loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

from attr2gender.errors import StageTwoFormatError
from attr2gender.tabular.estimators import MODELS, StageTwoClassifier
from attr2gender.tabular.lightgbm_text import LightGBMTextError, check_lightgbm_text

FORMAT = "attr2gender.stage_two"
FORMAT_VERSION = 1
JSON_NAME = "stage_two.json"
_CLASS_DTYPE_KINDS = set("biufUO")
# A logistic stage two reads 39 probabilities in [0, 1]: its fitted coefficients stay within tens; a
# coefficient past this bound is not a fit, it is an edit that pins every answer to 0 or 1.
MAX_COEFFICIENT = 1e4


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so params survive ``json.dumps``."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_param(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return _plain(value)


def to_json_dict(est: StageTwoClassifier) -> dict[str, Any]:
    """A JSON-serialisable description of a fitted estimator (LightGBM model inline as text)."""
    if not isinstance(est, StageTwoClassifier):
        raise TypeError(f"expected a StageTwoClassifier, got {type(est).__name__}")
    est._check_is_fitted()
    names = getattr(est, "feature_names_in_", None)
    d: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "params": {k: _json_param(v) for k, v in est.get_params(deep=False).items()},
        "classes": est.classes_.tolist(),
        "classes_dtype": est.classes_.dtype.str,
        "n_features_in": int(est.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
        "fit_input_is_binary": bool(est.fit_input_is_binary_),
        "n_iter": [int(i) for i in np.ravel(est.n_iter_)],
        "versions": {"scikit-learn": sklearn.__version__, "lightgbm": lightgbm.__version__},
    }
    if est.model == "logistic":
        inner = est.estimator_
        d["logistic"] = {
            "coef": [float(c) for c in inner.coef_.ravel()],
            "intercept": float(inner.intercept_[0]),
        }
    else:
        d["lightgbm"] = {"model_str": est.booster_.model_to_string()}
    return d


def _fail(msg: str) -> StageTwoFormatError:
    return StageTwoFormatError(f"invalid stage-two JSON: {msg}")


def _finite_floats(values: Any, what: str, n: int) -> np.ndarray:
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise _fail(f"{what} must be a list of {n} numbers (n_features_in={n}), got {got}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise _fail(f"{what} must hold finite numbers")
    return np.asarray(values, dtype=np.float64)


def from_json_dict(d: dict[str, Any]) -> StageTwoClassifier:
    """Rebuild a fitted :class:`StageTwoClassifier` from :func:`to_json_dict`'s output."""
    if not isinstance(d, dict):
        raise _fail(f"expected a JSON object, got {type(d).__name__}")
    if d.get("format") != FORMAT or d.get("format_version") != FORMAT_VERSION:
        raise _fail(
            f"format {d.get('format')!r} version {d.get('format_version')!r}; "
            f"expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    for key in ("params", "classes", "classes_dtype", "n_features_in", "fit_input_is_binary", "n_iter"):
        if key not in d:
            raise _fail(f"missing key {key!r}")

    params = d["params"]
    valid_params = set(StageTwoClassifier().get_params(deep=False))
    if not isinstance(params, dict) or set(params) - valid_params:
        raise _fail(f"params must be a dict with keys among {sorted(valid_params)}")
    if isinstance(params.get("exclude"), list):  # JSON has no tuples
        params = {**params, "exclude": tuple(params["exclude"])}
    est = StageTwoClassifier(**params)
    try:
        est._check_params()
    except ValueError as e:
        raise _fail(f"params: {e}") from e

    n = d["n_features_in"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _fail(f"n_features_in must be a positive integer, got {n!r}")
    names = d.get("feature_names_in")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
            raise _fail("feature_names_in must be null or a list of strings")
        if len(names) != n:
            raise _fail(f"feature_names_in has {len(names)} names but n_features_in={n}")
        if len(set(names)) != n:
            raise _fail("feature_names_in has duplicate names")
    dtype = np.dtype(str(d["classes_dtype"]))
    if dtype.kind not in _CLASS_DTYPE_KINDS:
        raise _fail(f"unsupported classes dtype {dtype.str!r}")
    classes = d["classes"]
    if classes != [0, 1] or not all(type(c) is int for c in classes):
        # Male is 1 and Female 0 everywhere a stage two is read (P(Male) is column 1): anything else would
        # swap or rename the answers.
        raise _fail(f"classes must be [0, 1] (Female, Male), got {classes!r}")
    if not isinstance(d["fit_input_is_binary"], bool):
        raise _fail("fit_input_is_binary must be true or false")
    n_iter = d["n_iter"]
    if not isinstance(n_iter, list) or not all(isinstance(i, int) for i in n_iter):
        raise _fail("n_iter must be a list of integers")

    if est.model == "logistic":
        block = d.get("logistic")
        if not isinstance(block, dict):
            raise _fail("model is 'logistic' but the 'logistic' block is missing")
        coef = _finite_floats(block.get("coef"), "logistic.coef", n)
        (intercept,) = _finite_floats([block.get("intercept")], "logistic.intercept", 1)
        if np.abs(coef).max(initial=0.0) > MAX_COEFFICIENT or abs(intercept) > MAX_COEFFICIENT:
            raise _fail(
                f"logistic coefficients must lie within +-{MAX_COEFFICIENT:g} (a fit on probabilities in [0, 1] "
                "stays far inside); these would saturate every answer"
            )
        inner = LogisticRegression(
            C=est.C, solver="lbfgs", max_iter=est.max_iter, class_weight=est.class_weight
        )
        inner.classes_ = np.array([0, 1])
        inner.coef_ = coef.reshape(1, n)
        inner.intercept_ = np.array([intercept])
        inner.n_features_in_ = n
        inner.n_iter_ = np.asarray(n_iter, dtype=np.int32)
        est.estimator_ = inner
    elif est.model == "lightgbm":
        block = d.get("lightgbm")
        if not isinstance(block, dict) or not isinstance(block.get("model_str"), str):
            raise _fail("model is 'lightgbm' but 'lightgbm.model_str' (the text model) is missing")
        model_str = block["model_str"]
        used = n - len(params.get("exclude") or ())
        try:  # before LightGBM reads a byte: its parser trusts indices and sizes (segfaults, endless loops)
            check_lightgbm_text(model_str, used)
        except LightGBMTextError as e:
            raise _fail(f"the LightGBM text model is refused: {e}") from None
        try:
            booster = lightgbm.Booster(model_str=model_str)
        except lightgbm.basic.LightGBMError as e:
            raise _fail(f"LightGBM could not parse the text model: {e}") from e
        if booster.num_feature() != used:
            raise _fail(
                f"the LightGBM model has {booster.num_feature()} features but {n} features minus "
                f"{n - used} excluded leave {used}"
            )
        if booster.num_model_per_iteration() != 1 or "\nobjective=binary" not in model_str:
            raise _fail("the LightGBM model is not a binary classifier")
        est.booster_ = booster
        est.estimator_ = None  # predictions go through booster_, exactly as for a freshly fitted model
    else:  # pragma: no cover - _check_params rejects other models
        raise _fail(f"model must be one of {MODELS}")

    est.classes_ = np.asarray(classes, dtype=dtype)
    est.n_features_in_ = n
    if names is not None:
        est.feature_names_in_ = np.asarray(names, dtype=object)
    est.fit_input_is_binary_ = d["fit_input_is_binary"]
    est.n_iter_ = np.asarray(n_iter, dtype=np.int32)
    try:
        est.kept_ = est._kept_indices()
    except ValueError as e:
        raise _fail(f"params.exclude: {e}") from e
    if est.model == "logistic" and np.any(
        est.estimator_.coef_[0, np.setdiff1d(np.arange(n), est.kept_)] != 0
    ):
        raise _fail("an excluded attribute has a non-zero coefficient")
    return est


def _json_path(dir_or_path: str | Path) -> Path:
    path = Path(dir_or_path)
    return path if path.suffix == ".json" else path / JSON_NAME


def save_stage_two(est: StageTwoClassifier, dir_or_path: str | Path) -> Path:
    """Write ``stage_two.json`` (+ ``stage_two_lightgbm.txt``); return the JSON's path.

    ``dir_or_path`` is a directory (created if needed) or a ``*.json`` file path; a LightGBM text
    model goes next to it as ``<stem>_lightgbm.txt``.
    """
    json_path = _json_path(dir_or_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    d = to_json_dict(est)
    if est.model == "lightgbm":
        model_str = d["lightgbm"].pop("model_str")
        txt_path = json_path.with_name(f"{json_path.stem}_lightgbm.txt")
        txt_path.write_text(model_str, encoding="utf-8")
        d["lightgbm"]["model_file"] = txt_path.name
        d["lightgbm"]["sha256"] = hashlib.sha256(model_str.encode("utf-8")).hexdigest()
    json_path.write_text(json.dumps(d, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return json_path


def load_stage_two(path: str | Path) -> StageTwoClassifier:
    """Load what :func:`save_stage_two` wrote (``path``: the directory or the JSON file)."""
    json_path = _json_path(path)
    try:
        d = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise StageTwoFormatError(f"{json_path} is not valid JSON: {e}") from e
    block = d.get("lightgbm") if isinstance(d, dict) else None
    if isinstance(block, dict) and "model_file" in block:
        name = block["model_file"]
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise _fail(f"lightgbm.model_file must be a bare file name next to the JSON, got {name!r}")
        model_str = (json_path.parent / name).read_text(encoding="utf-8")
        digest = hashlib.sha256(model_str.encode("utf-8")).hexdigest()
        if digest != block.get("sha256"):
            raise _fail(f"{name} does not match the sha256 recorded in {json_path.name}")
        block = {k: v for k, v in block.items() if k not in ("model_file", "sha256")}
        d = {**d, "lightgbm": {**block, "model_str": model_str}}
    return from_json_dict(d)
