"""Every error attr2gender raises on purpose, in one module (as scikit-learn's ``sklearn/exceptions.py``).

All derive from :class:`Attr2GenderError`, and each keeps the builtin base a caller would catch without
knowing this library (``ValueError``, ``FileNotFoundError``, ``RuntimeError``). The command line catches the
base class and prints one ``error:`` line with the fix, exit status 2. Messages name the field and the fix.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "Attr2GenderError",
    "BundleError",
    "CelebAError",
    "CelebAFormatError",
    "CelebANotFoundError",
    "ConfigError",
    "DetectorUnavailableError",
    "FaceNotUsableError",
    "ImageLoadError",
    "IncompatibleWeightsError",
    "InputKindMismatchError",
    "LabelledFacesError",
    "RuntimeUnavailableError",
    "StageTwoFormatError",
    "UnknownBackboneError",
    "UnsafeCheckpointError",
    "UnsafeWeightsFileError",
    "UsageError",
    "WeightsNotFoundError",
]


class Attr2GenderError(Exception):
    """Base of every error attr2gender raises on purpose."""


# --- configuration and the command line ---


class ConfigError(Attr2GenderError, ValueError):
    """A config key or value is wrong; the message names it and the valid choices."""


class UsageError(Attr2GenderError, ValueError):
    """A command-line value that cannot work (an option, a path)."""


class UnsafeCheckpointError(ConfigError):
    """A checkpoint holds pickled objects beyond tensors and plain containers; it is never unpickled."""


# --- data ---


class CelebAError(Attr2GenderError):
    """Base of the CelebA reader's errors."""


class CelebANotFoundError(CelebAError, FileNotFoundError):
    """A root, file or folder the reader needs is missing."""


class CelebAFormatError(CelebAError, ValueError):
    """An annotation file is malformed; the message names the file and line."""

    def __init__(self, path, line: int | None, problem: str):
        self.path, self.line, self.problem = Path(path), line, problem
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


class LabelledFacesError(Attr2GenderError, ValueError):
    """A folder of labelled face photos cannot serve as a training source; the message names the folder
    or file and what to give instead."""


class ImageLoadError(Attr2GenderError, ValueError):
    """An image could not be read or converted; ``source`` names it."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"{source}: {reason}")


class FaceNotUsableError(ImageLoadError):
    """``align="auto"``: the image holds no face, or none big enough; ``n_faces`` says how many were found."""

    def __init__(self, source: str, reason: str, n_faces: int, box: tuple[int, int, int, int] | None = None):
        self.n_faces, self.box = n_faces, box  # faces found; the box of the one refused (too small)
        super().__init__(source, reason)


class DetectorUnavailableError(Attr2GenderError, RuntimeError):
    """The face detector's package is missing, or its weights are not the pinned ones."""


# --- models and weights ---


class UnknownBackboneError(Attr2GenderError, ValueError):
    """A backbone name neither registered here nor known to timm."""


class WeightsNotFoundError(Attr2GenderError, FileNotFoundError):
    """The requested weights are not available locally and could not be downloaded (offline, or the download failed)."""


class IncompatibleWeightsError(Attr2GenderError, ValueError):
    """A state dict does not fit the model (unexpected/missing keys or shape mismatches)."""


class UnsafeWeightsFileError(Attr2GenderError, ValueError):
    """A .pth/.pt file holds pickled objects other than tensors/containers; refused, never unpickled."""


# --- stage two ---


class InputKindMismatchError(Attr2GenderError, ValueError):
    """A model fitted on 0/1-valued attributes was given probabilities with ``input_kind="probability"``."""


class StageTwoFormatError(Attr2GenderError, ValueError):
    """A stage-two JSON document (or its LightGBM model file) is malformed or inconsistent."""


# --- pipelines ---


class BundleError(Attr2GenderError, ValueError):
    """A bundle is missing, from an incompatible version, malformed, or was modified after saving."""


class RuntimeUnavailableError(Attr2GenderError, RuntimeError):
    """The requested runtime cannot run here; the message names what to install or change."""
