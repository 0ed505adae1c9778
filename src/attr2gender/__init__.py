"""attr2gender: predict CelebA's Male attribute from 39 predicted face attributes, or from pixels,
and measure what the detour costs."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so `import attr2gender` stays cheap for the CLI and the data tools.
    if name in ("Attr2GenderPipeline", "DirectGenderClassifier", "load_pipeline"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'attr2gender' has no attribute {name!r}")
