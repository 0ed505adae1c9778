"""Stage one's outputs, and a face network's features, cached on disk without pickle: ``.npy`` arrays
(``allow_pickle=False``) + JSON.

    <cache_dir>/stage_one/<key>.npy    float32 (n, 39): stage one's probabilities (NaN rows: unreadable)
    <cache_dir>/stage_one/<key>.json   what the key covers (model hash, preprocessing, files) and the
                                       per-row errors
    <cache_dir>/features/<key>.*       the same for a frozen face network's features (n, d)

The key is the SHA-256 of the model's weights hash, the preprocessing and every image's path, size and
modification time, so a retrained model or an image replaced in place is never served from the cache.
A cache entry that cannot be read as plain numbers (a planted pickle, a truncated file), has the wrong
shape, another model's hash, a non-finite value in a row without an error, or a value outside the entry's
range (probabilities: [0, 1]) is ignored with a warning and recomputed: the cache never serves what the
model could not have produced, and reading it never runs code.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


def _stat(path: Path) -> tuple[int, int]:
    """Size and mtime, so an image replaced in place is not served from the cache."""
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


class StageOneCache:
    """Read and write cached stage-one probabilities (or, with ``kind="features"`` and no range, a face
    network's features) for lists of image files."""

    def __init__(
        self,
        directory: str | os.PathLike,
        kind: str = "stage_one",
        value_range: tuple[float, float] | None = (0.0, 1.0),
    ):
        self.directory = Path(directory) / kind
        self.value_range = value_range

    def key(self, model_hash: str, preprocessing: dict, paths: list[Path]) -> tuple[str, dict]:
        described = {
            "version": CACHE_VERSION,
            "model_hash": model_hash,
            "preprocessing": {k: preprocessing[k] for k in sorted(preprocessing)},
            "files": [[os.fsdecode(p), *_stat(p)] for p in paths],
        }
        text = json.dumps(described, sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest(), described

    def load(self, key: str, n: int, width: int) -> tuple[np.ndarray, list[str]] | None:
        """The cached (probabilities, errors), or None on a miss or an unreadable entry."""
        array_path, meta_path = self.directory / f"{key}.npy", self.directory / f"{key}.json"
        if not (array_path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("the entry's JSON is not an object")
            # Memory-mapped first: the header's shape is checked against the file and the expected shape
            # before a byte is read into memory (a header claiming 3e9 rows costs nothing); an .npz under an
            # .npy name is not an array and is refused; np.load never unpickles (object arrays raise).
            mapped = np.load(array_path, allow_pickle=False, mmap_mode="r")
            if not isinstance(mapped, np.ndarray):
                raise ValueError("not a single .npy array")
            errors = meta["errors"]
            if meta.get("key") != key or mapped.shape != (n, width) or mapped.dtype.kind != "f":
                raise ValueError(f"shape {mapped.shape} / key mismatch")
            probs = np.array(mapped)
            if not (
                isinstance(errors, list) and len(errors) == n and all(isinstance(e, str) for e in errors)
            ):
                raise ValueError("bad error list")
            self._check_values(probs, errors)
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            RecursionError,
            MemoryError,
            json.JSONDecodeError,
        ) as exc:
            warnings.warn(
                f"ignoring unreadable cache entry {array_path} ({exc}); recomputing it",
                stacklevel=3,
            )
            return None
        return probs.astype(np.float64), errors

    def meta(self, key: str) -> dict:
        """The JSON an entry was stored with (what it covers; ``seconds`` for features), {} if unreadable."""
        try:
            meta = json.loads((self.directory / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _check_values(self, values: np.ndarray, errors: list[str]) -> None:
        """Rows without an error hold finite numbers in range; rows with one hold NaN (no prediction)."""
        ok = np.array([not e for e in errors], dtype=bool)
        good = values[ok]
        if not np.isfinite(good).all():
            raise ValueError("a row without an error holds NaN or inf")
        if self.value_range is not None and good.size:
            low, high = self.value_range
            if good.min() < low or good.max() > high:
                raise ValueError(f"values outside [{low}, {high}]")

    def store(self, key: str, described: dict, probs: np.ndarray, errors: list[str]) -> None:
        """Write atomically (temporary files, then rename), so a killed process leaves no half entry."""
        self.directory.mkdir(parents=True, exist_ok=True)
        array_path, meta_path = self.directory / f"{key}.npy", self.directory / f"{key}.json"
        tmp_array = array_path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp_array, np.asarray(probs, dtype=np.float32), allow_pickle=False)
        tmp_meta = meta_path.with_suffix(f".{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps({"key": key, **described, "errors": list(errors)}, ensure_ascii=True))
        tmp_array.replace(array_path)
        tmp_meta.replace(meta_path)
