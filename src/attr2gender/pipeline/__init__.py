"""The two pipelines, inference only: ``predict(images)``, ``predict_proba``, ``explain``, ``save`` and
:func:`load_pipeline`, on PyTorch or ONNX Runtime.

Importing this package (and loading and predicting with a bundle) never imports Lightning. Training a route
is the layer above: :func:`attr2gender.train_two_stage` and :func:`attr2gender.train_direct`
(:mod:`attr2gender.training.routes`).
"""

from .base import LABELS, GenderPredictor
from .bundle import BundleError
from .direct import DirectGenderClassifier
from .loading import load_pipeline, load_pretrained
from .runtime import RUNTIMES, RuntimeUnavailableError
from .two_stage import Attr2GenderPipeline, Explanation

__all__ = [
    "LABELS",
    "GenderPredictor",
    "BundleError",
    "DirectGenderClassifier",
    "load_pipeline",
    "load_pretrained",
    "Attr2GenderPipeline",
    "Explanation",
    "RUNTIMES",
    "RuntimeUnavailableError",
]

_MOVED = {"FitReport": "TrainReport", "train_direct": "train_direct", "train_two_stage": "train_two_stage"}


def __getattr__(name):
    if name in _MOVED:  # one line, no import: the training layer sits above this one
        raise AttributeError(
            f"attr2gender.pipeline.{name} moved to the training layer: use attr2gender.training.{_MOVED[name]}"
        )
    raise AttributeError(f"module 'attr2gender.pipeline' has no attribute {name!r}")
