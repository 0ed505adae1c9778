"""``adapt``: fit a pipeline's head to a user's own photos with a few hundred labels, keeping its image model.

A concept bottleneck's decision is a 40-parameter model over named attributes: when a user's photos differ
from CelebA (other ages, ethnicities, lighting, cameras), refitting it on their labelled photos is cheap and
keeps the concepts. The direct route's counterpart is last-layer retraining on frozen features (DFR:
Kirichenko et al., ICLR 2023).

- two-stage (and joint, whose head is its stage two): stage two refitted on stage one's outputs for the
  photos, optionally mixed with the rows it was first fitted on (``original_weight``);
- direct: the image model's final Linear refitted (logistic regression) on the features it reads.

Adapting never makes a model worse without a word: a held-out share of the photos (``holdout``, 20 % by
default, stratified by label) is scored before and after, and a drop is warned about. The new pipeline
records what it was adapted on (``adapted``; saved in its bundle); the original is unchanged.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import stat
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.attributes import STAGE_ONE_ATTRIBUTES
from ..data.labelled_faces import parse_male_label
from ..errors import ConfigError
from ..models.registry import BACKBONES
from ..tabular import StageTwoClassifier, logistic_from_coefficients
from .inputs import expand_images

MIN_PER_CLASS = 10  # photos of each class adapting needs (after faceless photos are dropped)


@dataclass(frozen=True)
class AdaptRecord:
    """What a pipeline was adapted on, and what the held-out photos said."""

    n_photos: int  # photos the head was fitted on
    n_holdout: int  # photos held out to check it
    photos_sha256: str  # of the sorted (name, label) list: which photos, without storing their names
    accuracy_before: float | None  # on the held-out photos (None: no hold-out)
    accuracy_after: float | None
    original_weight: float = 0.0
    C: float = 1.0  # the penalty used (chosen by cross-validation with C="auto")

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def unchanged(self) -> bool:
        """C = 0 (cross-validation's choice, or given): the head was held at the original's."""
        return self.C == 0

    def describe(self) -> str:
        """One line: on what it was adapted and what the held-out photos said."""
        if self.unchanged:
            return (
                f"adapt kept the head unchanged (C=0: on {self.n_photos} photos cross-validation found no "
                "change that helped)"
            )
        said = (
            f"; held-out accuracy {self.accuracy_before:.3f} before, {self.accuracy_after:.3f} after "
            f"(n={self.n_holdout})"
            if self.accuracy_before is not None
            else "; no photos held out to check it"
        )
        return f"adapted on {self.n_photos} of your photos (C={self.C:g}){said}"

    @classmethod
    def from_json(cls, d: dict) -> AdaptRecord:
        try:
            record = cls(
                int(d["n_photos"]),
                int(d["n_holdout"]),
                str(d["photos_sha256"]),
                None if d.get("accuracy_before") is None else float(d["accuracy_before"]),
                None if d.get("accuracy_after") is None else float(d["accuracy_after"]),
                float(d.get("original_weight", 0.0)),
                float(d.get("C", 1.0)),
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError("adapted must hold n_photos, n_holdout and photos_sha256") from None
        shares = [v for v in (record.accuracy_before, record.accuracy_after) if v is not None]
        if record.n_photos < 0 or record.n_holdout < 0 or not all(0 <= v <= 1 for v in shares):
            raise ValueError("adapted: counts must be >= 0 and accuracies in [0, 1]")
        if not valid_C(record.C):
            raise ValueError(
                f"adapted.C must be 0 or from {C_BOUNDS[0]:g} to {C_BOUNDS[1]:g}, got {record.C!r}"
            )
        if not (math.isfinite(record.original_weight) and 0 <= record.original_weight < 1):
            raise ValueError(
                f"adapted.original_weight must be from 0 to below 1, got {record.original_weight!r}"
            )
        return record


def _head_path(pipeline) -> str:
    hparams = getattr(pipeline.image_model, "meta", {}).get("hparams") or {}
    backbone = str(pipeline.config.get("backbone") or hparams.get("backbone") or "")
    return BACKBONES.resolve(backbone).head[0]


@torch.no_grad()
def head_inputs(pipeline, images, progress=None, align=None) -> tuple[np.ndarray, list[str]]:
    """What the head reads, one row per image (NaN where no face was usable) and the per-row errors:
    stage one's 39 probabilities (two-stage), or the features the final Linear reads (direct)."""
    alignment = pipeline.alignment(align)
    if pipeline.route == "two_stage":
        return pipeline.attribute_probabilities(images, progress=progress, align=alignment.mode)
    net = pipeline.image_model.net.eval()
    head = net.get_submodule(_head_path(pipeline))
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float()))

    def features(x: torch.Tensor) -> dict[str, np.ndarray]:
        captured.clear()
        net(x)
        return {"features": captured[0].cpu().numpy().astype(np.float64)}

    try:
        rows = pipeline._run(images, "coerce", progress, None, features, alignment)
    finally:
        hook.remove()
    width = head.in_features
    return rows.outputs.get("features", np.full((len(rows.errors), width), np.nan)), rows.errors


def _holdout_split(y: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held out), stratified by label, seeded."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        k = int(round(holdout * len(idx)))
        held += list(idx[:k])
        fit += list(idx[k:])
    return np.sort(np.asarray(fit, dtype=int)), np.sort(np.asarray(held, dtype=int))


def _current_direct_head(pipeline) -> tuple[np.ndarray, float]:
    """The direct head as one logit: P(Male) = sigmoid(x . w + b) (softmax heads: the logit difference)."""
    head = pipeline.image_model.net.get_submodule(_head_path(pipeline))
    W, b = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    if W.shape[0] == 2:
        return W[1] - W[0], float(b[1] - b[0])
    return W[0], float(b[0])


def _set_direct_head(model, path: str, weight: np.ndarray, bias: float) -> None:
    head = model.net.get_submodule(path)
    with torch.no_grad():
        if head.weight.shape[0] == 2:  # softmax over (Female, Male): logits (0, x . w + b)
            head.weight.zero_()
            head.bias.zero_()
            head.weight[1] = torch.as_tensor(weight, dtype=head.weight.dtype)
            head.bias[1] = float(bias)
        else:
            head.weight[0] = torch.as_tensor(weight, dtype=head.weight.dtype)
            head.bias[0] = float(bias)


def _residual_logistic(
    X: np.ndarray,
    y: np.ndarray,
    w0: np.ndarray,
    b0: float,
    C: float,
    weights: np.ndarray | None = None,
    frozen: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """A logistic regression that starts at (``w0``, ``b0``) and is penalised for moving away from it:
    minimise the (weighted) mean log-loss + (|delta w|^2 + delta b^2) / (2 C n) over standardised inputs
    (scikit-learn's scale of C). With a few photos the head stays near what CelebA taught it; with many it moves as far as
    they say. ``C=0``: no move at all. ``frozen`` columns (attributes a concept edit removed) keep their coefficient."""
    if C == 0:
        return np.asarray(w0, dtype=np.float64).copy(), float(b0)
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = torch.as_tensor((X - mean) / std, dtype=torch.float64)
    target = torch.as_tensor(y, dtype=torch.float64)
    offset = torch.as_tensor(X @ w0 + b0, dtype=torch.float64)
    sample = torch.ones(len(y), dtype=torch.float64) if weights is None else torch.as_tensor(weights)
    delta = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    shift = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    keep = torch.ones(X.shape[1], dtype=torch.float64)
    if frozen is not None:
        keep[torch.as_tensor(frozen)] = 0.0
    optimizer = torch.optim.LBFGS([delta, shift], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logit = offset + Z @ (delta * keep) + shift
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(logit, target, reduction="none") * sample
        ).mean()
        # The intercept is held near the original too: a few photos of one camera must not move every answer.
        loss = loss + ((delta * keep).pow(2).sum() + shift.pow(2).sum()) / (2 * C * len(y))
        loss.backward()
        return loss

    optimizer.step(closure)
    step = (delta * keep).detach().numpy() / std
    return w0 + step, float(b0 + float(shift.detach()) - (mean * step).sum())


def fit_head(
    pipeline,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    C: float = 1.0,
    prior: str = "original",
):
    """The refitted head: a stage two like the pipeline's (two-stage), or ``(weight, bias)`` of the direct
    Linear as one logit. ``prior="original"``: a logistic head starts at the pipeline's own and is pulled
    back towards it (:func:`_residual_logistic`); ``"none"``: fitted from scratch (LightGBM always is)."""
    if C == 0:  # keep the trained head as it is
        return (
            copy.deepcopy(pipeline.stage_two)
            if pipeline.route == "two_stage"
            else _current_direct_head(pipeline)
        )
    if pipeline.route == "two_stage":
        old = pipeline.stage_two
        frame = pd.DataFrame(X, columns=list(STAGE_ONE_ATTRIBUTES))
        if prior == "none" or old.model != "logistic":
            params = {k: v for k, v in old.get_params().items() if k != "C"} | {"C": C}
            return StageTwoClassifier(**params).fit(frame, y, sample_weight=weights)
        Xt = old._validate_X(frame, reset=False)  # the stage's own input transform (hard: thresholded)
        w0, b0 = old.estimator_.coef_.ravel().astype(np.float64), float(old.estimator_.intercept_[0])
        frozen = np.setdiff1d(np.arange(Xt.shape[1]), old.kept_)
        w, b = _residual_logistic(Xt, y, w0, b0, C, weights, frozen)
        return logistic_from_coefficients(
            w, b, list(STAGE_ONE_ATTRIBUTES), input_kind=old.input_kind, threshold=old.threshold
        )
    if prior == "none":
        w0, b0 = np.zeros(X.shape[1]), 0.0
    else:
        w0, b0 = _current_direct_head(pipeline)
    return _residual_logistic(X, y, w0, b0, C, weights)


# The penalties C="auto" chooses among, by cross-validation on the photos. 0 keeps the trained head as it is:
# when no amount of moving predicts the held-out folds better, the photos do not support moving it.
AUTO_C = (0.0, 0.01, 0.1, 1.0, 10.0)
# C given by hand: 0 (keep the head) or within these; 1e-300 would overflow the fit after all the work.
C_BOUNDS = (1e-6, 1e6)


def valid_C(C) -> bool:  # noqa: N802 - C is scikit-learn's name for the inverse penalty
    return (
        isinstance(C, int | float)
        and not isinstance(C, bool)
        and math.isfinite(C)
        and (C == 0 or C_BOUNDS[0] <= C <= C_BOUNDS[1])
    )


def choose_C(pipeline, X: np.ndarray, y: np.ndarray, prior: str, seed: int = 0, folds: int = 5) -> float:
    """The C of :data:`AUTO_C` with the lowest cross-validated log-loss on the user's own photos (stratified
    folds, seeded): how far the head should move is a question their photos answer, not a constant."""
    k = int(min(folds, np.bincount(y, minlength=2).min()))
    if k < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        fold[idx] = np.arange(len(idx)) % k
    losses = {}
    for C in AUTO_C if prior == "original" else [c for c in AUTO_C if c > 0]:  # "none" never keeps the head
        total = 0.0
        for f in range(k):
            train, test = fold != f, fold == f
            head = fit_head(pipeline, X[train], y[train], None, C, prior)
            p = np.clip(head_probability(pipeline, head, X[test]), 1e-7, 1 - 1e-7)
            total += float(-(y[test] * np.log(p) + (1 - y[test]) * np.log(1 - p)).sum())
        losses[C] = total
    return min(losses, key=losses.get)


def head_probability(pipeline, head, X: np.ndarray) -> np.ndarray:
    """P(Male) of ``head`` (from :func:`fit_head`, or None for the pipeline's own) on head inputs ``X``."""
    if pipeline.route == "two_stage":
        if head is None:
            return pipeline.stage_two_probability(X)
        return head.predict_proba(pd.DataFrame(X, columns=list(STAGE_ONE_ATTRIBUTES)))[:, 1]
    weight, bias = _current_direct_head(pipeline) if head is None else head
    male = 1.0 / (1.0 + np.exp(-(X @ weight + bias)))
    return pipeline.calibrated(male) if head is None else male  # a new head starts uncalibrated


def read_labels_csv(path) -> tuple[list, list[int], list[str]]:
    """A user's ``path,male`` rows (other columns are ignored): the photo paths
    (relative ones resolved against the CSV's folder), their labels, and one problem line per row that
    was left out (a missing file, a label other than 1/0 or Male/Female, a path given twice). A file without
    the two columns raises :class:`ConfigError`."""
    path = Path(path)
    try:
        # The csv module on text decoded with surrogateescape: a path that is not UTF-8 is one row's
        # problem (its bytes kept), never the whole file's.
        text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, csv.Error) as exc:
        raise ConfigError(
            f"{path}: cannot read it as CSV ({exc}); give a CSV with columns path,male"
        ) from None
    header = [h.strip() for h in rows[0]] if rows else []
    missing = [c for c in ("path", "male") if c not in header]
    if missing:
        raise ConfigError(
            f"{path} has no {' or '.join(missing)} column (columns: {', '.join(header)}); "
            "give a CSV with columns path,male (male: 1/0 or Male/Female)"
        )
    at_path, at_male = header.index("path"), header.index("male")
    pairs = [
        (r[at_path] if len(r) > at_path else "", r[at_male] if len(r) > at_male else "")
        for r in rows[1:]
        if r
    ]
    paths, labels, problems, seen = [], [], [], {}
    for row, (name, label) in enumerate(pairs, start=2):  # line 1: the header
        where = f"row {row} ({os.fsencode(name)[:80].decode('utf-8', 'backslashreplace')})"
        if not name.strip():
            problems.append(f"row {row}: empty path")
            continue
        try:
            value = parse_male_label(label)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        try:  # a NUL byte or a name too long for the file system: this row's problem, not the file's
            photo = Path(name) if Path(name).is_absolute() else path.parent / name
            identity = file_identity(photo)
        except (OSError, ValueError) as exc:
            problems.append(f"{where}: cannot be a file here ({getattr(exc, 'strerror', None) or exc})")
            continue
        if identity is None:
            problems.append(f"{where}: no such file")
            continue
        if identity in seen:  # the same file under another name (a link, ./a.jpg and a.jpg) too
            problems.append(f"{where}: the same photo as row {seen[identity]}; kept the first")
            continue
        seen[identity] = row
        paths.append(photo)
        labels.append(value)
    return paths, labels, problems


def _repeated_files(items) -> tuple[int, int] | None:
    """The first pair of inputs that are the same file (by identity), or None. In-memory images are not
    compared: they have no identity to compare."""
    seen: dict = {}
    for i, (_, source) in enumerate(items):
        if isinstance(source, str | os.PathLike):
            try:
                identity = file_identity(Path(source))
            except (OSError, ValueError):
                continue  # unreadable: an error row later
            if identity is not None:
                if identity in seen:
                    return seen[identity], i
                seen[identity] = i
    return None


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a regular file, None when it is not one: the same photo under two names (a link,
    a relative and an absolute path) has one identity."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def photos_hash(names: list, labels: np.ndarray) -> str:
    pairs = sorted(zip(map(str, names), map(int, labels)))
    return hashlib.sha256(json.dumps(pairs).encode("utf-8", "surrogateescape")).hexdigest()


def adapt(
    pipeline,
    images,
    labels,
    holdout: float = 0.2,
    original_weight: float = 0.0,
    C: float | str = "auto",
    seed: int = 0,
    progress: bool | None = None,
    align: str | None = None,
    prior: str = "original",
    original=None,
):
    """A new pipeline whose head is refitted on ``images`` and their ``labels`` (1/0 or Male/Female); see
    the module docstring. ``holdout``: the share held out to compare before and after (0 to 0.9);
    ``original_weight`` (two-stage, 0 to 1): the share of the fit's total weight given to ``original``, the
    rows stage two was first fitted on (``report.stage_two_data`` from ``train_two_stage``); ``C``: the inverse L2 penalty on the
    change (``prior="original"``: the head moves from the pipeline's own) or on the weights (``"none"``);
    ``"auto"`` (default) picks it among :data:`AUTO_C` by 5-fold cross-validation on the photos."""
    items = expand_images(images)
    names = [name for name, _ in items]
    raw = list(labels)
    if len(raw) != len(items):
        raise ConfigError(f"adapt got {len(items)} images but {len(raw)} labels; give one label per image")
    y = np.empty(len(raw), dtype=np.int64)
    for i, value in enumerate(raw):
        try:
            y[i] = parse_male_label(value)
        except ValueError as exc:
            raise ConfigError(f"labels[{i}] ({names[i]}): {exc}") from None
    twice = _repeated_files(items)
    if twice:
        first, again = twice
        raise ConfigError(
            f"images[{again}] is the same photo as images[{first}] ({names[again]}): a photo given twice "
            "can be fitted on and held out at once, so the held-out accuracy would mean nothing; give each once"
        )
    if not (isinstance(holdout, int | float) and 0 <= holdout <= 0.9):
        raise ConfigError(f"holdout must be a share from 0 to 0.9, got {holdout!r}")
    if not (isinstance(original_weight, int | float) and 0 <= original_weight < 1):
        raise ConfigError(f"original_weight must be a share from 0 to below 1, got {original_weight!r}")
    if prior not in ("original", "none"):
        raise ConfigError(f"prior={prior!r} is not valid; choose 'original' or 'none'")
    if C != "auto" and not valid_C(C):
        raise ConfigError(
            f"C must be 'auto', 0 (keeps the head) or a number from {C_BOUNDS[0]:g} to {C_BOUNDS[1]:g}, got {C!r}"
        )
    if original_weight and (pipeline.route != "two_stage" or original is None):
        raise ConfigError(
            "original_weight > 0 mixes in the rows stage two was first fitted on: pass them as "
            "original=report.stage_two_data (from train_two_stage; a loaded bundle has none), or "
            "original_weight=0"
        )
    for label, word in ((0, "Female"), (1, "Male")):
        if (y == label).sum() < MIN_PER_CLASS:
            raise ConfigError(
                f"adapt needs at least {MIN_PER_CLASS} photos of each class; got {(y == label).sum()} {word}"
            )
    X, errors = head_inputs(pipeline, images, progress=progress, align=align)
    ok = np.array([not e for e in errors], dtype=bool)
    X, y_ok, kept = X[ok], y[ok], [n for n, good in zip(names, ok) if good]
    for label, word in ((0, "Female"), (1, "Male")):
        if (y_ok == label).sum() < MIN_PER_CLASS:
            raise ConfigError(
                f"only {(y_ok == label).sum()} {word} photos had a usable face ({(~ok).sum()} of {len(ok)} "
                f"photos gave none); adapt needs {MIN_PER_CLASS} of each"
            )
    fit_idx, held_idx = _holdout_split(y_ok, holdout, seed)
    Xf, yf = X[fit_idx], y_ok[fit_idx]
    weights = None
    if original_weight:
        Xo = original.X.to_numpy(dtype=np.float64)
        # Each side's rows share its weight: original_weight of the total for the original rows.
        weights = np.concatenate(
            [
                np.full(len(yf), (1 - original_weight) / len(yf)),
                np.full(len(original.y), original_weight / len(original.y)),
            ]
        )
        weights *= len(weights)
        Xf, yf = np.vstack([Xf, Xo]), np.concatenate([yf, original.y])
    if C == "auto":
        C = choose_C(pipeline, Xf, yf, prior, seed)
    head = fit_head(pipeline, Xf, yf, weights, C, prior)
    before = after = None
    if len(held_idx):
        truth = y_ok[held_idx]
        before = float(((head_probability(pipeline, None, X[held_idx]) >= 0.5) == truth).mean())
        after = float(((head_probability(pipeline, head, X[held_idx]) >= 0.5) == truth).mean())
        if after < before:
            warnings.warn(
                f"adapting lowered accuracy on the {len(held_idx)} held-out photos: {before:.3f} before, "
                f"{after:.3f} after; keep the original pipeline, or give more photos",
                stacklevel=2,
            )
    record = AdaptRecord(
        len(fit_idx), len(held_idx), photos_hash(kept, y_ok), before, after, float(original_weight), float(C)
    )
    adapted = _with_head(pipeline, head)
    adapted.adapted = record
    # The original's test numbers describe the original head, not this one: kept, but under original_*, so
    # metrics["accuracy"], repr and the saved bundle never present them as the adapted head's.
    adapted.metrics = {f"original_{k}": v for k, v in pipeline.metrics.items()} | {
        "adapt_photos": float(record.n_photos),
        "adapt_holdout_photos": float(record.n_holdout),
        "adapt_C": float(C),
        **(
            {"adapt_holdout_accuracy_before": before, "adapt_holdout_accuracy_after": after}
            if before is not None
            else {}
        ),
    }
    return adapted


def _with_head(pipeline, head):
    """A copy of ``pipeline`` with the new head; the original is untouched."""
    if pipeline.route == "two_stage":
        other = pipeline.with_stage_two(head, metrics=pipeline.metrics, config=pipeline.config)
        other.concepts = pipeline.concepts
        return other
    other = copy.copy(pipeline)
    other.image_model = copy.deepcopy(pipeline.image_model)
    _set_direct_head(other.image_model, _head_path(pipeline), *head)
    other.temperature = 1.0  # fitted for the old head
    other.onnx_path = None  # the bundle's model.onnx holds the old head: run the new one in PyTorch
    other._model_hash = None
    other.set_runtime(
        "torch" if pipeline.runtime in ("auto", "onnx") else pipeline.runtime, pipeline.precision
    )
    other.pretrained = None  # no longer the shipped model its record describes
    return other
