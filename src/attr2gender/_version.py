"""The library's version, in the bottom layer so that bundles and models can record it."""

__version__ = "0.2.0"
