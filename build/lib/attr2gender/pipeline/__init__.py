"""The two pipelines, one surface: ``predict(images)``, ``predict_proba``, ``save``/``load``, ``train``.

Importing this package (and loading and predicting with a bundle) never imports Lightning; the trainers
(:mod:`attr2gender.pipeline.trainers`) do, when they are used.
"""

from .base import LABELS, GenderPredictor
from .bundle import BundleError
from .direct import DirectGenderClassifier
from .loading import load_pipeline
from .runtime import RUNTIMES, RuntimeUnavailableError
from .two_stage import Attr2GenderPipeline, Explanation

__all__ = [
    "LABELS",
    "GenderPredictor",
    "BundleError",
    "DirectGenderClassifier",
    "FitReport",
    "train_direct",
    "train_two_stage",
    "load_pipeline",
    "Attr2GenderPipeline",
    "Explanation",
    "RUNTIMES",
    "RuntimeUnavailableError",
]


def __getattr__(name):
    # The trainers import Lightning: only when asked for.
    if name in ("FitReport", "train_direct", "train_two_stage"):
        from . import trainers

        return getattr(trainers, name)
    raise AttributeError(f"module 'attr2gender.pipeline' has no attribute {name!r}")
