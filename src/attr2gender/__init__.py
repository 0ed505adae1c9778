"""attr2gender: predict CelebA's Male attribute from 39 predicted face attributes, or from pixels,
and measure what the detour costs."""

import os as _os

# On a machine shared with other work (2-core CI, a laptop), PyTorch's OpenMP threads spin-wait for
# each other and run 50-100x slower; passive waiting costs nothing when the machine is free.
# Takes effect only when attr2gender is imported before torch (our scripts and CLI do so).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so `import attr2gender` stays cheap for the CLI and the data tools.
    if name in ("Attr2GenderPipeline", "DirectGenderClassifier", "load_pipeline"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'attr2gender' has no attribute {name!r}")
