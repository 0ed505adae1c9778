"""Pipeline bundles on disk, without pickle.

    bundle/
      pipeline.json        kind, format, library version, threshold, preprocessing, metrics, config,
                           and the SHA-256 of every other file
      model.safetensors    image model weights
      model.json           image model architecture (backbone name, head, loss)
      stage_two.json       two-stage only: logistic coefficients, or LightGBM metadata ...
      stage_two_lightgbm.txt  ... and LightGBM's own text model

``load`` checks the format version and every hash before reading a tensor, and never unpickles.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import __version__

BUNDLE_FORMAT = 1  # bump when the layout changes; load refuses other formats
MANIFEST = "pipeline.json"


class BundleError(ValueError):
    """A bundle is missing, from an incompatible version, or was modified after saving."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: dict) -> Path:
    files = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {
        "format": BUNDLE_FORMAT,
        "library_version": __version__,
        **manifest,
        "files": {name: sha256_file(directory / name) for name in files},
    }
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_json_default))
    return path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_manifest(directory: str | Path) -> dict:
    """The verified manifest: right format, every listed file present and unmodified."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path} not found: {directory} is not a bundle saved by attr2gender's save()")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the bundle is damaged, save it again") from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{directory} has bundle format {manifest.get('format')!r} (library {manifest.get('library_version')}); "
            f"this attr2gender {__version__} reads format {BUNDLE_FORMAT}. Load it with the version that saved it."
        )
    for name, expected in manifest.get("files", {}).items():
        file = directory / name
        if not file.is_file():
            raise BundleError(f"{file} is missing from the bundle; copy the whole folder, or save it again")
        if sha256_file(file) != expected:
            raise BundleError(f"{file} was modified after saving (SHA-256 mismatch); refusing to load it")
    return manifest
