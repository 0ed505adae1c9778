"""Batch scoring on a real Spark: ``mlflow.pyfunc.spark_udf`` over a logged model, as the README shows.

Spark runs in local mode (``local[2]``, a JVM plus Python worker processes that load the model with
``env_manager="local"``), so the test needs pyspark (the ``[spark]`` extra) and Java 17+; it is skipped when
either is missing. ``.ci/run`` installs the extra, and CI machines have Java, so CI runs it.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys

import pytest

from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.training import train_direct

pytest.importorskip("pyspark")

# As in test_pipeline.py: a model that fits in seconds; its predictions only have to be reproducible.
TINY = dict(
    backbone="test_efficientnet",
    weights="none",
    image_size=32,
    epochs=1,
    num_workers=0,
    progress=False,
    batch_size=32,
    tracking="none",
)
README_RESULT_TYPE = "male_probability double, label string, error string"  # README's spark_udf call
# Every output column. n_faces as double, not long: MLflow casts a struct's integer field with
# astype(int64), which raises on the null n_faces of a failed row and fails the whole batch; a double
# field takes the null (NaN, which Spark reads as null).
FULL_RESULT_TYPE = "male_probability double, label string, face_box array<long>, n_faces double, error string"


def _java_major() -> int | None:
    """Major version of the ``java`` on PATH (None when there is none or it cannot say)."""
    java = shutil.which("java")
    if java is None:
        return None
    try:
        # ``java -version`` writes to stderr: 'openjdk version "17.0.15"' (or "1.8.0_x" for Java 8).
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


@pytest.fixture(scope="module")
def java():
    major = _java_major()
    if major is None:
        pytest.skip("Spark needs Java: no working `java` on PATH")
    if major < 17:  # pyspark 4 runs on Java 17 or newer; an older JVM fails at session start
        pytest.skip(f"Spark 4 needs Java 17+, found Java {major}")
    return major


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of good synthetic crops plus one corrupt JPEG (sorted last: ``zz_corrupt.jpg``)."""
    root = make_synthetic_celeba(tmp_path_factory.mktemp("spark") / "celeba", n=120, seed=3, image_size=40)
    folder = root / "img_align_celeba"
    (folder / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not an image")
    return root, folder


@pytest.fixture(scope="module")
def pipeline(images):
    root, _ = images
    out = root.parent / "runs"
    fitted = train_direct(data_root=str(root), output_dir=str(out), **TINY)[0]
    # The synthetic faces are crops like the training images; the detector may not find them.
    fitted.align = "none"
    return fitted


@pytest.fixture
def model_uri(pipeline, tmp_path, monkeypatch):
    """The pipeline logged as the project logs it, into a SQLite store under tmp_path."""
    import mlflow

    from attr2gender.tracking.mlflow_tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # MlflowTracker calls mlflow.set_tracking_uri, which also exports MLFLOW_TRACKING_URI; setting it here
    # first lets monkeypatch restore the variable afterwards, and the global URI is reset below.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracker = MlflowTracker("spark-test", tracking_uri=uri, announce=lambda *_: None)
    # No model.onnx: the served model then runs torch, as the in-memory pipeline compared against does.
    bundle = pipeline.save(tmp_path / "bundle", onnx=False)
    with tracker.run("spark"):
        model = tracker.log_pyfunc_model(bundle)
    yield model
    mlflow.set_tracking_uri(None)


@pytest.fixture
def spark(java, monkeypatch):
    from pyspark.sql import SparkSession

    # The UDF runs in Python worker processes started by the JVM: they must be this interpreter (with
    # attr2gender's dependencies), not whatever `python3` is first on PATH.
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    # spark_udf copies the model to a local folder on the driver; its progress bar is noise in a test log.
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("attr2gender-test")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        # One torch thread per Python worker (the variable reaches the workers only): two workers on
        # two cores, which other tests or jobs may share.
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


def _is_null(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@pytest.mark.slow
def test_spark_udf_scores_each_row_as_predict_does(spark, model_uri, pipeline, images):
    import mlflow
    from pyspark.sql.functions import struct

    _, folder = images
    good = sorted(str(p) for p in folder.glob("*.jpg") if p.name != "zz_corrupt.jpg")[:40]
    corrupt = str(folder / "zz_corrupt.jpg")
    missing = str(folder / "missing.jpg")
    paths = [*good[:20], corrupt, *good[20:], missing]
    # Two partitions: both Python workers load the model and score part of the rows.
    images_df = spark.createDataFrame([(p,) for p in paths], "path string").repartition(2)

    # README's call. params: these images are crops like the training images, read as they are.
    udf = mlflow.pyfunc.spark_udf(
        spark, model_uri, env_manager="local", result_type=README_RESULT_TYPE, params={"align": "none"}
    )
    # All columns, with the face detector on. The small synthetic faces are mostly not found, so good rows
    # have n_faces 0 (predicted on the whole image) and failed rows a null n_faces, in the same batch.
    aligned = {"align": "auto", "fallback": "whole_image"}
    full = mlflow.pyfunc.spark_udf(
        spark, model_uri, env_manager="local", result_type=FULL_RESULT_TYPE, params=aligned
    )
    scored = images_df.withColumn("pred", udf(struct("path"))).withColumn("full", full(struct("path")))
    rows = {r["path"]: r for r in scored.collect()}

    assert sorted(rows) == sorted(paths)  # one output row per input row, none lost or repeated
    crops = pipeline.predict(good, progress=False, align="none")
    photos = pipeline.predict(good, progress=False, **aligned)
    assert (crops["error"] == "").all()
    for path, want, want_full in zip(good, crops.itertuples(), photos.itertuples()):
        pred, got = rows[path]["pred"], rows[path]["full"]
        assert pred["error"] == "", (path, pred)
        assert math.isclose(pred["male_probability"], want.male_probability, abs_tol=1e-5), path
        assert pred["label"] == want.label
        assert math.isclose(got["male_probability"], want_full.male_probability, abs_tol=1e-5), path
        # The served error names the row's place in its batch ("row 5: no face found: ...").
        assert got["label"] == want_full.label and got["error"].endswith(want_full.error), (path, got)
        assert got["n_faces"] == want_full.n_faces
        expected_box = None if _is_null(want_full.face_box) else list(want_full.face_box)
        assert (None if got["face_box"] is None else list(got["face_box"])) == expected_box
    # Each unreadable path names itself, with the one answer the served model gives for any of them
    # (missing or corrupt read the same: the server's files are not told apart).
    for path, reason in (
        (corrupt, "zz_corrupt.jpg: no readable image"),
        (missing, "missing.jpg: no readable image"),
    ):
        for column in ("pred", "full"):
            bad = rows[path][column]
            assert bad["male_probability"] is None, (path, column, bad)
            assert reason in bad["error"], (path, column, bad)
            # MLflow casts a struct's string field with astype(str) unless every value in the batch is
            # missing, so a failed row's null label reaches Spark as the text "None" when the batch also
            # has labelled rows: read failures from male_probability (null) and error, not from label.
            assert bad["label"] in (None, "None"), (path, column, bad)
        assert _is_null(rows[path]["full"]["n_faces"]) and rows[path]["full"]["face_box"] is None
