"""What an evaluation measured, as one record: :class:`Evaluation`. Computed by
:func:`attr2gender.pipeline.evaluation.evaluate_pipeline` (a pipeline on labelled images) and
:func:`~attr2gender.pipeline.evaluation.evaluate_probabilities` (probabilities already computed); read by
reports, comparisons and benchmarks through :meth:`Evaluation.summary` (flat scalars) and
:meth:`Evaluation.to_dict` (everything, JSON-ready)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .groups import group_metrics, slice_metrics

_NAN = float("nan")


@dataclass
class Evaluation:
    """What :func:`evaluate_pipeline` measured. Every number is over the ``n`` scored images (an image that
    could not be read or held no usable face is left out and counted in ``skipped``).

    ``accuracy`` with its 95 % bootstrap CI (``ci_low``, ``ci_high``); ``auc`` (NaN with one class);
    ``ece`` (top-label, 15 bins) with ``ece_ci``; ``brier``. ``groups``: accuracy per CelebA group (Male x
    makeup, Male x blond; :func:`attr2gender.metrics.group_accuracy_table`) and the worst one with its CI and
    its gap to ``accuracy``, when the true attributes were given. ``slices``: :func:`slice_report`'s table of
    the user's groups. ``corruptions``: the CelebA-C table. ``concepts``: stage one's concept quality
    (:func:`attr2gender.metrics.concept_quality`), for a two-stage pipeline given the 39 true attributes.
    A part that was not asked for (or could not be measured) is ``None``."""

    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    auc: float
    ece: float
    ece_ci: tuple[float, float]
    brier: float
    threshold: float = 0.5
    skipped: int = 0
    groups: pd.DataFrame | None = None
    worst_group: str = ""
    worst_group_accuracy: float = _NAN
    worst_group_ci: tuple[float, float] = (_NAN, _NAN)
    worst_group_gap: float = _NAN
    slices: pd.DataFrame | None = None
    corruptions: pd.DataFrame | None = None
    concepts: dict | None = None

    def summary(self) -> dict[str, float | str]:
        """Flat scalars (for a log or a table row): the headline numbers, ``group_*`` / ``worst_group_*``
        (:func:`attr2gender.metrics.group_metrics`), ``worst_slice_*`` and ``slice_accuracy_*``,
        ``corruption_<name>`` and ``corruption_mean``, and the ``concept_*`` means."""
        out: dict[str, float | str] = {
            "n": float(self.n),
            "skipped": float(self.skipped),
            "accuracy": self.accuracy,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "auc": self.auc,
            "ece": self.ece,
            "ece_ci_low": self.ece_ci[0],
            "ece_ci_high": self.ece_ci[1],
            "brier": self.brier,
        }
        if self.groups is not None:
            out |= group_metrics(self.groups, self.accuracy) | {"worst_group": self.worst_group}
        if self.slices is not None:
            out |= slice_metrics(self.slices.drop(index="all", errors="ignore"), self.accuracy)
        if self.corruptions is not None:
            out |= {f"corruption_{k}": float(v) for k, v in self.corruptions["accuracy"].items()}
        if self.concepts is not None:
            out |= {k: v for k, v in self.concepts.items() if not isinstance(v, dict)}
        return out

    def to_dict(self, strict: bool = True) -> dict:
        """Everything: the headline numbers with their CIs and ``n``, the worst group with its CI, and the
        group, slice and corruption tables as lists of rows; what benchmarks write and runs log, so none of
        them converts the record its own way. ``strict``: NaN as None (strict JSON); else NaN stays a float
        (for arithmetic and formatting in the same process)."""
        _json_number = _strict_number if strict else float
        out = {
            "n": int(self.n),
            "skipped": int(self.skipped),
            "threshold": float(self.threshold),
            "accuracy": _json_number(self.accuracy),
            "ci_low": _json_number(self.ci_low),
            "ci_high": _json_number(self.ci_high),
            "auc": _json_number(self.auc),
            "ece": _json_number(self.ece),
            "ece_ci": [_json_number(v) for v in self.ece_ci],
            "brier": _json_number(self.brier),
            "worst_group": self.worst_group,
            "worst_group_accuracy": _json_number(self.worst_group_accuracy),
            "worst_group_ci": [_json_number(v) for v in self.worst_group_ci],
            "worst_group_gap": _json_number(self.worst_group_gap),
            "groups": _records(self.groups, "group", _json_number),
            "slices": _records(self.slices, "slice", _json_number),
            "corruptions": _records(self.corruptions, "corruption", _json_number),
        }
        if self.concepts is not None:
            out["concepts"] = {
                k: (_json_number(v) if isinstance(v, float) else v) for k, v in self.concepts.items()
            }
        return out


def _strict_number(value):
    """A float for strict JSON: NaN and infinities become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def _records(table: pd.DataFrame | None, index_name: str, number) -> list[dict] | None:
    if table is None:
        return None
    frame = table.reset_index().rename(columns={"index": index_name})
    return [
        {k: (number(v) if isinstance(v, float) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]
