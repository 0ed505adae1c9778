"""What the MLflow runs table shows, and where the rest of a run's numbers go.

A run records a curated list of scalar metrics (headline first: the run page lists, and the compare view's
plot opens on, the first one logged), rounded to 4 significant digits for reading; every metric it produced
is kept exactly in ``metrics/all_metrics.json`` and the sortable table ``tables/all_metrics.json``. The
saved view the printed link opens (an experiment tag) sorts the runs by accuracy. The tracker that logs all
this is :mod:`attr2gender.tracking.mlflow_tracking`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

ROUTE_METRICS = (  # a pipeline run (run_two_stage.py, run_direct.py, a comparison's children)
    "headline_accuracy",  # test Male accuracy, the same name for both routes
    "headline_accuracy_ci_low",  # its 95 % bootstrap CI over the test images
    "headline_accuracy_ci_high",
    "test_worst_group_accuracy",  # Male x makeup / Male x blond groups (NaN below 30 images)
    "test_worst_slice_accuracy",
    "test_ece",
    "test_roc_auc",
    # two-stage: whether its 39 outputs are concepts (1) or not (0: no better than always answering each
    # attribute's common value, or below the sequential model's AUC), and their mean AUC
    "test_concepts_reliable",
    "test_concept_mean_auc",
    "val_accuracy",
    # the labelled faces (everyday photos of every age): their validation side's accuracy and the lowest
    # recall of a gender x age band cell from 10 up (the test side's are in all_metrics.json)
    "labelled_val_accuracy",
    "labelled_val_worst_recall_10_up",
    "time_train_seconds",
    "inference_ms_per_image_b1",
    "inference_ms_per_image_b64",
    "param_count",
)
EPOCH_METRICS = (
    "train_loss",
    "val_loss",
    "val_acc",
    "val_concept_mean_accuracy",
)  # training curves, one step per epoch
COMPARISON_METRICS = (  # the comparison parent run (compare.py)
    "accuracy_two_stage",
    "accuracy_direct",
    # positive: two-stage more accurate, in percentage points to the digits its paired bootstrap CI supports
    # (the proportion, exact, is in all_metrics.json)
    "two_stage_minus_direct_points",
    "two_stage_minus_direct_points_ci_low",
    "two_stage_minus_direct_points_ci_high",
    "worst_group_accuracy_two_stage",
    "worst_group_accuracy_direct",
    "ece_two_stage",
    "ece_direct",
    "concept_mean_accuracy_two_stage",
    "concept_mean_auc_two_stage",
    "labelled_val_accuracy_two_stage",  # the labelled faces' validation side, when there are some
    "labelled_val_accuracy_direct",
    "celeba_c_mean_accuracy_two_stage",
    "celeba_c_mean_accuracy_direct",
    "inference_time_ratio",
    "inference_ratio_b64",
    "training_time_ratio",
    "size_ratio",  # the parameter ratio, which says much the same, is in all_metrics.json
    "n_test_images",
)
SCALAR_METRICS = frozenset(ROUTE_METRICS + EPOCH_METRICS + COMPARISON_METRICS)
_ORDER = {name: i for i, name in enumerate(ROUTE_METRICS + EPOCH_METRICS + COMPARISON_METRICS)}
SCALAR_PREFIXES = ("seeds_", "seed_")  # the seeds parent: mean/std across seeds, one point per seed
DETAIL_JSON = "metrics/all_metrics.json"
DETAIL_TABLE = "tables/all_metrics.json"

# The saved view the printed link opens: MLflow 3.17 keeps a view as the experiment tag
# ``mlflow.sharedViewState.<id>`` = {"name", "createdAt", "updatedAt", "state": "<JSON>"}, where the state
# holds the search facets (orderByKey, ...) and the table's UI state (selectedColumns, columnOrder, ...).
VIEW_ID = "attr2gender-runs"
VIEW_NAME = "attr2gender: newest first, comparisons nested"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"
# metric -> column width (px, the whole name readable), in this order after the run name: the answer first
# (accuracy, the paired difference, whether the concepts are concepts, the cost), so a 1440 px screen shows them
# beside MLflow's assistant panel, which a first visit opens over a third of it.
VIEW_COLUMNS = {
    "headline_accuracy": 150,
    "two_stage_minus_direct_points": 215,
    "test_concepts_reliable": 175,
    "inference_ratio_b64": 150,
    "test_worst_group_accuracy": 195,
    "labelled_val_worst_recall_10_up": 245,
    "time_train_seconds": 145,
}


def is_scalar_metric(name: str) -> bool:
    """Whether MLflow records ``name`` as a metric (the rest goes to the run's detail artifacts)."""
    return name in SCALAR_METRICS or name.startswith(SCALAR_PREFIXES)


def _bar_charts(names, section: str) -> list[dict]:
    """Bar charts (one per metric, the last value of up to 10 runs) in a chart section, as the UI keeps them."""
    return [
        {
            "uuid": f"attr2gender-{name}",
            "type": "BAR",
            "runsCountToCompare": 10,
            "metricSectionId": section,
            "deleted": False,
            "isGenerated": False,
            "displayName": name,
            "metricKey": name,
        }
        for name in names
    ]


def runs_view_state() -> dict:
    """The saved view: the runs table newest first with the columns of :data:`VIEW_COLUMNS` (accuracy first);
    the chart view opens on their charts, every other metric's below (collapsed).

    Newest first, not by accuracy: MLflow 3.17 nests child runs under their parent only when the table is
    sorted by start time, and a comparison's parent run, which has no accuracy of its own, sorted below
    every route. A parent opens on a click, as MLflow shows nested runs."""
    metrics = [f"metrics.`{name}`" for name in VIEW_COLUMNS]
    others = [n for n in ROUTE_METRICS + COMPARISON_METRICS if n not in VIEW_COLUMNS]
    sections = [
        {"uuid": "attr2gender-headline", "name": "Accuracy, worst group, time", "display": True},
        {"uuid": "attr2gender-more", "name": "More metrics", "display": False},
    ]
    return {
        "searchFilter": "",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": metrics,
        "columnOrder": ["attributes.`Run Name`", *metrics, "runDateAndNestInfo", "duration"],
        "columnWidths": {"attributes.`Run Name`": 225}
        | {f"metrics.`{name}`": width for name, width in VIEW_COLUMNS.items()},
        "compareRunCharts": _bar_charts(VIEW_COLUMNS, "attr2gender-headline")
        + _bar_charts(others, "attr2gender-more"),
        "compareRunSections": [
            section | {"isReordered": False, "deleted": False, "isGenerated": False} for section in sections
        ],
    }


def runs_view_tag(now_ms: int | None = None) -> str:
    """The tag value of the saved view (MLflow 3.17's envelope around the JSON state)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return json.dumps(
        {
            "name": VIEW_NAME,
            "createdAt": now_ms,
            "updatedAt": now_ms,
            "state": json.dumps(runs_view_state()),
        }
    )


class RunDetail:
    """Every metric a run logged: the last value of each, and each step of those logged with one."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.per_step: dict[str, list[tuple[int, float]]] = {}
        self.epochs: list[tuple[int, dict]] = []  # a training history, logged when the run ends

    def add(self, values: Mapping[str, float], step: int | None) -> None:
        self.last.update(values)
        if step is not None:
            for name, value in values.items():
                self.per_step.setdefault(name, []).append((int(step), value))

    def as_dict(self) -> dict:
        """``metrics/all_metrics.json``: NaN and infinities as null (strict JSON)."""
        return {
            "metrics": {name: _finite(self.last[name]) for name in sorted(self.last)},
            "per_step": {
                name: [[step, _finite(value)] for step, value in self.per_step[name]]
                for name in sorted(self.per_step)
            },
            "in_runs_table": sorted(name for name in self.last if is_scalar_metric(name)),
        }

    def table(self):
        """``tables/all_metrics.json``: one row per metric, its last value and step, sortable in the UI."""
        import pandas as pd

        rows = [
            {
                "metric": name,
                "value": self.last[name],
                "step": self.per_step[name][-1][0] if name in self.per_step else None,
                "in_runs_table": is_scalar_metric(name),
            }
            for name in sorted(self.last)
        ]
        return pd.DataFrame(rows, columns=["metric", "value", "step", "in_runs_table"])


def metrics_from_detail(data: Mapping[str, Any]) -> dict[str, float]:
    """The ``metrics`` of a ``metrics/all_metrics.json`` as floats (null back to NaN)."""
    return {
        str(name): float("nan") if value is None else float(value)
        for name, value in dict(data.get("metrics") or {}).items()
    }


def readable(value: float) -> float:
    """A metric as the runs table shows it: whole numbers kept, fractions to 4 significant digits
    (17.447440591997292 seconds reads 17.45; the exact values stay in ``metrics/all_metrics.json``)."""
    value = float(value)
    if not math.isfinite(value) or value.is_integer():
        return value
    return float(f"{value:.4g}")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _is_nan(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True
