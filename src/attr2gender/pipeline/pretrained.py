"""The pretrained face bundles inside the package: an answer on a photo right after ``pip install``.

:func:`~attr2gender.pipeline.loading.load_pretrained` (or ``load_pipeline()`` with no folder) returns the
two-stage route, ``load_pretrained("direct")`` the direct one; this module holds what they are. Each is an
ordinary bundle in ``attr2gender/pretrained/<route>/`` (safetensors and JSON, verified file by file like any
bundle) that holds only the heads: the frozen face network they read is
dlib's, loaded from the installed ``face-recognition-models`` wheel after its SHA-256 is checked. Beside them,
``record.json`` says what they are: the data they learned from with its licences, the commit and command that
trained them, and their validation numbers with CIs. The SHA-256 of every file the loader reads first
(each bundle's ``pipeline.json``, which hashes the rest, and ``record.json``) is pinned in
:mod:`attr2gender.pipeline.pretrained_pins`, so an edited shipped file is refused.

``python pipelines/refresh_pretrained.py`` retrains them from ``../shared`` and rewrites the bundles, the
record, the pins and the README's numbers together (:mod:`attr2gender.experiments.pretrained_refresh`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError, ConfigError
from .bundle import KINDS
from .pretrained_pins import PINNED_SHA256

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
PRETRAINED_ROUTES = KINDS  # a shipped model for each route
RECORD_FILE = "record.json"
RECORD_FORMAT = 1
# Every licence a shipped model inherits: said wherever the model describes itself.
USE_TERMS = "non-commercial research only (CelebA's and UTKFace's terms)"
SOURCE_NAMES = {"celeba": "CelebA", "utkface": "UTKFace"}  # as their authors write them


def pretrained_route(route: str) -> str:
    """``two_stage`` or ``direct`` (``two-stage`` accepted); a ``ConfigError`` naming the choices otherwise."""
    name = str(route).replace("-", "_")
    if name not in PRETRAINED_ROUTES:
        raise ConfigError(f"pretrained route {route!r} is not one of two-stage, direct")
    return name


def pinned_bytes(root: Path, name: str, digest: str) -> bytes:
    """The bytes of ``root / name``, read once, when they are the pinned ones; a :class:`BundleError` otherwise."""
    path = root / name
    try:
        data = path.read_bytes()
    except OSError:
        raise BundleError(
            f"{path} is missing: this attr2gender was installed without its pretrained bundles; "
            "reinstall it (pip install --force-reinstall attr2gender) or pass a bundle folder"
        ) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise BundleError(
            f"{path} is not the file this attr2gender shipped (its SHA-256 differs from the pinned one): "
            "it was modified after installation; reinstall attr2gender"
        )
    return data


def check_pinned(root: Path, pins: dict[str, str]) -> None:
    """Each pinned file under ``root`` is there and holds the pinned bytes; a :class:`BundleError` otherwise."""
    for name, digest in pins.items():
        pinned_bytes(root, name, digest)


@dataclass(frozen=True)
class PretrainedRecord:
    """What ``record.json`` says of one shipped bundle, and its one-line and Markdown descriptions."""

    route: str  # two_stage or direct
    record: dict  # the whole record.json: commit, command, training data, each bundle's numbers

    @property
    def numbers(self) -> dict:
        return self.record["bundles"][self.route]

    @property
    def commit(self) -> str:
        return str(self.record.get("commit", "unknown"))[:12]

    def data_text(self) -> str:
        """``CelebA 8,437 + UTKFace 7,198 images`` (the images each source taught, training and validation)."""
        parts = []
        for source in self.numbers.get("training_data", []):
            images = source.get("images", {})
            name = str(source.get("name", "?"))
            parts.append(f"{SOURCE_NAMES.get(name, name)} {sum(int(v) for v in images.values()):,}")
        return " + ".join(parts) + " images" if parts else "unknown data"

    def line(self) -> str:
        """One line: what the model is, what it learned from, on what terms, and how right it is."""
        n = self.numbers
        celeba = n["celeba_test"]
        wild = n.get("wild_dev", {}).get("all")
        text = (
            f"attr2gender pretrained {self.route.replace('_', '-')} face model (commit {self.commit}; "
            f"{self.data_text()}; {USE_TERMS}): CelebA test people {percent_ci(celeba)}"
        )
        if wild:
            text += f", wild_dev photos {percent_ci(wild)}"
        return text


def percent_ci(entry: dict) -> str:
    """``98.2 % [97.7, 98.6] (n=3,635)`` from ``{"accuracy", "low", "high", "n"}``."""
    return (
        f"{100 * entry['accuracy']:.1f} % [{100 * entry['low']:.1f}, {100 * entry['high']:.1f}] "
        f"(n={int(entry['n']):,})"
    )


def read_record(root: Path = PRETRAINED_DIR, pins: dict[str, str] | None = None) -> dict:
    """``record.json``, after its pinned SHA-256 is checked."""
    pins = PINNED_SHA256 if pins is None else pins
    data = pinned_bytes(root, RECORD_FILE, pins[RECORD_FILE])  # read once: checked, then parsed
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise BundleError(f"{root / RECORD_FILE}: {exc}; reinstall attr2gender") from None
    if record.get("format") != RECORD_FORMAT:
        raise BundleError(f"{root / RECORD_FILE}: format {record.get('format')!r}, expected {RECORD_FORMAT}")
    return record
