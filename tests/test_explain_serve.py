"""Issue 16: explanations that show the bias and read as text, the waterfall plot, pipelines' repr, and a
served model whose REST answer is strict JSON (null, never NaN).

The pipelines here are built from parts (an untrained tiny CNN and a stage two with known coefficients or a
LightGBM fitted on random rows): nothing is trained, so the file stays fast; the served-model test starts
a real ``attr2gender serve`` (MLflow's scoring server behind its guards) and is marked slow."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES
from attr2gender.pipeline import Attr2GenderPipeline, DirectGenderClassifier, Explanation
from attr2gender.pipeline.two_stage import BIAS_LABEL, BIAS_LABELS
from attr2gender.tabular import StageTwoClassifier, logistic_from_coefficients
from attr2gender.training import AttributeModel, DirectModel

ATTRS = list(STAGE_ONE_ATTRIBUTES)
IMAGE_SIZE = 32


def _strict_json(text: str):
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as ``JSON.parse`` does."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: bare {constant}")

    return json.loads(text, parse_constant=refuse)


def _two_stage(stage_two, **kw) -> Attr2GenderPipeline:
    pipe = Attr2GenderPipeline.from_parts(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        image_size=IMAGE_SIZE,
        device="cpu",
        num_workers=0,
        runtime="torch",
        **kw,
    )
    pipe.align = "none"  # the test images are crops already: no face detection
    return pipe


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        path = folder / f"img_{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def logistic():
    rng = np.random.default_rng(1)
    # Large coefficients and a large intercept, as in the issue: the bias alone decides a lot.
    return logistic_from_coefficients(rng.normal(0, 3, len(ATTRS)), 3.1, ATTRS)


@pytest.fixture(scope="module")
def lightgbm():
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.random((300, len(ATTRS))), columns=ATTRS)
    y = ((X["No_Beard"] < 0.5) | (X["Wearing_Lipstick"] < 0.3)).astype(int).to_numpy()
    return StageTwoClassifier(model="lightgbm", n_estimators=30, num_leaves=7).fit(X, y)


@pytest.fixture(scope="module")
def two_stage(logistic):
    return _two_stage(logistic)


# --- Explanation.top: the bias first, and the sums that hold ---


@pytest.mark.parametrize("route", ["logistic", "lightgbm", "calibrated"])
def test_bias_and_pushes_add_up_to_the_log_odds_of_the_prediction(route, images, request):
    stage_two = request.getfixturevalue("lightgbm" if route == "lightgbm" else "logistic")
    pipe = _two_stage(stage_two, temperature=2.0 if route == "calibrated" else 1.0)
    explanation = pipe.explain(images)
    male = explanation.predictions["male_probability"].to_numpy()
    log_odds = explanation.log_odds.to_numpy()
    np.testing.assert_allclose(log_odds, explanation.contributions.sum(axis=1).to_numpy())
    # The documented invariant: sigmoid(bias + all 39 pushes) is the predicted P(Male), calibration included.
    np.testing.assert_allclose(1 / (1 + np.exp(-log_odds)), male, rtol=1e-9, atol=1e-12)
    for i in range(len(images)):
        top = explanation.top(i, 5)
        assert len(top) == 6 and top.index[0] == explanation.bias_label
        assert explanation.bias_label == BIAS_LABELS["lightgbm" if route == "lightgbm" else "logistic"]
        assert top.iloc[0] == explanation.contributions["bias"].iloc[i]
        pushes = top.iloc[1:]
        assert set(pushes.index) <= set(ATTRS) and pushes.abs().is_monotonic_decreasing
        everything = explanation.top(i, len(ATTRS))
        assert everything.sum() == pytest.approx(log_odds[i], abs=1e-9)
        assert explanation.top(i, 5, bias=False).equals(pushes)


@pytest.mark.parametrize("route", ["logistic", "lightgbm", "calibrated"])
def test_the_explanation_line_says_the_decision_and_its_terms_add_up(route, images, request):
    """The CLI's --explain line: label and P(Male), the intercept named for what it is, the strongest
    pushes, every other attribute as one term, and the log-odds those terms sum to."""
    stage_two = request.getfixturevalue("lightgbm" if route == "lightgbm" else "logistic")
    explanation = _two_stage(stage_two, temperature=2.0 if route == "calibrated" else 1.0).explain(images)
    for i in range(len(images)):
        line = explanation.line(i, 3)
        label, rest = line.split(", P(Male) ", 1)
        assert label == explanation.predictions["label"].iloc[i]
        probability = float(rest.split(" ", 1)[0])
        assert probability == pytest.approx(explanation.predictions["male_probability"].iloc[i], abs=0.005)
        terms, total = rest.split(" = ", 1)[1].rsplit(": log-odds ", 1)
        values = [float(term.rsplit(" ", 1)[1]) for term in terms.split(", ")]
        assert len(values) == 5 and "36 others" in terms  # intercept, 3 pushes, the other 36
        assert sum(values) == pytest.approx(float(total), abs=0.03)  # rounding of five terms
        assert float(total) == pytest.approx(explanation.log_odds.iloc[i], abs=0.006)
        assert "base rate" not in line
    if route == "logistic":
        assert "intercept: all 39 attributes at 0" in explanation.line(0)


def test_a_large_bias_explains_a_prediction_that_every_shown_push_argues_against(images):
    # Every attribute pushes toward Female, yet the image comes out Male: only the bias line says why.
    stage_two = logistic_from_coefficients(np.full(len(ATTRS), -0.1), 3.1, ATTRS)
    explanation = _two_stage(stage_two).explain(images[:1])
    top = explanation.top(0, 5)
    assert (top.iloc[1:] < 0).all() and top[BIAS_LABEL] == pytest.approx(3.1)
    assert explanation.predictions["label"].iloc[0] == "Male"


def test_top_refuses_a_row_without_a_prediction(two_stage, images, tmp_path):
    explanation = two_stage.explain([images[0], tmp_path / "missing.jpg"])
    with pytest.raises(ValueError, match="no prediction"):
        explanation.top(1)
    assert np.isnan(explanation.log_odds.iloc[1])


# --- repr ---


def test_explanation_repr_is_one_line_per_image(two_stage, images, tmp_path):
    explanation = two_stage.explain([*images[:3], tmp_path / "missing.jpg"])
    lines = repr(explanation).splitlines()
    assert lines[0] == "Explanation(4 images)" and len(lines) == 5
    for i, line in enumerate(lines[1:4]):
        top = explanation.top(i, 3)
        label = explanation.predictions["label"].iloc[i]
        probability = explanation.predictions["male_probability"].iloc[i]
        assert line.startswith(
            f"  img_{i:03d}.jpg  {label:<6} {probability:.2f}  intercept {top.iloc[0]:+.2f} | "
        )
        assert line.endswith(", ".join(f"{name} {value:+.2f}" for name, value in top.iloc[1:].items()))
    assert lines[4].startswith("  missing.jpg") and "error:" in lines[4] and "does not exist" in lines[4]
    assert str(explanation) == repr(explanation)


def test_explanation_repr_stops_after_twenty_images(two_stage, images):
    one = two_stage.explain(images)
    many = Explanation(
        pd.concat([one.predictions] * 6, ignore_index=True),
        pd.concat([one.contributions] * 6),
        one.global_importance,
    )
    lines = repr(many).splitlines()
    assert lines[0] == "Explanation(24 images)" and len(lines) == 1 + 20 + 1 and lines[-1] == "  ... 4 more"


def test_pipeline_repr_says_what_it_is(logistic):
    pipe = _two_stage(
        logistic,
        metrics={"accuracy": 0.97271, "f1": 0.9},
        config={"backbone": "efficientnet_lite0", "image_size": IMAGE_SIZE},
    )
    pipe.data_kind = "celeba"
    assert repr(pipe) == (
        "Attr2GenderPipeline(two_stage, efficientnet_lite0 at 32 px, stage two logistic, trained on celeba, "
        "test accuracy 0.9727)"
    )
    # Built from parts: no config, no metrics. The backbone comes from the image model, the rest is omitted.
    bare = _two_stage(logistic)
    bare.data_kind = None
    assert repr(bare) == (
        "Attr2GenderPipeline(two_stage, test_efficientnet at 32 px, stage two logistic, trained on unknown data)"
    )
    bare.metrics = {"accuracy": float("nan")}  # e.g. a run with no test images
    bare.config = {"data_kind": "synthetic"}
    assert "test accuracy" not in repr(bare) and "trained on synthetic" in repr(bare)
    direct = DirectGenderClassifier(DirectModel(backbone="test_efficientnet", weights="none"), 48)
    direct.metrics = {"accuracy": 0.95}
    text = repr(direct)
    assert text.startswith("DirectGenderClassifier(direct, test_efficientnet at 48 px, trained on ")
    assert "stage two" not in text and text.endswith("test accuracy 0.9500)") and "\n" not in text


# --- the waterfall ---


@pytest.mark.parametrize("route", ["logistic", "lightgbm"])
def test_waterfall_runs_from_the_bias_to_the_log_odds(route, images, request, tmp_path):
    from attr2gender.plots import plot_explanation_waterfall

    explanation = _two_stage(request.getfixturevalue(route)).explain(images[:2])
    path = tmp_path / "why.png"
    fig = plot_explanation_waterfall(explanation, 1, k=6, path=path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    ax = fig.axes[0]
    bars = ax.patches[:8]  # bias, 6 attributes, the other 33 lumped; then the log-odds bar
    log_odds = explanation.log_odds.iloc[1]
    top = explanation.top(1, 6)
    np.testing.assert_allclose([b.get_width() for b in bars[:7]], top.to_numpy())
    assert bars[0].get_x() == 0  # the bias starts at 0 ...
    for before, after in zip(bars[:7], bars[1:8]):  # ... and each bar starts where the one above ended
        assert after.get_x() == pytest.approx(before.get_x() + before.get_width())
    end = bars[7].get_x() + bars[7].get_width()
    assert end == pytest.approx(log_odds)
    final = ax.patches[8]
    assert final.get_x() == 0 and final.get_width() == pytest.approx(log_odds)
    ticks = zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()))
    labels = [label for _, label in sorted(ticks, reverse=True)]  # top to bottom
    assert labels[0].startswith("bias") and labels[-1] == "log-odds (Male)" and len(labels) == 9
    assert labels[-2] == "other 33 attributes" and labels[1].startswith(f"{top.index[1]} = ")
    assert f"P(Male) = {explanation.predictions['male_probability'].iloc[1]:.3f}" in ax.get_title()


def test_waterfall_of_a_failed_row_says_why(two_stage, tmp_path):
    from attr2gender.plots import plot_explanation_waterfall

    explanation = two_stage.explain([tmp_path / "missing.jpg"])
    fig = plot_explanation_waterfall(explanation, 0)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("no prediction" in t for t in texts)


# --- the served frame is strict JSON ---


class _FakePipeline:
    """Probabilities by colour, NaN for what it cannot read: predict_frame without a model."""

    threshold = 0.5
    align = "none"

    def predict(self, images, errors="coerce", progress=None, batch_size=None, **alignment):
        rows = [(float(np.asarray(img).mean() > 100), "") for img in images]
        return pd.DataFrame({"male_probability": [r[0] for r in rows], "error": [r[1] for r in rows]})


def _b64(color) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_served_frame_serializes_missing_values_as_null():
    from mlflow.pyfunc.scoring_server import predictions_to_json

    from attr2gender.tracking.pyfunc_model import OUTPUT_COLUMNS, GenderPyfuncModel

    model = GenderPyfuncModel()
    model.pipeline = _FakePipeline()  # what load_context would set
    request = pd.DataFrame({"image_base64": [_b64("white"), "Y29ycnVwdA==", "not base64!!", _b64("black")]})
    out = model.predict(None, request)
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == 4
    assert out["male_probability"][1] is None and out["label"][1] is None
    assert pd.isna(out["male_probability"]).tolist() == [False, True, True, False]
    buffer = io.StringIO()
    predictions_to_json(out, buffer)  # exactly what the scoring server writes
    rows = _strict_json(buffer.getvalue())["predictions"]
    assert [r["male_probability"] for r in rows] == [1.0, None, None, 0.0]
    assert [r["label"] for r in rows] == ["Male", None, None, "Female"]
    assert rows[1]["error"] and rows[2]["error"] and rows[0]["error"] == ""
    assert all(r["n_faces"] is None and r["face_box"] is None for r in rows)


def test_served_frame_keeps_values_columns_and_order():
    from attr2gender.tracking.pyfunc_model import served_frame

    frame = pd.DataFrame(
        {
            "male_probability": [0.25, np.nan],
            "label": ["Female", None],
            "face_box": [[1, 2, 30, 40], None],
            "n_faces": pd.array([2, None], dtype="Int64"),
            "error": ["", "row 1: no face"],
        }
    )
    served = served_frame(frame)
    assert list(served.columns) == list(frame.columns)
    assert served.iloc[0].tolist() == [0.25, "Female", [1, 2, 30, 40], 2, ""]
    assert served.iloc[1].tolist() == [None, None, None, None, "row 1: no face"]
    assert served_frame(frame.iloc[:0]).columns.tolist() == list(frame.columns)  # an empty request


# --- the real server ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_ping(url: str, server: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"attr2gender serve exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    pytest.fail(f"attr2gender serve did not answer /ping within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """End the server and the workers it started (its own process group, made at start)."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


@pytest.mark.slow
def test_the_rest_answer_is_strict_json_with_null_for_a_failed_row(logistic, images, tmp_path):
    from attr2gender.tracking.mlflow_tracking import MlflowTracker

    # A SQLite file under tmp_path, as the project's default store (MLflow 3 refuses ./mlruns file stores).
    tracker = MlflowTracker(
        "serve-test", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", announce=lambda *_: None
    )
    bundle = _two_stage(logistic).save(tmp_path / "bundle", onnx=False)
    with tracker.run("serve"):
        model_uri = tracker.log_pyfunc_model(bundle)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    # Quiet and small: one worker, one thread each for torch and the BLAS (another job shares the CPU).
    env = os.environ | {
        "MLFLOW_TRACKING_URI": tracker.uri,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MLFLOW_MODELS_WORKERS": "1",
    }
    # What the README tells a user to run: MLflow's scoring routes behind the body cap and JSON depth limit.
    command = [
        sys.executable,
        "-m",
        "attr2gender",
        "serve",
        model_uri,
        "--port",
        str(port),
        "--max-body-mb",
        "1",
    ]
    with log.open("w") as sink:
        server = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for_ping(url, server, log)
        good = base64.b64encode(images[0].read_bytes()).decode("ascii")
        body = {
            "dataframe_split": {"columns": ["image_base64"], "data": [[good], ["Y29ycnVwdA=="]]},
            "params": {"align": "none"},  # the test images are crops: no face detection
        }
        request = urllib.request.Request(
            f"{url}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            text = reply.read().decode()
        refused = {}
        for name, data in (("big", b" " * (2**20 + 1)), ("deep", b"[" * 100_000 + b"]" * 100_000)):
            request = urllib.request.Request(
                f"{url}/invocations", data=data, headers={"Content-Type": "application/json"}
            )
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(request, timeout=60)
            refused[name] = (error.value.code, json.loads(error.value.read()))
    finally:
        _stop(server)
    rows = _strict_json(text)["predictions"]  # a bare NaN would raise here
    assert len(rows) == 2 and list(rows[0]) == ["male_probability", "label", "face_box", "n_faces", "error"]
    assert 0.0 <= rows[0]["male_probability"] <= 1.0 and rows[0]["label"] in ("Male", "Female")
    assert rows[0]["error"] == ""
    assert rows[1]["male_probability"] is None and rows[1]["label"] is None
    assert "not a readable image" in rows[1]["error"]
    assert refused["big"][0] == 413 and "1 MB" in refused["big"][1]["message"]
    assert refused["deep"][0] == 400 and "deeper than" in refused["deep"][1]["message"]
