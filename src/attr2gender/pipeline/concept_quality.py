"""Whether a two-stage pipeline's 39 outputs are still concepts: what its bundle records, and the one rule
that decides when ``explain``, interventions and ``repr`` must say they are not.

A concept bottleneck is only as honest as its concepts. A joint model trained mostly on Male (a small
concept weight) can keep its Male accuracy while its "attributes" drift into whatever helps the label
(Koh et al. 2020 report concept error next to task error for this reason; Mahinpei et al. 2021 and Havasi et
al. 2022 show the label leaking through soft concepts). Its explanations then name attributes the model does
not detect. The rule, on the validation images:

- the outputs must beat answering each attribute's common value (mean accuracy above the majority rate:
  below it they describe nothing), and
- when the sequential model's concept quality is known (a sweep, or a face backbone, whose sequential head
  is fitted in seconds), the mean concept AUC must be within ``tolerance`` (``concept_auc_tolerance``,
  default 0.01) of it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

NOT_CONCEPTS = (
    "its attribute outputs are not reliable concepts; explanations and interventions are not meaningful"
)


@dataclass(frozen=True)
class ConceptRecord:
    """Concept quality on the validation images, and the reference it is judged against."""

    val_mean_auc: float
    val_mean_accuracy: float
    val_majority_accuracy: float  # the mean accuracy of always answering each attribute's common value
    reference_val_mean_auc: float | None = None  # the sequential model's, when known
    tolerance: float = 0.01

    @property
    def reliable(self) -> bool:
        if not self.val_mean_accuracy > self.val_majority_accuracy:
            return False
        if self.reference_val_mean_auc is None:
            return True
        return self.val_mean_auc >= self.reference_val_mean_auc - self.tolerance

    def why(self) -> str:
        """One line: the numbers behind :attr:`reliable`."""
        text = (
            f"validation concept AUC {self.val_mean_auc:.3f}, mean accuracy {self.val_mean_accuracy:.3f} "
            f"(always the common value: {self.val_majority_accuracy:.3f})"
        )
        if self.reference_val_mean_auc is not None:
            text += f"; sequential model's AUC {self.reference_val_mean_auc:.3f}, tolerance {self.tolerance}"
        return text

    def to_json(self) -> dict:
        return asdict(self) | {"reliable": self.reliable}

    @classmethod
    def from_json(cls, d: dict) -> ConceptRecord:
        """Validated: every number finite and in [0, 1] (the tolerance too); ``reliable`` is recomputed."""
        try:
            values = {
                "val_mean_auc": float(d["val_mean_auc"]),
                "val_mean_accuracy": float(d["val_mean_accuracy"]),
                "val_majority_accuracy": float(d["val_majority_accuracy"]),
                "tolerance": float(d.get("tolerance", 0.01)),
            }
            reference = d.get("reference_val_mean_auc")
            values["reference_val_mean_auc"] = None if reference is None else float(reference)
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                "concepts must hold val_mean_auc, val_mean_accuracy and val_majority_accuracy numbers"
            ) from None
        numbers = [v for v in values.values() if v is not None]
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in numbers):
            raise ValueError("concepts: every value must be a number from 0 to 1")
        return cls(**values)
