"""attr2gender: predict CelebA's Male attribute from 39 predicted face attributes, or from pixels,
and measure what the detour costs.

The public surface is :data:`__all__`; everything else is internal. Names are imported on first use, so
``import attr2gender`` stays cheap for the command line.
"""

import importlib as _importlib
import os as _os

# On a machine shared with other work (2-core CI, a laptop), PyTorch's OpenMP threads spin-wait for
# each other and run 50-100x slower; passive waiting costs nothing when the machine is free.
# Takes effect only when attr2gender is imported before torch (our scripts and CLI do so).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__
from .errors import __all__ as _ERRORS  # every error class (a small module: importing it costs nothing)

_EXPORTS = {
    "Attr2GenderPipeline": "attr2gender.pipeline",
    "DirectGenderClassifier": "attr2gender.pipeline",
    "load_pipeline": "attr2gender.pipeline",
    "load_pretrained": "attr2gender.pipeline",
    "train_two_stage": "attr2gender.training",
    "train_direct": "attr2gender.training",
    "RunConfig": "attr2gender.config",
    "load_preset": "attr2gender.config",
    "StageTwoClassifier": "attr2gender.tabular",
    "create_backbone": "attr2gender.models",
    "slice_report": "attr2gender.pipeline.evaluation",
    "evaluate_pipeline": "attr2gender.pipeline.evaluation",
}
__all__ = [*_EXPORTS, *_ERRORS, "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(_importlib.import_module(_EXPORTS[name]), name)
    if name in _ERRORS:
        return getattr(_importlib.import_module("attr2gender.errors"), name)
    raise AttributeError(f"module 'attr2gender' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
