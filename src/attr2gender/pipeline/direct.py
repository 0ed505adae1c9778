"""The direct route: one image model from pixels to P(Male)."""

from __future__ import annotations

import numpy as np
import torch

from .base import GenderPredictor, _MovedToTraining


class DirectGenderClassifier(GenderPredictor):
    """End-to-end image classifier for ``Male``; same ``predict`` surface as :class:`Attr2GenderPipeline`."""

    route = "direct"
    trained_model = "DirectModel"
    outputs = ("softmax", "sigmoid")

    def _predict_batch(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        return {"male_probability": self.calibrated(self._forward(x))}

    train = _MovedToTraining(
        "attr2gender.train_direct(config, **overrides), which returns (pipeline, report)"
    )
    fit = _MovedToTraining("attr2gender.train_direct(config, **overrides)[0]")
    load = _MovedToTraining("attr2gender.load_pipeline(directory)")
