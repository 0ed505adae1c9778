"""The direct route: one image model from pixels to P(Male)."""

from __future__ import annotations

import numpy as np
import torch

from .base import GenderPredictor


class DirectGenderClassifier(GenderPredictor):
    """End-to-end image classifier for ``Male``; same ``predict`` surface as :class:`Attr2GenderPipeline`."""

    kind = "direct"
    trained_model = "DirectModel"
    outputs = ("softmax", "sigmoid")

    def _predict_batch(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        return {"male_probability": self.calibrated(self._forward(x))}

    @classmethod
    def train(cls, config=None, **overrides) -> tuple[DirectGenderClassifier, object]:
        """Train on a CelebA root per ``config`` (a RunConfig, a preset name or path, or keyword overrides);
        returns the trained pipeline and its :class:`~attr2gender.pipeline.trainers.FitReport`."""
        from .trainers import train_direct

        return train_direct(config, **overrides)

    @classmethod
    def fit(cls, config=None, **overrides) -> DirectGenderClassifier:
        """``train(...)[0]``: the trained pipeline (its report is ``pipe.report``)."""
        return cls.train(config, **overrides)[0]
