"""The MLflow pyfunc model of a saved pipeline bundle, logged as "models from code" (no pickle).

MLflow copies this file into the logged model and runs it on load: it defines
:class:`GenderPyfuncModel` and hands an instance to ``mlflow.models.set_model``. The trained weights
are not in this file: they are the pipeline bundle (safetensors + JSON, see
:mod:`attr2gender.pipeline.bundle`), logged as the model's artifact ``bundle`` and read in
``load_context``. The attr2gender package travels with the model as ``code_paths``.

Input: a DataFrame with a string column ``image_base64`` (an encoded JPEG/PNG, optionally with a
``data:image/...;base64,`` prefix) and/or a string column ``path`` (a file the server can read). Per
row the base64 image wins when both are given. Output: one row per input row, in order, with
``male_probability`` (float, NaN when the row failed), ``label`` ("Male"/"Female", missing when failed)
and ``error`` ("" when fine, else why the row failed). A bad row never fails the others. (Over REST a
failed row's probability and label come back as ``NaN``, which Python's ``json`` reads.)

Serving (REST)::

    mlflow models serve -m runs:/<run_id>/model --env-manager local -p 5001
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"image_base64": "'$(base64 -w0 face.jpg)'"}, {"path": "/data/x.jpg"}]}'

Spark (the signature is column based, so columns are matched by name)::

    udf = mlflow.pyfunc.spark_udf(spark, "runs:/<run_id>/model", env_manager="local",
                                  result_type="male_probability double, label string, error string")
    scored = images_df.withColumn("pred", udf(struct("path")))  # or struct("image_base64")
"""

import base64
import binascii
import io
import math

import mlflow
import numpy as np
import pandas as pd

INPUT_COLUMNS = ("image_base64", "path")
OUTPUT_COLUMNS = ("male_probability", "label", "error")
BUNDLE_ARTIFACT = "bundle"  # key of the pipeline bundle in the model's artifacts


def _blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def decode_base64_image(text: str):
    """An RGB PIL image from base64 text; ``ValueError`` naming the problem otherwise."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(text, str | bytes):
        raise ValueError(f"image_base64 must be a string, got {type(text).__name__}")
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    text = text.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"image_base64 is not valid base64 ({exc})") from None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return im.convert("RGB") if im.mode != "RGB" else im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"image_base64 decodes to {len(raw)} bytes that are not a readable image ({exc})") from None


def predict_frame(pipeline, model_input) -> pd.DataFrame:
    """Score ``model_input`` (DataFrame with ``image_base64`` and/or ``path``) with a loaded pipeline."""
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        model_input = pd.DataFrame(model_input)
    if not any(c in model_input.columns for c in INPUT_COLUMNS):
        raise ValueError(f"input needs a column image_base64 and/or path; got columns {list(model_input.columns)}")
    n = len(model_input)
    b64 = model_input["image_base64"].tolist() if "image_base64" in model_input else [None] * n
    paths = model_input["path"].tolist() if "path" in model_input else [None] * n
    errors = [""] * n
    sources, rows = [], []
    for i, (encoded, path) in enumerate(zip(b64, paths)):
        if not _blank(encoded):
            try:
                sources.append(decode_base64_image(encoded))
                rows.append(i)
            except ValueError as exc:
                errors[i] = f"row {i}: {exc}"
        elif not _blank(path):
            from pathlib import Path

            sources.append(Path(str(path)))
            rows.append(i)
        else:
            errors[i] = f"row {i}: neither image_base64 nor path given"
    probability = np.full(n, np.nan)
    if sources:
        frame = pipeline.predict(sources, errors="coerce", progress=False)
        probability[rows] = frame["male_probability"].to_numpy(dtype=float)
        for row, message in zip(rows, frame["error"].tolist()):
            if message:
                errors[row] = f"row {row}: {message}"
    labels = [None if np.isnan(p) else ("Male" if p >= pipeline.threshold else "Female") for p in probability]
    return pd.DataFrame({"male_probability": probability, "label": labels, "error": errors})


class GenderPyfuncModel(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame[image_base64 | path]) -> DataFrame[male_probability, label, error]``."""

    def load_context(self, context):
        from attr2gender.pipeline import load_pipeline

        # num_workers=0: a server decodes in its own process; batch size is the bundle loader's default.
        self.pipeline = load_pipeline(context.artifacts[BUNDLE_ARTIFACT], num_workers=0)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return predict_frame(self.pipeline, model_input)


mlflow.models.set_model(GenderPyfuncModel())
