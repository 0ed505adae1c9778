"""The direct route: one image model from pixels to P(Male)."""

from __future__ import annotations

import numpy as np
import torch

from ..training.modules import DirectModel
from .base import GenderPredictor


class DirectGenderClassifier(GenderPredictor):
    """End-to-end image classifier for ``Male``; same ``predict`` surface as :class:`Attr2GenderPipeline`."""

    kind = "direct"
    image_model_task = "direct"

    def __init__(self, image_model: DirectModel, preprocessing=224, threshold: float = 0.5, **kw):
        if not isinstance(image_model, DirectModel):
            raise TypeError(f"DirectGenderClassifier needs a DirectModel, got {type(image_model).__name__}")
        super().__init__(image_model, preprocessing, threshold, **kw)

    def _predict_batch(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        return {"male_probability": self._forward(x)}

    @classmethod
    def fit(cls, config=None, **overrides) -> DirectGenderClassifier:
        """Train on a CelebA root per ``config`` (a RunConfig, a preset path, or keyword overrides)."""
        from .fitting import fit_direct

        return fit_direct(config, **overrides)
