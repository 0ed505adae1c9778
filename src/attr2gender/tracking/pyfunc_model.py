"""The MLflow pyfunc model of a saved pipeline bundle, logged as "models from code" (no pickle).

MLflow copies this file into the logged model and runs it on load: it defines
:class:`GenderPyfuncModel` and hands an instance to ``mlflow.models.set_model``. The trained weights
are not in this file: they are the pipeline bundle (safetensors + JSON, see
:mod:`attr2gender.pipeline.bundle`), logged as the model's artifact ``bundle`` and read in
``load_context``. The attr2gender package travels with the model as ``code_paths``.

Input: a DataFrame with a string column ``image_base64`` (an encoded JPEG/PNG, optionally with a
``data:image/...;base64,`` prefix) and/or a string column ``path`` (a file the server can read). Per
row the base64 image wins when both are given. Each image's face is found and aligned as in
``predict(align="auto")`` (the face nearest the centre). Output: one row per input row, in order, with
``male_probability`` (float; null when the row failed), ``label`` ("Male"/"Female"; null when failed),
``face_box`` ([x0, y0, x1, y1] in the input image, missing without a face), ``n_faces`` (faces found) and
``error`` ("" when fine, else why the row failed). A bad row (unreadable, no face, a folder, a
decompression bomb, not base64) never fails or shifts the others: one input row gives exactly one output row.
Missing values are ``None`` in the served frame (:func:`served_frame`), so the REST answer is strict JSON
(``null``, never the bare ``NaN`` that ``JSON.parse`` rejects).
Params, per request: ``align`` ("auto"; "crops": crops like the training images; "none": laid out as the bundle
reads already, for a face bundle dlib's 150 px chips),
``fallback`` ("error" or "whole_image"), ``min_eye_distance`` (px), ``max_pixels`` (the cap per image,
default 50,000,000) and ``max_request_pixels`` (the cap on a request's images together, default
300,000,000). Every row's header is read first (nothing decoded): an image over a cap is an error row
naming the cap. Then the rows are decoded, aligned and scored one batch at a time, each decoded image freed
once cropped, so a request's memory is about one decoded image, not all of them.

Serving (REST)::

    attr2gender serve runs:/<run_id>/model --port 5001   # MLflow's scoring app behind a body cap (serving.py)
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"image_base64": "'$(base64 -w0 face.jpg)'"}, {"path": "/data/x.jpg"}]}'
    # crops like the training images (CelebA's): add "params": {"align": "crops"} to the JSON

Spark (the signature is column based, so columns are matched by name)::

    udf = mlflow.pyfunc.spark_udf(spark, "runs:/<run_id>/model", env_manager="local",
                                  result_type="male_probability double, label string, error string")
    scored = images_df.withColumn("pred", udf(struct("path")))  # or struct("image_base64")
"""

import base64
import binascii
import math
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from attr2gender.data.faces import MIN_EYE_DISTANCE
from attr2gender.data.images import MAX_PIXELS, EncodedImage, checked_max_pixels, pixel_limit, probe
from attr2gender.pipeline import load_pipeline

INPUT_COLUMNS = ("image_base64", "path")
OUTPUT_COLUMNS = ("male_probability", "label", "face_box", "n_faces", "error")
MAX_REQUEST_PIXELS = 300_000_000  # one request's images together: six photos at the cap per image
PARAMS = {  # the defaults
    "align": "auto",
    "fallback": "error",
    "min_eye_distance": MIN_EYE_DISTANCE,
    "max_pixels": MAX_PIXELS,
    "max_request_pixels": MAX_REQUEST_PIXELS,
}
BUNDLE_ARTIFACT = "bundle"  # key of the pipeline bundle in the model's artifacts


def _blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def decode_base64(text) -> bytes:
    """Image bytes from base64 text: tolerates a ``data:image/...;base64,`` prefix and line-wrapped input
    (what ``base64 file`` prints); ``ValueError`` naming the problem otherwise."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("ascii", errors="replace")
    if not isinstance(text, str):
        raise ValueError(f"image_base64 must be a base64 string, got {type(text).__name__}")
    text = text.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())  # line breaks and spaces of wrapped base64
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"image_base64 is not valid base64 ({exc})") from None


# One answer for every path the server cannot read as an image, so a caller cannot tell which of the
# server's files exist, are folders or are not images (the messages that would say so are these markers).
UNREADABLE_PATH = "no readable image at this path on the server"
_FILE_LEVEL = (
    "does not exist",
    "is a folder",
    "not a readable image",
    "cannot decode",
    "name too long",
    "Permission denied",
    "not a regular file",
)


def _path_message(message: str, path) -> str:
    """A path row's error as the served model says it: file-level failures all read the same, naming the
    path the caller gave (which the caller knows), never what the server found there."""
    if not any(marker in message for marker in (*_FILE_LEVEL, UNREADABLE_PATH)):
        return message
    shown = str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
    return f"{shown}: {UNREADABLE_PATH}"


def _row_source(i: int, encoded, path):
    """What row ``i`` names as its one image (bytes or a file path), or raise ValueError saying why not."""
    if not _blank(encoded):
        raw = decode_base64(encoded)
        return raw
    if not _blank(path):
        if not isinstance(path, str):
            raise ValueError(f"path must be a string (a file the server can read), got {type(path).__name__}")
        try:
            regular = Path(path).is_file()
        except OSError:  # a name too long for the file system
            regular = False
        if not regular:
            raise ValueError(UNREADABLE_PATH)
        return Path(path)
    raise ValueError("neither image_base64 nor path given")


def predict_frame(pipeline, model_input, params: dict | None = None) -> pd.DataFrame:
    """Score ``model_input`` (DataFrame with ``image_base64`` and/or ``path``) with a loaded pipeline.

    One output row per input row, in the same order; a row that fails gets an ``error`` and no prediction,
    and never shifts or fails the others. ``params``: ``align``, ``fallback``, ``min_eye_distance``,
    ``max_pixels`` (per image) and ``max_request_pixels`` (all rows together), checked on each row's header
    before anything is decoded; the pipeline then decodes one batch of rows at a time."""
    unknown = sorted(set(params or {}) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown params {unknown}; accepted: {sorted(PARAMS)}")
    # Unset params: the pipeline's own default alignment (a loaded bundle's is "auto").
    settings = PARAMS | {"align": pipeline.align} | {k: v for k, v in (params or {}).items() if v is not None}
    max_pixels = checked_max_pixels(settings["max_pixels"], "max_pixels")
    max_request = checked_max_pixels(settings["max_request_pixels"], "max_request_pixels")

    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        model_input = pd.DataFrame(model_input)
    received = [str(c) for c in model_input.columns]
    unknown = [c for c in received if c not in INPUT_COLUMNS]
    if unknown or not any(c in received for c in INPUT_COLUMNS):
        raise ValueError(
            f"input columns must be image_base64 and/or path; received {received}"
            + (f" ({unknown} not accepted)" if unknown else "")
        )
    n = len(model_input)
    b64 = model_input["image_base64"].tolist() if "image_base64" in model_input else [None] * n
    paths = model_input["path"].tolist() if "path" in model_input else [None] * n
    errors = [""] * n
    sources, rows = [], []
    total = 0  # pixels of the rows accepted so far
    for i, (encoded, path) in enumerate(zip(b64, paths)):
        try:
            source = _row_source(i, encoded, path)
            name = f"row {i}" if isinstance(source, bytes) else os.fsdecode(source)
            # The header only: sizes, the cap per image, an icon's frames; nothing is decoded here.
            w, h = probe(source, name, max_pixels)
            if total + w * h > max_request:
                errors[i] = (
                    f"row {i}: {w}x{h} px would take the request over its cap of {max_request:,} pixels "
                    "in all; send fewer or smaller images per request, or raise max_request_pixels"
                )
                continue
            total += w * h
            # Encoded bytes stay encoded: the pipeline decodes them one batch at a time.
            sources.append(EncodedImage(source, name) if isinstance(source, bytes) else source)
            rows.append(i)
        except (ValueError, OSError) as exc:  # ImageLoadError included
            message = str(exc)
            if _blank(encoded) and not _blank(path):
                message = _path_message(message, path)
            errors[i] = message if message.startswith(f"row {i}: ") else f"row {i}: {message}"
    probability = np.full(n, np.nan)
    boxes: list = [None] * n
    n_faces = pd.array([None] * n, dtype="Int64")
    if sources:
        with pixel_limit(max_pixels):
            frame = pipeline.predict(
                sources,
                errors="coerce",
                progress=False,
                align=settings["align"],
                fallback=settings["fallback"] if settings["align"] == "auto" else "error",
                min_eye_distance=float(settings["min_eye_distance"]),
            )
        if len(frame) != len(sources):  # one source, one row: a mismatch would pair scores with wrong rows
            raise RuntimeError(
                f"{len(sources)} images gave {len(frame)} predictions; refusing to misalign rows"
            )
        probability[rows] = frame["male_probability"].to_numpy(dtype=float)
        if "face_box" in frame:
            for row, box in zip(rows, frame["face_box"].tolist()):
                boxes[row] = list(box) if box is not None else None
            n_faces[rows] = frame["n_faces"].array
        for row, message in zip(rows, frame["error"].tolist()):
            if message:
                if _blank(b64[row]):
                    message = _path_message(message, paths[row])
                errors[row] = message if message.startswith(f"row {row}: ") else f"row {row}: {message}"
    labels = [None if np.isnan(p) else ("Male" if p >= pipeline.threshold else "Female") for p in probability]
    return pd.DataFrame(
        {
            "male_probability": probability,
            "label": labels,
            "face_box": boxes,
            "n_faces": n_faces,
            "error": errors,
        }
    )


def served_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as the model serves it: the same columns in the same order, each of object dtype with
    ``None`` where a value is missing.

    MLflow's scoring server turns the frame into records (``DataFrame.to_dict``) and writes them with
    ``json.dump``, which writes a float NaN as a bare ``NaN``: not JSON, and ``JSON.parse`` refuses the
    whole answer. ``None`` becomes ``null``. Every column is converted, not only ``male_probability``:
    pandas 3 stores ``label``'s missing values as NaN too, and ``json.dump`` cannot write ``n_faces``'s
    ``pd.NA`` at all unless the pandas version at hand turns it into ``None`` first. Python callers still get
    numbers and strings (``pd.isna`` is true for the missing ones; Spark's ``double`` result columns read
    ``None`` as null)."""
    out = frame.astype(object)
    return out.where(frame.notna(), None)


class GenderPyfuncModel(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame[image_base64 | path]) -> DataFrame[male_probability, label, face_box, n_faces,
    error]``, missing values as ``None`` (:func:`served_frame`)."""

    def load_context(self, context):
        # num_workers=0: a server decodes in its own process; batch size is the bundle loader's default.
        self.pipeline = load_pipeline(context.artifacts[BUNDLE_ARTIFACT], num_workers=0)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return served_frame(predict_frame(self.pipeline, model_input, params))


mlflow.models.set_model(GenderPyfuncModel())
