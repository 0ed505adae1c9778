"""Pipeline bundles on disk, without pickle, and a loader that believes nothing it has not checked.

    bundle/
      pipeline.json        kind, format, library version, threshold, preprocessing, metrics, config, the
                           SHA-256 of every other file, and the SHA-256 of its own content
      model.safetensors    image model weights
      model.json           image model architecture (backbone name, head, loss)
      model.onnx           optional: the same image model for ONNX Runtime (the [onnx] extra)
      template.json        where the 5 face landmarks sit in the training crops (predict's alignment);
                           bundles saved before it existed load with CelebA's published template
      stage_two.json       two-stage only: logistic coefficients, or LightGBM metadata ...
      stage_two_lightgbm.txt  ... and LightGBM's own text model (LightGBM stage two only)

The rules :func:`read_manifest` enforces before a tensor is read:

* the loader knows the exact files each bundle kind holds; the manifest must list exactly those (a file
  missing from the list, or a name that is not one of them, is refused; so are names with a path
  separator or ``..``), and every listed file is hashed;
* the manifest's own content (everything but its ``manifest_sha256`` field) is hashed too, so its
  threshold, preprocessing or kind cannot be edited;
* every manifest value is checked for type and range (a 20,000 px resize is refused), and any malformed
  manifest is a :class:`BundleError`, never a ``KeyError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path

from .._version import __version__
from ..constants import MAX_IMAGE_SIZE, THRESHOLD_BOUNDS
from ..data.faces import FaceTemplate
from ..data.transforms import resize_size
from ..errors import BundleError
from .adapt import AdaptRecord
from .calibration import TEMPERATURE_BOUNDS
from .concept_quality import ConceptRecord

BUNDLE_FORMAT = 2  # 2: the manifest hashes itself and the file list is fixed per kind; load refuses others
MANIFEST = "pipeline.json"
KINDS = ("two_stage", "direct")
REQUIRED_FILES = {
    "direct": ("model.safetensors", "model.json"),
    "two_stage": ("model.safetensors", "model.json", "stage_two.json"),
}
DATA_KINDS = ("celeba", "custom", "synthetic", "unknown")
# A folder holding any of these is a bundle (a damaged one, when files are missing: read_manifest says which).
BUNDLE_MARKERS = (MANIFEST, "model.json", "model.safetensors")


def looks_like_bundle(folder: Path) -> bool:
    """Whether ``folder`` is meant as a bundle (holds one of :data:`BUNDLE_MARKERS`), complete or not."""
    return folder.is_dir() and any((folder / name).is_file() for name in BUNDLE_MARKERS)


TEMPLATE_FILE = "template.json"  # the face template predict(align="auto") warps photos onto
OPTIONAL_FILES = ("model.onnx", TEMPLATE_FILE)  # a bundle without a template is from before templates
LIGHTGBM_FILE = "stage_two_lightgbm.txt"  # two-stage with a LightGBM stage two: required
MAX_MANIFEST_BYTES = 8 << 20  # a real one is a few kB; its config and metrics are small
# Preprocessing sides within what training accepts (image_size up to MAX_IMAGE_SIZE; its resize is the crop
# x 256/224): beyond, one image costs gigabytes.
MAX_SIDE = {"crop": MAX_IMAGE_SIZE, "resize": resize_size(MAX_IMAGE_SIZE)}
TOP_LEVEL = {
    "adapted",  # adapt(): how many photos the head was refitted on, a hash of the list, held-out accuracy
    "backbone_weights",  # a face backbone's pretrained weights: file, SHA-256, licence, template
    "concepts",  # two-stage: concept quality on validation and its reference (pipeline.concept_quality)
    "format",
    "library_version",
    "kind",
    "threshold",
    "preprocessing",
    "metrics",
    "config",
    "model_hash",
    "files",
    "manifest_sha256",
    "attribute_names",
    "stage_two",
    "data_kind",  # optional: celeba | custom | synthetic | unknown
    "temperature",  # optional: temperature scaling of P(Male); absent in bundles saved before it
    "training_data",  # optional: every source it learned from (name, root, licence, image counts)
    "crop_layout",  # optional: where the landmarks sit in the training crops (predict's align="crops")
}
MAX_SOURCES = 8  # training_data entries; a model learns from one or two
SOURCE_KEYS = {
    "name": str,
    "root": str,
    "layout": str,
    "licence": str,
    "learnt": str,
    "images": dict,
    "split": str,  # how its photos were split: CelebA by identity (or its partition), labelled faces by group
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def disk_bytes(path: str | Path) -> int:
    """The bytes a file, or the files under a folder, take on the disk (links not followed; a file
    hard-linked twice, like a run's model/ and bundle/ weights, counted once, as ``du`` counts it)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total, seen = 0, set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                stat = os.lstat(os.path.join(root, name))
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_size
    return total


def share_identical(copy: Path, original: Path) -> bool:
    """Make ``copy`` a hard link to ``original`` when the two files hold the same bytes (a run's exported
    weights and its bundle's): the folder then holds them once. False when they differ or cannot be linked
    (another file system); nothing changes then."""
    try:
        if not (copy.is_file() and original.is_file()) or copy.stat().st_size != original.stat().st_size:
            return False
        if sha256_file(copy) != sha256_file(original):
            return False
        temporary = copy.with_name(f".{copy.name}.link")
        temporary.unlink(missing_ok=True)
        os.link(original, temporary)
        os.replace(temporary, copy)
        return True
    except OSError:
        return False


def _canonical(manifest: dict) -> bytes:
    """The bytes the manifest's own hash covers: every field but ``manifest_sha256``, canonically ordered."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _plain(value):
    """JSON-ready: numpy values to Python, non-finite floats to None (strict JSON has no NaN)."""
    value = json.loads(json.dumps(value, default=_json_default, allow_nan=True))

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(value)


def expected_files(kind: str, stage_two_model: str | None = None) -> tuple[set[str], set[str]]:
    """(required, optional) file names of a bundle of ``kind``."""
    required = set(REQUIRED_FILES[kind])
    if kind == "two_stage" and stage_two_model == "lightgbm":
        required.add(LIGHTGBM_FILE)
    return required, set(OPTIONAL_FILES)


def write_manifest(directory: Path, manifest: dict) -> Path:
    """Hash the bundle's files (exactly the ones its kind holds) and the manifest itself; write it."""
    kind = manifest["kind"]
    required, optional = expected_files(kind, (manifest.get("stage_two") or {}).get("model"))
    present = {name for name in required | optional if (directory / name).is_file()}
    missing = required - present
    if missing:
        raise BundleError(f"cannot save a {kind} bundle without {sorted(missing)}")
    manifest = _plain(
        {
            "format": BUNDLE_FORMAT,
            "library_version": __version__,
            **manifest,
            "files": {name: sha256_file(directory / name) for name in sorted(present)},
        }
    )
    manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False))
    return path


def read_manifest(directory: str | Path) -> dict:
    """The verified manifest: right format, exact file list, every file and the manifest unmodified, every
    value of the right type and range. Raises :class:`BundleError` naming what is wrong."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path} not found: {directory} is not a bundle saved by attr2gender's save()")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(
            f"{path} is {path.stat().st_size:,} bytes, over the {MAX_MANIFEST_BYTES:,} a manifest can be; "
            "the bundle is damaged, save it again"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); the bundle is damaged, save it again") from None
    except RecursionError:  # a document nested thousands deep: no manifest save() writes
        raise BundleError(
            f"{path} is nested too deep to be a manifest; the bundle is damaged, save it again"
        ) from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} must hold a JSON object; the bundle is damaged, save it again")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{directory} has bundle format {manifest.get('format')!r} (library {manifest.get('library_version')!r}); "
            f"this attr2gender {__version__} reads format {BUNDLE_FORMAT}. Save the pipeline again with this version "
            "(format 1 bundles carry no hash of their own manifest, so they cannot be verified)."
        )
    recorded = manifest.get("manifest_sha256")
    try:
        actual = hashlib.sha256(_canonical(manifest)).hexdigest()
    except ValueError:  # NaN or infinity in the JSON: not written by save()
        actual = None
    if not isinstance(recorded, str) or recorded != actual:
        raise BundleError(
            f"{path} was modified after saving (its own SHA-256 does not match); refusing to load it"
        )
    _check_values(manifest, path)
    _check_files(manifest, directory)
    return manifest


def _fail(path: Path, field: str, problem: str) -> BundleError:
    return BundleError(f"{path}: {field} {problem}; the bundle is damaged, save it again")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_values(m: dict, path: Path) -> None:
    unknown = sorted(set(m) - TOP_LEVEL)
    if unknown:
        raise _fail(path, "fields", f"{unknown} are not part of format {BUNDLE_FORMAT}")
    if m.get("kind") not in KINDS:
        raise _fail(path, "kind", f"{m.get('kind')!r} is not one of {KINDS}")
    threshold = m.get("threshold")
    if not (_number(threshold) and THRESHOLD_BOUNDS[0] <= threshold <= THRESHOLD_BOUNDS[1]):
        raise _fail(
            path,
            "threshold",
            f"{threshold!r} must be a number from {THRESHOLD_BOUNDS[0]} to {THRESHOLD_BOUNDS[1]}",
        )
    if m.get("data_kind", "unknown") not in DATA_KINDS:
        raise _fail(path, "data_kind", f"{m.get('data_kind')!r} is not one of {DATA_KINDS}")
    # Bounded to what the fit can produce, even when the hash matches (a forger can rehash).
    temperature, (low, high) = m.get("temperature", 1.0), TEMPERATURE_BOUNDS
    if not (_number(temperature) and low <= temperature <= high):
        raise _fail(path, "temperature", f"{temperature!r} must be a number from {low} to {high}")
    _check_preprocessing(m.get("preprocessing"), path)
    for key in ("metrics", "config"):
        if not isinstance(m.get(key, {}), dict):
            raise _fail(path, key, "must be an object")
    if not all(isinstance(k, str) and (v is None or _number(v)) for k, v in m.get("metrics", {}).items()):
        raise _fail(path, "metrics", "must map names to numbers")
    _check_config(m.get("config", {}), path)
    if not isinstance(m.get("model_hash", ""), str):
        raise _fail(path, "model_hash", "must be a string")
    if "concepts" in m:
        try:
            ConceptRecord.from_json(m["concepts"] if isinstance(m["concepts"], dict) else {})
        except ValueError as exc:
            raise _fail(path, "concepts", str(exc)) from None
    if "adapted" in m:
        try:
            AdaptRecord.from_json(m["adapted"] if isinstance(m["adapted"], dict) else {})
        except ValueError as exc:
            raise _fail(path, "adapted", str(exc)) from None
    _check_training_data(m.get("training_data", []), path)
    if "crop_layout" in m:
        try:
            FaceTemplate.from_json(m["crop_layout"] if isinstance(m["crop_layout"], dict) else {})
        except ValueError as exc:
            raise _fail(path, "crop_layout", str(exc)) from None
    provenance = m.get("backbone_weights", {})
    if not (isinstance(provenance, dict) and all(isinstance(k, str) for k in provenance)):
        raise _fail(path, "backbone_weights", "must be an object")
    if m["kind"] == "two_stage":
        stage_two = m.get("stage_two")
        if not isinstance(stage_two, dict) or stage_two.get("model") not in ("logistic", "lightgbm"):
            raise _fail(path, "stage_two.model", "must be 'logistic' or 'lightgbm'")
        names = m.get("attribute_names")
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise _fail(path, "attribute_names", "must be a list of attribute names")


def _check_preprocessing(pre, path: Path) -> None:
    """Sides within what training accepts, three finite means and positive stds, and no other keys."""
    if not isinstance(pre, dict):
        raise _fail(path, "preprocessing", "must be an object")
    for key in ("resize", "crop"):
        value = pre.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and 16 <= value <= MAX_SIDE[key]):
            raise _fail(
                path, f"preprocessing.{key}", f"{value!r} must be an integer from 16 to {MAX_SIDE[key]}"
            )
    if pre["crop"] > pre["resize"]:
        raise _fail(path, "preprocessing.crop", f"{pre['crop']} is larger than the resize {pre['resize']}")
    for key, low in (("mean", -10.0), ("std", 1e-6)):
        values = pre.get(key)
        if not (
            isinstance(values, list)
            and len(values) == 3
            and all(_number(v) and low <= v <= 10 for v in values)
        ):
            raise _fail(
                path,
                f"preprocessing.{key}",
                f"{values!r} must be three finite numbers" + (" above 0" if key == "std" else ""),
            )
    if pre.get("interpolation", "bilinear") != "bilinear":
        raise _fail(path, "preprocessing.interpolation", f"{pre.get('interpolation')!r} must be 'bilinear'")
    if set(pre) - {"resize", "crop", "mean", "std", "interpolation"}:
        raise _fail(
            path,
            "preprocessing",
            f"has unknown keys {sorted(set(pre) - {'resize', 'crop', 'mean', 'std', 'interpolation'})}",
        )


def _check_config(config: dict, path: Path) -> None:
    """A run's config is flat: names to numbers, strings, booleans or lists of them. Deeper nesting is not a
    config (and a few hundred levels would overflow the JSON writer when the bundle is saved again)."""
    flat = (str, int, float, bool, type(None))
    for key, value in config.items():
        if not isinstance(key, str) or not (
            isinstance(value, flat) or (isinstance(value, list) and all(isinstance(v, flat) for v in value))
        ):
            raise _fail(path, f"config.{key}", "must be a number, string, boolean or a list of them")


def _check_training_data(records, path: Path) -> None:
    """A list of at most :data:`MAX_SOURCES` records of :data:`SOURCE_KEYS` (strings under 1,000 characters,
    ``images``: names to counts): what a bundle says it learned from is read, so it is checked too."""
    if not (isinstance(records, list) and len(records) <= MAX_SOURCES):
        raise _fail(path, "training_data", f"must be a list of at most {MAX_SOURCES} sources")
    for k, record in enumerate(records):
        if not (isinstance(record, dict) and set(record) <= set(SOURCE_KEYS) and "name" in record):
            raise _fail(
                path, f"training_data[{k}]", f"must be an object with a name and only {sorted(SOURCE_KEYS)}"
            )
        for key, kind in SOURCE_KEYS.items():
            value = record.get(key, kind())
            if not isinstance(value, kind) or (kind is str and len(value) > 1000):
                raise _fail(
                    path,
                    f"training_data[{k}].{key}",
                    f"must be {'a short string' if kind is str else 'an object'}",
                )
        images = record.get("images", {})
        if not all(
            isinstance(n, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**9
            for n, v in images.items()
        ):
            raise _fail(path, f"training_data[{k}].images", "must map split names to image counts")


def _check_files(m: dict, directory: Path) -> None:
    path = directory / MANIFEST
    files = m.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise _fail(path, "files", "must map file names to SHA-256 hex digests")
    for name in files:
        if name in ("", ".", "..") or "/" in name or "\\" in name or ".." in name or name == MANIFEST:
            raise _fail(path, "files", f"names {name!r}, which is not a file of the bundle folder")
    required, optional = expected_files(m["kind"], (m.get("stage_two") or {}).get("model"))
    unexpected = sorted(set(files) - required - optional)
    if unexpected:
        raise _fail(path, "files", f"lists {unexpected}, which a {m['kind']} bundle does not hold")
    unlisted = sorted(required - set(files))
    if unlisted:
        raise _fail(path, "files", f"does not list {unlisted}, which every {m['kind']} bundle holds")
    for name, expected in files.items():
        file = directory / name
        if not file.is_file():
            raise BundleError(f"{file} is missing from the bundle; copy the whole folder, or save it again")
        if sha256_file(file) != expected:
            raise BundleError(f"{file} was modified after saving (SHA-256 mismatch); refusing to load it")
