"""The two pipelines, one surface: ``predict(images)``, ``predict_proba``, ``save``/``load``, ``fit``."""

from .base import LABELS, GenderPredictor
from .bundle import BundleError
from .direct import DirectGenderClassifier
from .fitting import FitReport, fit_direct, fit_two_stage
from .loading import load_pipeline
from .runtime import RUNTIMES, RuntimeUnavailableError
from .two_stage import Attr2GenderPipeline, Explanation

__all__ = [
    "LABELS", "GenderPredictor", "BundleError", "DirectGenderClassifier", "FitReport", "fit_direct",
    "fit_two_stage", "load_pipeline", "Attr2GenderPipeline", "Explanation", "RUNTIMES", "RuntimeUnavailableError",
]  # fmt: skip
