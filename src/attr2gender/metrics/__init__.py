"""Metrics and text reports, as plain functions of arrays.

Conventions: class 1 is ``Male`` (the positive class), class 0 is ``Female``. Label arrays may be ints,
booleans or CelebA's {-1, 1}; probabilities are P(class 1).

Two modules, one name space (``from attr2gender.metrics import accuracy_ci``): :mod:`.core` (binary
classification, calibration, stage one's attributes, bootstrap uncertainty, text tables) and :mod:`.groups`
(accuracy per group, slice and cell of people, with CIs).
"""

from .core import (
    CONCEPT_WORST,
    ECE_BINS,
    accuracy_ci,
    attribute_table_markdown,
    binary_metrics,
    bootstrap_ci,
    brier_score,
    calibration_bins,
    classification_report_text,
    concept_quality,
    expected_calibration_error,
    expected_calibration_error_ci,
    markdown_table,
    mean_attribute_accuracy,
    paired_accuracy_difference_ci,
    per_attribute_metrics,
    shown,
    to_numpy,
    wilson_interval,
)
from .groups import (
    MIN_GROUP_SIZE,
    cell_key,
    cell_metrics,
    cell_table,
    cell_table_markdown,
    cross_table,
    group_accuracy_table,
    group_metrics,
    group_table_markdown,
    slice_metrics,
    slice_table,
    slice_table_markdown,
    worst_cell,
    worst_group_name,
)

__all__ = [
    "CONCEPT_WORST",
    "ECE_BINS",
    "MIN_GROUP_SIZE",
    "accuracy_ci",
    "attribute_table_markdown",
    "binary_metrics",
    "bootstrap_ci",
    "brier_score",
    "calibration_bins",
    "cell_key",
    "cell_metrics",
    "cell_table",
    "cell_table_markdown",
    "classification_report_text",
    "concept_quality",
    "cross_table",
    "expected_calibration_error",
    "expected_calibration_error_ci",
    "group_accuracy_table",
    "group_metrics",
    "group_table_markdown",
    "markdown_table",
    "mean_attribute_accuracy",
    "paired_accuracy_difference_ci",
    "wilson_interval",
    "per_attribute_metrics",
    "shown",
    "slice_metrics",
    "slice_table",
    "slice_table_markdown",
    "to_numpy",
    "worst_cell",
    "worst_group_name",
]
