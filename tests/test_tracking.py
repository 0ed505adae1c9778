"""Tracking logic without a tracking server: store resolution, what MLflow records and where the rest goes
(into a temporary SQLite store), comparison maths, latency, the pyfunc's input handling, and the comparison
flow against a mocked tracker (the commands into MLflow: test_pipelines_scripts)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attr2gender.experiments.comparison_metrics import RouteResult, compare_routes, match_rows
from attr2gender.experiments.comparison_report import described, write_comparison
from attr2gender.pipeline.bundle import disk_bytes
from attr2gender.tracking.measure import MeasureSpec, measure_latency
from attr2gender.tracking.mlflow_tracking import (
    COMPARISON_METRICS,
    DETAIL_JSON,
    DETAIL_TABLE,
    EPOCH_METRICS,
    EXPERIMENT_KIND,
    ROUTE_METRICS,
    VIEW_ID,
    VIEW_TAG,
    MlflowTracker,
    NullTracker,
    artifact_location_for,
    default_tracking_uri,
    is_rank_zero,
    is_scalar_metric,
    numeric_metrics,
    pyfunc_signature,
    runs_view_state,
    runs_view_tag,
    ui_command,
)

# --- where runs go ---


def test_default_store_is_an_absolute_sqlite_file_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db" and uri.startswith("sqlite:////")
    assert artifact_location_for(uri) == str(tmp_path.resolve() / "mlartifacts")
    assert ui_command(uri) == f"mlflow ui --backend-store-uri {uri}"
    assert not (tmp_path / "mlflow.db").exists()  # resolving creates nothing


def test_tracking_uri_from_the_environment_wins(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.team:5000")
    assert default_tracking_uri() == "http://mlflow.team:5000"
    assert artifact_location_for("http://mlflow.team:5000") is None  # the server decides
    assert "http://mlflow.team:5000" in ui_command("http://mlflow.team:5000")


@pytest.mark.parametrize(
    "env,zero",
    [
        ({}, True),
        ({"RANK": "0"}, True),
        ({"RANK": "1"}, False),
        ({"LOCAL_RANK": "2"}, False),
        ({"SLURM_PROCID": "0"}, True),
    ],
)
def test_only_rank_zero_logs(monkeypatch, env, zero):
    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert is_rank_zero() is zero


def test_metrics_are_numbers_with_valid_names():
    out = numeric_metrics(
        {"test_accuracy": np.float64(0.9), "n": 3, "flag": True, "name": "x", "a(b)": 1.0, "none": None}
    )
    assert out == {"test_accuracy": 0.9, "n": 3.0, "a_b_": 1.0}


# --- what MLflow records: a few numbers per run, the rest in one JSON and one table ---

MAX_SCALARS = 25  # MLflow draws a runs-table column, a chart and a parallel-coordinates axis per metric name


def test_the_curated_lists_stay_short_and_hold_the_headline():
    assert len(ROUTE_METRICS) + len(EPOCH_METRICS) <= 20 and len(COMPARISON_METRICS) <= 20
    assert "headline_accuracy" in ROUTE_METRICS and "two_stage_minus_direct_points" in COMPARISON_METRICS
    assert is_scalar_metric("seeds_accuracy_direct_mean") and is_scalar_metric("seed_two_stage_minus_direct")
    assert not is_scalar_metric("test_attr_accuracy_Bald") and not is_scalar_metric("test_group_n_male_blond")
    state = runs_view_state()  # the saved view sorts and shows names a run really records
    # Newest first: MLflow nests a comparison's routes under it only when sorted by start time.
    assert state["orderByKey"] == "attributes.start_time" and state["orderByAsc"] is False
    # The answer first, where a 1440 px screen with MLflow's assistant panel open still shows it.
    assert [c.split("`")[1] for c in state["selectedColumns"][:3]] == [
        "headline_accuracy",
        "two_stage_minus_direct_points",
        "test_concepts_reliable",
    ]
    assert all(is_scalar_metric(c.split("`")[1]) for c in state["selectedColumns"])
    charts = state["compareRunCharts"]  # the chart view: these first, then the other recorded names
    assert [c["metricKey"] for c in charts[: len(state["selectedColumns"])]] == [
        c.split("`")[1] for c in state["selectedColumns"]
    ]
    assert all(is_scalar_metric(c["metricKey"]) for c in charts)
    assert {c["metricSectionId"] for c in charts} == {s["uuid"] for s in state["compareRunSections"]}
    assert len(runs_view_tag()) < 20000  # MLflow's limit on an experiment tag's value


@pytest.fixture
def tracked(tmp_path, monkeypatch):
    """A real tracker on a temporary SQLite store; a route-like run with ~200 metrics and 3 epochs."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracker = MlflowTracker("metrics-test", uri, announce=lambda m: None)
    many = {f"test_attr_accuracy_{i}": i / 200 for i in range(150)}
    many |= {f"test_group_n_{i}": float(i) for i in range(30)}
    headline = {
        "headline_accuracy": 0.9,
        "headline_accuracy_ci_low": 0.88,
        "headline_accuracy_ci_high": 0.92,
        "test_accuracy": 0.9,
        "test_worst_group_accuracy": float("nan"),  # too few images: NaN, kept
        "time_train_seconds": 12.0,
        "train_seconds": 12.0,
        "inference_ms_per_image_b1": 3.5,
        "inference_ms_per_image_b8": 1.5,  # a batch size outside the headline ones: detail only
    }
    history = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "train_loss": [1.0, 0.9, 0.8],
            "val_loss": [1.1, 1.0, 0.9],
            "train_auc": [0.5, 0.6, 0.7],
        }
    )
    with tracker.run("route") as run_id:
        tracker.log_history(history)  # as the pipeline does: the curves first, the test numbers after
        tracker.log_metrics(many | headline)
    import mlflow

    return {
        "tracker": tracker,
        "client": mlflow.MlflowClient(uri),
        "run_id": run_id,
        "logged": many | headline,
    }


def test_a_run_records_few_metrics_and_the_rest_as_one_json_and_one_table(tracked):
    client, run_id = tracked["client"], tracked["run_id"]
    run = client.get_run(run_id)
    scalars = set(run.data.metrics)
    assert "headline_accuracy" in scalars and len(scalars) <= MAX_SCALARS, sorted(scalars)
    assert scalars == {k for k in tracked["logged"] | {"train_loss": 0, "val_loss": 0} if is_scalar_metric(k)}
    assert [h.step for h in client.get_metric_history(run_id, "val_loss")] == [0, 1, 2]  # a training curve
    # The first metric the run page lists and the compare view's plot opens on: the headline, not a curve.
    assert next(iter(run.data.metrics)) == "headline_accuracy"
    files = {a.path for folder in ("metrics", "tables") for a in client.list_artifacts(run_id, folder)}
    assert {DETAIL_JSON, DETAIL_TABLE} <= files
    detail = json.loads(Path(client.download_artifacts(run_id, DETAIL_JSON)).read_text())
    assert set(detail["metrics"]) == set(tracked["logged"]) | {"train_loss", "val_loss", "train_auc"}
    assert detail["metrics"]["test_attr_accuracy_7"] == 7 / 200
    assert detail["metrics"]["test_worst_group_accuracy"] is None  # NaN as null: strict JSON
    assert detail["per_step"]["train_auc"] == [[0, 0.5], [1, 0.6], [2, 0.7]]  # per-epoch detail, no chart
    assert set(detail["in_runs_table"]) == scalars
    table = json.loads(Path(client.download_artifacts(run_id, DETAIL_TABLE)).read_text())
    assert table["columns"] == ["metric", "value", "step", "in_runs_table"]
    rows = {row[0]: row for row in table["data"]}
    assert len(rows) == len(detail["metrics"]) and rows["test_group_n_3"][1] == 3.0
    assert rows["headline_accuracy"][3] is True and rows["test_group_n_3"][3] is False


def test_run_data_reads_every_metric_back(tracked):
    metrics, _, _ = tracked["tracker"].run_data(tracked["run_id"])
    assert metrics["train_seconds"] == 12.0 and metrics["inference_ms_per_image_b8"] == 1.5  # compare --runs
    assert metrics["test_attr_accuracy_149"] == 149 / 200 and math.isnan(metrics["test_worst_group_accuracy"])
    assert metrics["train_loss"] == pytest.approx(0.8)  # the last epoch


def test_the_experiment_holds_its_kind_and_the_saved_view_the_link_opens(tracked):
    tracker, client = tracked["tracker"], tracked["client"]
    tags = client.get_experiment(tracker.experiment_id).tags
    assert tags["mlflow.experimentKind"] == EXPERIMENT_KIND
    view = json.loads(tags[VIEW_TAG])  # MLflow 3.17's saved-view envelope, listed under "Views"
    assert isinstance(view["name"], str) and isinstance(view["createdAt"], int)
    assert json.loads(view["state"]) == runs_view_state()
    link, hint = tracker.ui_line().split("\n")
    assert f"#/experiments/{tracker.experiment_id}/runs?workflowType=machine_learning" in link
    assert link.endswith(f"&viewStateShareKey={VIEW_ID}") and "Model training" in hint
    # An existing experiment (e.g. compare --runs reading runs made elsewhere) is tagged too.
    other = client.create_experiment("made-elsewhere")
    import mlflow

    with mlflow.start_run(experiment_id=other) as made:
        pass
    tracker.use_experiment_of(made.info.run_id)
    tags = client.get_experiment(other).tags
    assert tags["mlflow.experimentKind"] == EXPERIMENT_KIND and VIEW_TAG in tags


def test_pyfunc_signature_is_column_based():
    sig = pyfunc_signature()
    assert sig.inputs.input_names() == ["image_base64", "path"]
    assert not any(c.required for c in sig.inputs.inputs)  # either column may be absent
    assert sig.outputs.input_names() == ["male_probability", "label", "face_box", "n_faces", "error"]
    # Per request: the alignment of the images, e.g. {"align": "none"} for crops like the training images.
    assert {p.name: p.default for p in sig.params.params} == {
        "align": "auto",
        "fallback": "error",
        "min_eye_distance": 24.0,
        "max_pixels": 50_000_000,  # per image, checked on the header before decoding
        "max_request_pixels": 300_000_000,  # all of a request's images together
    }


# --- comparison maths (no tracking at all) ---


def _route(name, ids, y, prob, **metrics):
    return RouteResult(name, list(ids), np.asarray(y), np.asarray(prob, float), dict(metrics))


def test_accuracy_loss_and_ratios_on_known_predictions():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    ids = [f"{i:06d}.jpg" for i in range(n)]
    direct_right = rng.random(n) < 0.95
    two_right = rng.random(n) < 0.85
    p_direct = np.where(direct_right, y, 1 - y) * 0.8 + 0.1
    p_two = np.where(two_right, y, 1 - y) * 0.8 + 0.1
    order = rng.permutation(n)  # the direct run lists the same images in another order
    two = _route(
        "two_stage",
        ids,
        y,
        p_two,
        inference_ms_per_image_b1=4.0,
        inference_ms_per_image_b64=1.0,
        train_seconds=200.0,
        bundle_bytes=3e6,
        param_count=1100,
    )
    direct = _route(
        "direct",
        np.array(ids)[order],
        y[order],
        p_direct[order],
        inference_ms_per_image_b1=2.0,
        inference_ms_per_image_b64=0.8,
        train_seconds=100.0,
        bundle_bytes=2e6,
        param_count=1000,
    )
    c = described(compare_routes(two, direct, n_boot=500, seed=0), two, direct)
    m = c.metrics
    expected = two_right.mean() - direct_right.mean()  # positive: two-stage more accurate
    assert m["two_stage_minus_direct"] == pytest.approx(expected)
    assert m["accuracy_direct"] == pytest.approx(direct_right.mean())
    assert m["two_stage_minus_direct_ci_low"] < expected < m["two_stage_minus_direct_ci_high"]
    assert m["two_stage_minus_direct_ci_high"] < 0  # a 10-point gap on 400 images is clear
    assert m["inference_ratio_b64"] == 1.25
    assert m["inference_time_ratio_b1"] == 2.0 and m["inference_time_ratio_b64"] == 1.25
    assert m["inference_time_ratio"] == 2.0  # the headline is the smallest batch (one request)
    assert m["training_time_ratio"] == 2.0 and m["size_ratio"] == 1.5 and m["param_ratio"] == 1.1
    assert m["n_test_images"] == n
    assert "Accuracy drops" in c.report and "**reproduced**" in c.report and "about twice" in c.report
    # plain words, a positive number of points, to the digit a 400-image interval (about +-4 points) supports
    assert f"direct is {-100 * expected:.0f} points more accurate than two-stage" in c.report
    ci = c.per_route["direct"]
    assert ci["accuracy_ci_low"] < ci["accuracy"] < ci["accuracy_ci_high"]


def test_identical_predictions_give_a_zero_loss_and_the_report_says_so():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.2, 0.9, 0.4, 0.1, 0.7])
    ids = list("abcde")
    two, direct = _route("two_stage", ids, y, p), _route("direct", ids, y, p)
    c = described(compare_routes(two, direct, n_boot=100), two, direct)
    assert (
        c.metrics["two_stage_minus_direct"],
        c.metrics["two_stage_minus_direct_ci_low"],
        c.metrics["two_stage_minus_direct_ci_high"],
    ) == (0, 0, 0)
    assert "no significant difference" in c.report
    assert np.isnan(c.metrics["inference_time_ratio"])  # nothing measured: NaN, not a crash
    assert "**not shown**" in c.report and "not measured" in c.report


def test_only_shared_images_are_compared_and_conflicting_truth_is_refused():
    two = _route("two_stage", ["a", "b", "c"], [1, 0, 1], [0.9, 0.2, 0.8])
    direct = _route("direct", ["c", "a", "z"], [1, 1, 0], [0.7, 0.6, 0.1])
    ids, y, p_two, p_direct = match_rows(two, direct)
    assert ids == ["a", "c"] and y.tolist() == [1, 1] and p_direct.tolist() == [0.6, 0.7]
    with pytest.raises(ValueError, match="disagree"):
        match_rows(two, _route("direct", ["a"], [0], [0.5]))
    with pytest.raises(ValueError, match="share no test image"):
        match_rows(two, _route("direct", ["q"], [0], [0.5]))


def test_comparison_files(tmp_path):
    y = np.array([0, 1] * 10)
    two = _route(
        "two_stage",
        range(20),
        y,
        np.where(y, 0.7, 0.4),
        inference_ms_per_image_b1=3,
        train_seconds=2,
        bundle_bytes=10,
        param_count=5,
    )
    direct = _route(
        "direct",
        range(20),
        y,
        np.where(y, 0.9, 0.1),
        inference_ms_per_image_b1=1,
        train_seconds=1,
        bundle_bytes=10,
        param_count=5,
    )
    files = write_comparison(described(compare_routes(two, direct, n_boot=50), two, direct), tmp_path)
    for key in ("report", "json", "plot", "costs_plot"):
        assert files[key].is_file() and files[key].stat().st_size > 0
    assert files["plot"].read_bytes()[:4] == b"\x89PNG"
    saved = json.loads(files["json"].read_text())
    assert {"metrics", "per_approach", "costs"} <= set(
        saved
    )  # the keys comparison.json files have always had


# --- the comparison flow, tracking backend mocked ---


class RecordingTracker(NullTracker):
    """Records runs (with their parent) and what was logged into each."""

    enabled = True
    uri = "memory://"

    def __init__(self):
        self.runs, self.stack = [], []

    @contextlib.contextmanager
    def run(self, name, tags=None, nested=False, system_metrics=False, description=None):
        run = {
            "id": f"run{len(self.runs)}",
            "name": name,
            "tags": dict(tags or {}),
            "nested": nested,
            "parent": self.stack[-1]["id"] if self.stack else None,
            "metrics": {},
            "artifacts": [],
        }
        self.runs.append(run)
        self.stack.append(run)
        try:
            yield run["id"]
        finally:
            self.stack.pop()

    def log_metrics(self, metrics, step=None):
        self.stack[-1]["metrics"].update(metrics)

    def set_tags(self, tags):
        self.stack[-1]["tags"].update(tags)

    def log_artifact(self, path, artifact_path=None):
        self.stack[-1]["artifacts"].append(Path(path).name)


def test_compare_nests_both_routes_under_a_parent_run(tmp_path, monkeypatch):
    from attr2gender.config import RunConfig
    from attr2gender.experiments import comparison_run as runmod
    from attr2gender.experiments.plan import DataChoice, RunPlan
    from attr2gender.experiments.route_run import PipelineRun

    y = np.array([0, 1, 1, 0, 1, 0, 1, 1])

    def fake_run_pipeline(plan, tracker, nested=False, measure=None, extra_tags=None):
        with tracker.run(
            plan.config.run_name, tags={"route": plan.route} | (extra_tags or {}), nested=nested
        ) as rid:
            prob = np.where(y, 0.8, 0.3) if plan.route == "direct" else np.where(y, 0.6, 0.45)
            metrics = {
                "test_accuracy": 1.0,
                "inference_ms_per_image_b1": 2.0 if plan.route == "two_stage" else 1.0,
            }
            tracker.log_metrics(metrics)
            result = RouteResult(plan.route, list("abcdefgh"), y, prob, metrics, run_id=rid)
            return PipelineRun(plan.route, plan.config, None, tmp_path, tmp_path, metrics, result, rid)

    monkeypatch.setattr(runmod, "run_pipeline", fake_run_pipeline)
    data = DataChoice(str(tmp_path), synthetic=False)
    plans = [
        RunPlan(kind, RunConfig(output_dir=str(tmp_path), run_name=kind), None, data)
        for kind in ("two_stage", "direct")
    ]
    tracker = RecordingTracker()
    result = runmod.run_comparison(*plans, tracker=tracker, n_boot=100, stamp="t")
    parent, two, direct = tracker.runs
    assert parent["tags"]["comparison"] and parent["parent"] is None
    assert (
        (two["parent"], direct["parent"]) == (parent["id"], parent["id"])
        and two["nested"]
        and direct["nested"]
    )
    assert (two["tags"]["route"], direct["tags"]["route"]) == ("two_stage", "direct")
    assert parent["metrics"]["inference_time_ratio"] == 2.0
    assert parent["metrics"]["two_stage_minus_direct"] == 0.0  # both right on every image
    assert "Accuracy drops" in parent["tags"]["mlflow.note.content"]
    assert parent["tags"]["two_stage_run_id"] == two["id"]
    assert {"report.md", "comparison.png", "costs.png"} <= set(parent["artifacts"])
    assert (tmp_path / "compare-t" / "report.md").read_text() == result.comparison.report


# --- latency and size ---


class _FakePipeline:
    threshold = 0.5
    align = "auto"

    def __init__(self):
        self.calls = []

    def predict(self, images, errors="coerce", progress=None, batch_size=None, **alignment):
        self.calls.append((len(images), batch_size))
        rows = []
        for img in images:
            if not isinstance(img, str | Path):  # a decoded image, or the served model's undecoded bytes
                rows.append((float(np.asarray(img).mean() > 100), ""))
            elif Path(img).is_file():
                rows.append((0.25, ""))
            else:
                rows.append((np.nan, f"{img}: file does not exist"))
        return pd.DataFrame({"male_probability": [r[0] for r in rows], "error": [r[1] for r in rows]})


def test_latency_is_timed_per_batch_size_on_full_batches():
    pipe = _FakePipeline()
    out = measure_latency(pipe, ["img"] * 3, MeasureSpec({1: 4, 8: 16}, repeats=2))
    assert set(out) == {
        "inference_ms_per_image_b1",
        "inference_images_per_s_b1",
        "inference_ms_per_image_b8",
        "inference_images_per_s_b8",
    }
    assert pipe.calls == [(4, 1)] * 3 + [(16, 8)] * 3  # warm-up + 2 repeats; images cycled to the count
    assert all(v > 0 for v in out.values())


def test_latency_spec_parsing():
    assert MeasureSpec.parse("1:16,64:128", repeats=5) == MeasureSpec({1: 16, 64: 128}, repeats=5)
    with pytest.raises(ValueError, match="batch:images"):
        MeasureSpec.parse("1x16")
    with pytest.raises(ValueError, match="at least 1"):
        MeasureSpec.parse("0:16")


def test_disk_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 5)
    assert disk_bytes(tmp_path) == 15


# --- the pyfunc's input handling (the model itself is loaded in test_pipelines_scripts) ---


def _b64(color, fmt="PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_pyfunc_rows_base64_paths_and_errors(tmp_path):
    from attr2gender.tracking.pyfunc_model import predict_frame

    path = tmp_path / "face.jpg"
    Image.new("RGB", (8, 8), "gray").save(path)
    frame = pd.DataFrame(
        {
            "image_base64": [
                _b64("white"),
                "data:image/jpeg;base64," + _b64("black", "JPEG"),
                "not base64!!",
                None,
                None,
                base64.b64encode(b"plain text").decode(),
            ],
            "path": [None, None, None, str(path), "", None],
        }
    )
    out = predict_frame(_FakePipeline(), frame)
    assert (
        list(out.columns) == ["male_probability", "label", "face_box", "n_faces", "error"] and len(out) == 6
    )
    assert out["male_probability"][:2].tolist() == [1.0, 0.0] and out["label"][:2].tolist() == [
        "Male",
        "Female",
    ]
    assert out["male_probability"][3] == 0.25 and out["error"][3] == ""
    assert "not valid base64" in out["error"][2] and "neither image_base64 nor path" in out["error"][4]
    assert "not a readable image" in out["error"][5]
    assert pd.isna(out["label"][2]) and np.isnan(out["male_probability"][5])
    only_paths = predict_frame(
        _FakePipeline(), pd.DataFrame({"path": [str(path), str(tmp_path / "missing.jpg")]})
    )
    assert only_paths["error"][0] == "" and only_paths["error"][1].endswith(
        "missing.jpg: no readable image at this path on the server"
    )
    with pytest.raises(ValueError, match="image_base64 and/or path"):
        predict_frame(_FakePipeline(), pd.DataFrame({"x": [1]}))


def test_the_runs_table_shows_readable_numbers():
    from attr2gender.tracking.mlflow_tracking import readable

    assert readable(17.447440591997292) == 17.45 and readable(0.6455696202531646) == 0.6456
    assert readable(5_612_345.0) == 5_612_345.0  # counts stay whole
    assert math.isnan(readable(float("nan")))
