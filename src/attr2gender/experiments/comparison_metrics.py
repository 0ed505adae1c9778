"""Two-stage vs direct on the same test images, in numbers: what the detour through 39 attributes costs.

Pure functions of predictions and logged metrics (no MLflow here; :mod:`attr2gender.experiments.comparison_run`
logs them through the tracker, and :mod:`attr2gender.experiments.comparison_report` says them in words):

* accuracy loss = accuracy(direct) - accuracy(two-stage) on the test images both predicted (matched by
  image id), with a 95% paired bootstrap CI (same resampled images for both);
* inference-time ratio (two-stage / direct, ms per image, per batch size), training-time ratio and
  size ratio (bundle bytes), each > 1 when the two-stage route costs more;
* per route on the shared images: accuracy with its CI, accuracy per group and per slice, calibration.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.groups import group_names
from ..errors import ConfigError
from ..metrics import (
    binary_metrics,
    bootstrap_ci,
    brier_score,
    calibration_bins,
    expected_calibration_error,
    group_accuracy_table,
    group_metrics,
    paired_accuracy_difference_ci,
    slice_metrics,
    slice_table,
)
from ..tracking.measure import ratio_interval

PREDICTIONS_ARTIFACT = "predictions/test_predictions.csv"  # logged by every pipeline run
PLOT_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "f1_male", "f1_female")


@dataclass
class RouteResult:
    """One route's test predictions and the metrics its run logged."""

    name: str  # "two_stage" | "direct"
    test_ids: list[str]
    male: np.ndarray  # 0/1 truth
    male_probability: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)  # as logged: test_accuracy, train_seconds, ...
    threshold: float = 0.5
    run_id: str | None = None
    info: dict[str, str] = field(
        default_factory=dict
    )  # backbone, image_size, epochs, data ... for the report
    # Per grouping ("makeup", "blond"): each test image's group id (attr2gender.data.groups), from its true
    # attributes; empty when unknown.
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    # Fairness slices (attr2gender.data.groups.slice_masks): {slice name: mask over the test images}.
    slices: dict[str, np.ndarray] = field(default_factory=dict)

    def predictions_frame(self) -> pd.DataFrame:
        prob = np.asarray(self.male_probability, dtype=float)
        frame = pd.DataFrame(
            {
                "image_id": list(self.test_ids),
                "male": np.asarray(self.male, dtype=int),
                "male_probability": prob,
                "predicted_male": (prob >= self.threshold).astype(int),
            }
        )
        for grouping, ids in self.groups.items():
            frame[f"group_{grouping}"] = np.asarray(ids, dtype=int)
        for name, mask in self.slices.items():
            frame[f"slice_{name}"] = np.asarray(mask, dtype=int)
        return frame

    @classmethod
    def from_predictions_frame(cls, name: str, frame: pd.DataFrame, **kw) -> RouteResult:
        missing = {"image_id", "male", "male_probability"} - set(frame.columns)
        if missing:
            raise ValueError(f"{name}: predictions table lacks column(s) {sorted(missing)}")
        groups = {
            c[len("group_") :]: frame[c].to_numpy(dtype=int) for c in frame.columns if c.startswith("group_")
        }
        slices = {
            c[len("slice_") :]: frame[c].to_numpy(dtype=bool) for c in frame.columns if c.startswith("slice_")
        }
        return cls(
            name,
            frame["image_id"].astype(str).tolist(),
            frame["male"].to_numpy(dtype=int),
            frame["male_probability"].to_numpy(dtype=float),
            groups=groups,
            slices=slices,
            **kw,
        )

    def group_masks(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``{group name: mask}`` over this route's test images (or the ``rows`` of them)."""
        out = {}
        for grouping, ids in self.groups.items():
            ids = np.asarray(ids) if rows is None else np.asarray(ids)[rows]
            for k, name in enumerate(group_names(grouping)):
                out[name] = ids == k
        return out


def match_rows(a: RouteResult, b: RouteResult) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Images both routes predicted, in ``a``'s order: ``(ids, truth, prob_a, prob_b)``.

    Raises when they share no image or disagree about an image's truth (not the same data)."""
    index_b = {image_id: i for i, image_id in enumerate(b.test_ids)}
    rows_a = [i for i, image_id in enumerate(a.test_ids) if image_id in index_b]
    if not rows_a:
        raise ConfigError(
            f"{a.name} and {b.name} share no test image: they were run on different data; run both on the "
            "same data root, split and seed (compare.py does)"
        )
    rows_b = [index_b[a.test_ids[i]] for i in rows_a]
    truth_a = np.asarray(a.male)[rows_a]
    truth_b = np.asarray(b.male)[rows_b]
    if not np.array_equal(truth_a, truth_b):
        bad = int((truth_a != truth_b).sum())
        raise ConfigError(
            f"{a.name} and {b.name} disagree on the Male label of {bad} shared test image(s): "
            "they were not run on the same annotations"
        )
    ids = [a.test_ids[i] for i in rows_a]
    return (
        ids,
        truth_a.astype(int),
        np.asarray(a.male_probability, float)[rows_a],
        np.asarray(b.male_probability, float)[rows_b],
    )


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value) if hasattr(value, "__float__") else str(value)


def ratio(numerator, denominator) -> float:
    """``numerator / denominator``; NaN when either is missing, not finite, or the denominator is 0."""
    try:
        n, d = float(numerator), float(denominator)
    except (TypeError, ValueError):
        return float("nan")
    if not (math.isfinite(n) and math.isfinite(d)) or d == 0:
        return float("nan")
    return n / d


def latency_batches(metrics: Mapping[str, float]) -> list[int]:
    """Batch sizes with a logged ``inference_ms_per_image_b<batch>``, ascending."""
    prefix = "inference_ms_per_image_b"
    return sorted(
        int(k[len(prefix) :]) for k in metrics if k.startswith(prefix) and k[len(prefix) :].isdigit()
    )


@dataclass
class Comparison:
    """The numbers of one comparison, the per-route metrics on the shared images, and the report."""

    metrics: dict[str, float]  # logged on the parent run
    per_route: dict[str, dict[str, float]]  # {"two_stage": {...}, "direct": {...}} on the shared images
    costs: dict[str, dict[str, float]]  # per route: ms/image, train seconds, bundle bytes, parameters
    report: str = ""
    group_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # per route: accuracy per group
    corruption_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # per route: CelebA-C
    slice_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # per route: fairness slices
    calibration: dict[str, pd.DataFrame] = field(default_factory=dict)  # per route: reliability bins

    def to_json(self) -> str:
        tables = {
            kind: {k: v.reset_index().to_dict(orient="records") for k, v in getattr(self, kind).items()}
            for kind in ("group_tables", "corruption_tables", "slice_tables", "calibration")
        }
        return json.dumps(
            # "per_approach": the key saved comparison.json files have always had.
            {"metrics": self.metrics, "per_approach": self.per_route, "costs": self.costs, **tables},
            indent=2,
            sort_keys=True,
            default=_json_value,
        )

    def add_section(self, title: str, text: str, metrics: dict[str, float] | None = None) -> None:
        """A section of the report (and its metrics on the parent run)."""
        self.report += f"\n## {title}\n\n{text}\n"
        self.metrics |= dict(metrics or {})

    def add_corruptions(self, tables: dict[str, pd.DataFrame]) -> None:
        """CelebA-C per route (see :func:`attr2gender.pipeline.robustness.corruption_accuracy`): the tables and
        their metrics; the words are the report's (:func:`~attr2gender.experiments.comparison_report.
        corruption_comparison_text`)."""
        self.corruption_tables = dict(tables)
        for name, table in tables.items():
            self.metrics[f"celeba_c_mean_accuracy_{name}"] = float(table.loc["mean", "accuracy"])
            for corruption, row in table.drop(index=["clean", "mean"]).iterrows():
                self.metrics[f"celeba_c_accuracy_{corruption}_{name}"] = float(row["accuracy"])


def points_digits(low: float, high: float) -> int:
    """The decimals of percentage points a difference's interval supports (0 to 2): every place that shows
    the same difference uses them, so it reads the same everywhere."""
    half = (high - low) / 2 if math.isfinite(high - low) and high > low else 0.0001
    return min(2, max(0, -math.floor(math.log10(100 * half))))


def points_metrics(diff: float, low: float, high: float) -> dict[str, float]:
    """``two_stage_minus_direct_points`` and its CI, rounded to the digits the interval supports."""
    d = points_digits(low, high)
    return {
        "two_stage_minus_direct_points": round(100 * diff, d) + 0.0,
        "two_stage_minus_direct_points_ci_low": round(100 * low, d) + 0.0,
        "two_stage_minus_direct_points_ci_high": round(100 * high, d) + 0.0,
    }


def compare_routes(
    two_stage: RouteResult,
    direct: RouteResult,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    latency_rounds: dict | None = None,
) -> Comparison:
    """Accuracy loss with its paired bootstrap CI, and the cost ratios (see the module docstring).
    ``latency_rounds`` (:func:`attr2gender.tracking.measure.paired_latency` of both routes): the inference
    ratios are then the median of interleaved rounds with their range (``_low`` / ``_high``); without it,
    each route's own single measurement, and no interval."""
    ids, y, p_two, p_direct = match_rows(two_stage, direct)
    pred_two = (p_two >= two_stage.threshold).astype(int)
    pred_direct = (p_direct >= direct.threshold).astype(int)
    diff = paired_accuracy_difference_ci(y, pred_direct, pred_two, n_boot=n_boot, seed=seed, alpha=alpha)

    per_route = {}
    for name, prob, pred, threshold in (
        ("two_stage", p_two, pred_two, two_stage.threshold),
        ("direct", p_direct, pred_direct, direct.threshold),
    ):
        m = binary_metrics(y, prob, threshold=threshold)
        values = {k: float(m[k]) for k in PLOT_METRICS if k in m}
        _, low, high = bootstrap_ci(
            lambda c: c.mean(axis=-1),
            (pred == y).astype(float),
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
            vectorized=True,
        )
        values["accuracy_ci_low"], values["accuracy_ci_high"] = low, high
        per_route[name] = values

    index_two = {image_id: i for i, image_id in enumerate(two_stage.test_ids)}
    masks = two_stage.group_masks(np.array([index_two[i] for i in ids], dtype=int))
    group_tables = {}
    for name, prob, threshold in (
        ("two_stage", p_two, two_stage.threshold),
        ("direct", p_direct, direct.threshold),
    ):
        if masks:
            table = group_accuracy_table(
                y, prob, masks, threshold=threshold, n_boot=n_boot, seed=seed, alpha=alpha
            )
            group_tables[name] = table
            g = group_metrics(table, per_route[name]["accuracy"])
            per_route[name]["worst_group_accuracy"] = g["worst_group_accuracy"]
            per_route[name]["worst_group_gap"] = g["worst_group_gap"]

    slice_masks = {
        name: np.asarray(mask, dtype=bool)[[index_two[i] for i in ids]]
        for name, mask in two_stage.slices.items()
    }
    slice_tables, calibration = {}, {}
    for name, prob, threshold in (
        ("two_stage", p_two, two_stage.threshold),
        ("direct", p_direct, direct.threshold),
    ):
        per_route[name]["ece"] = expected_calibration_error(y, prob)
        per_route[name]["brier"] = brier_score(y, prob)
        calibration[name] = calibration_bins(y, prob)
        if slice_masks:
            table = slice_table(
                y, prob, slice_masks, threshold=threshold, n_boot=n_boot, seed=seed, alpha=alpha
            )
            slice_tables[name] = table
            per_route[name] |= slice_metrics(table, per_route[name]["accuracy"])

    metrics = {
        "n_test_images": float(len(ids)),
        "n_test_images_two_stage": float(len(two_stage.test_ids)),
        "n_test_images_direct": float(len(direct.test_ids)),
        "accuracy_two_stage": per_route["two_stage"]["accuracy"],
        "accuracy_direct": per_route["direct"]["accuracy"],
        # One sign convention everywhere: positive means two-stage is more accurate.
        "two_stage_minus_direct": -float(diff["difference"]),
        "two_stage_minus_direct_ci_low": -float(diff["high"]),
        "two_stage_minus_direct_ci_high": -float(diff["low"]),
        # The same difference in percentage points, to the digits its interval supports: what the runs table
        # shows, so it reads as the report says it ("-2 points", not -0.015).
        **points_metrics(-float(diff["difference"]), -float(diff["high"]), -float(diff["low"])),
        "share_resamples_direct_better": float(diff["share_resamples_a_better"]),
        "roc_auc_two_stage": per_route["two_stage"].get("roc_auc", float("nan")),
        "roc_auc_direct": per_route["direct"].get("roc_auc", float("nan")),
        "bootstrap_resamples": float(n_boot),
    }
    for name in group_tables:
        metrics[f"worst_group_accuracy_{name}"] = per_route[name]["worst_group_accuracy"]
        metrics[f"worst_group_gap_{name}"] = per_route[name]["worst_group_gap"]
    for name in ("two_stage", "direct"):
        metrics[f"ece_{name}"] = per_route[name]["ece"]
        metrics[f"brier_{name}"] = per_route[name]["brier"]
    for name in slice_tables:
        metrics[f"worst_slice_accuracy_{name}"] = per_route[name]["worst_slice_accuracy"]
        metrics[f"worst_slice_gap_{name}"] = per_route[name]["worst_slice_gap"]
    m2, md = two_stage.metrics, direct.metrics
    # The two-stage route's accuracy is only a concept bottleneck's with concepts: their quality beside it.
    for key in (
        "concept_mean_accuracy",
        "concept_mean_balanced_accuracy",
        "concept_mean_auc",
        "concept_majority_accuracy",
    ):
        if f"test_{key}" in m2:
            metrics[f"{key}_two_stage"] = float(m2[f"test_{key}"])
    if "test_concepts_reliable" in m2:
        metrics["concepts_reliable_two_stage"] = float(m2["test_concepts_reliable"])
    # The labelled faces' validation side (everyday photos of every age), when both routes were scored there.
    for key in ("labelled_val_accuracy", "labelled_val_worst_recall_10_up", "labelled_val_n"):
        if key in m2 and key in md:
            metrics[f"{key}_two_stage"], metrics[f"{key}_direct"] = float(m2[key]), float(md[key])
    batches = [b for b in latency_batches(m2) if b in latency_batches(md)]
    for b in batches:
        metrics[f"inference_time_ratio_b{b}"] = ratio(
            m2[f"inference_ms_per_image_b{b}"], md[f"inference_ms_per_image_b{b}"]
        )
    paired = {}
    if latency_rounds and {"two_stage", "direct"} <= set(latency_rounds):
        for b in sorted(set(latency_rounds["two_stage"]) & set(latency_rounds["direct"])):
            a, d = latency_rounds["two_stage"][b], latency_rounds["direct"][b]
            median, low, high = ratio_interval(a, d)
            metrics[f"inference_time_ratio_b{b}"] = median
            metrics[f"inference_time_ratio_low_b{b}"], metrics[f"inference_time_ratio_high_b{b}"] = low, high
            paired[b] = (statistics.median(a), statistics.median(d))
        metrics["inference_time_rounds"] = float(len(next(iter(latency_rounds["direct"].values()), [])))
        batches = sorted(paired)
    metrics["inference_time_ratio"] = (
        metrics[f"inference_time_ratio_b{batches[0]}"] if batches else float("nan")
    )
    if batches and f"inference_time_ratio_low_b{batches[0]}" in metrics:
        metrics["inference_time_ratio_low"] = metrics[f"inference_time_ratio_low_b{batches[0]}"]
        metrics["inference_time_ratio_high"] = metrics[f"inference_time_ratio_high_b{batches[0]}"]
    # The headline a person looks for in the runs table (NaN when batch 64 was not measured).
    metrics["inference_ratio_b64"] = metrics.get("inference_time_ratio_b64", float("nan"))
    metrics["training_time_ratio"] = ratio(m2.get("train_seconds"), md.get("train_seconds"))
    metrics["size_ratio"] = ratio(m2.get("bundle_bytes"), md.get("bundle_bytes"))
    metrics["param_ratio"] = ratio(m2.get("param_count"), md.get("param_count"))

    cost_keys = [f"inference_ms_per_image_b{b}" for b in batches] + [
        "train_seconds",
        "bundle_bytes",
        "param_count",
    ]
    costs = {
        r.name: {k: float(r.metrics[k]) for k in cost_keys if k in r.metrics} for r in (two_stage, direct)
    }
    for b, (ms_two, ms_direct) in paired.items():  # the interleaved medians replace the single timings
        costs["two_stage"][f"inference_ms_per_image_b{b}"] = ms_two
        costs["direct"][f"inference_ms_per_image_b{b}"] = ms_direct
    comparison = Comparison(
        metrics,
        per_route,
        costs,
        group_tables=group_tables,
        slice_tables=slice_tables,
        calibration=calibration,
    )
    return comparison
