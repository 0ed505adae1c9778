"""The commands end to end on a tiny synthetic CelebA, into a temporary MLflow store: compare (both
pipelines as nested runs + the comparison), the logged pyfunc, and failing before any work."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from attr2gender.cli import main_compare, main_direct, main_two_stage
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.experiments.plan import plan_run
from attr2gender.models import WeightsNotFoundError
from attr2gender.pipeline.bundle import disk_bytes
from attr2gender.tracking.mlflow_tracking import (
    DETAIL_JSON,
    DETAIL_TABLE,
    VIEW_ID,
    is_scalar_metric,
    metrics_from_detail,
)

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "backbone=test_efficientnet",
    "weights=none",
    "image_size=32",
    "epochs=1",
    "num_workers=0",
    "progress=false",
    "batch_size=16",
]
FAST = ["--latency", "1:2,64:4", "--latency-repeats", "1"]
SHARED_METRICS = {
    "test_accuracy",
    "test_roc_auc",
    "test_precision_male",
    "test_recall_female",
    "test_f1_male",
    "test_tp",
    "train_seconds",
    "inference_ms_per_image_b1",
    "inference_images_per_s_b64",
    "param_count",
    "bundle_bytes",
    "val_loss",
    "train_loss",
    # the names a person reads at a glance, the same for both routes
    "headline_accuracy",
    "val_accuracy",
    "val_auc",
    "time_train_seconds",
    "test_ece",
    "test_brier",
    "test_worst_slice_accuracy",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and do not crawl when another process holds a core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("synth") / "celeba", n=200, seed=0, image_size=40)


@pytest.fixture(scope="module")
def compared(synth_root, tmp_path_factory):
    """One ``compare.py`` run (both pipelines + comparison) into a temporary SQLite store."""
    work = tmp_path_factory.mktemp("work")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work}/mlflow.db")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main_compare(
                ["--data-root", str(synth_root), "--bootstrap", "200", "--corruptions", *FAST, *TINY]
            )
        assert rc == 0, err.getvalue()[-3000:]
        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{work}/mlflow.db")
        experiment = client.get_experiment_by_name("attr2gender")
        runs = client.search_runs([experiment.experiment_id])
        yield {
            "work": work,
            "stdout": out.getvalue(),
            "client": client,
            "experiment": experiment,
            "runs": {
                r.data.tags.get("route", "comparison" if "comparison" in r.data.tags else "?"): r
                for r in runs
            },
        }


def _artifacts(client, run_id, path=None) -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def _all_metrics(client, run) -> dict[str, float]:
    """Every metric a run logged: MLflow records a few, the rest is in its ``metrics/all_metrics.json``."""
    detail = json.loads(Path(client.download_artifacts(run.info.run_id, DETAIL_JSON)).read_text())
    return metrics_from_detail(detail) | dict(run.data.metrics)


def test_the_mlflow_views_a_person_reads(compared):
    """Experiment kind (the UI opens on training runs), headline metrics on parent and children, one sign
    convention, the run descriptions, system metrics off, and what the data was."""
    runs = compared["runs"]
    assert compared["experiment"].tags["mlflow.experimentKind"] == "custom_model_development"
    parent = runs["comparison"]
    m = parent.data.metrics
    assert {
        "accuracy_two_stage",
        "accuracy_direct",
        "two_stage_minus_direct_points",
        "inference_ratio_b64",
    } <= set(m)
    # The runs table shows the difference in points, rounded as the report says it (its CI's digits).
    exact = 100 * (m["accuracy_two_stage"] - m["accuracy_direct"])
    assert m["two_stage_minus_direct_points"] == pytest.approx(exact, abs=0.5 + 1e-6)
    assert m["two_stage_minus_direct_points_ci_low"] <= m["two_stage_minus_direct_points"]
    words = parent.data.tags["mlflow.note.content"].split("\n\n")[0]  # the first screen: one paragraph
    assert words.startswith("Two-stage (image") and "report.html" in words
    assert "more accurate" in words or "no significant difference" in words
    client = compared["client"]
    for kind in ("two_stage", "direct"):
        child = runs[kind]
        every = _all_metrics(client, child)
        # The runs table shows 4 significant digits; all_metrics.json keeps the exact values.
        assert child.data.metrics["headline_accuracy"] == pytest.approx(every["test_accuracy"], rel=1e-3)
        assert (
            every["headline_accuracy_ci_low"]
            <= every["headline_accuracy"]
            <= every["headline_accuracy_ci_high"]
        )
        assert child.data.metrics["time_train_seconds"] == pytest.approx(every["train_seconds"], rel=1e-3)
        assert not any(k.startswith("system/") for k in child.data.metrics)  # opt-in
        note = child.data.tags["mlflow.note.content"]
        assert "Test accuracy" in note and "synthetic faces" in note  # the smoke data says what it is
        assert child.data.tags["data"] == "synthetic"
    assert runs["two_stage"].data.tags["stage_one_cache"] in ("hit", "miss")
    two_files = _artifacts(client, runs["two_stage"].info.run_id)
    assert {  # the per-attribute table (sortable in the UI), slices and calibration
        "tables/attribute_metrics.json",
        "tables/slices.json",
        "reports/attribute_metrics.md",
        "reports/slices.md",
        "reports/calibration.md",
        "plots/attribute_balanced_accuracy.png",
        "plots/slices.png",
        "plots/reliability.png",
    } <= two_files
    assert {"tables/slices.json", "plots/reliability.png"} <= _artifacts(client, runs["direct"].info.run_id)
    parent_files = _artifacts(client, runs["comparison"].info.run_id)
    assert {"comparison/report.html", "comparison/slices.png", "comparison/reliability.png"} <= parent_files


def test_each_run_records_few_metrics_and_keeps_the_detail_in_a_json_and_a_table(compared):
    """The runs table offers a column and the chart view draws a chart per metric name: each run records at
    most 25, the headline among them (a route's first, where the compare view's plot opens); per attribute,
    group, slice and epoch is in ``metrics/all_metrics.json`` and the table ``tables/all_metrics.json``."""
    client = compared["client"]
    headline = {"two_stage": "headline_accuracy", "direct": "headline_accuracy"}
    headline["comparison"] = "two_stage_minus_direct_points"
    for kind, run in compared["runs"].items():
        scalars = set(run.data.metrics)
        assert headline[kind] in scalars and len(scalars) <= 25, (kind, sorted(scalars))
        assert all(is_scalar_metric(name) for name in scalars)
        if kind != "comparison":
            assert next(iter(run.data.metrics)) == "headline_accuracy"
        assert {DETAIL_JSON, DETAIL_TABLE} <= _artifacts(client, run.info.run_id)
        detail = json.loads(Path(client.download_artifacts(run.info.run_id, DETAIL_JSON)).read_text())
        assert set(detail["in_runs_table"]) == scalars and len(detail["metrics"]) > len(scalars)
    two = json.loads(
        Path(client.download_artifacts(compared["runs"]["two_stage"].info.run_id, DETAIL_JSON)).read_text()
    )
    assert {"test_attr_accuracy_Bald", "test_group_n_female_no_makeup", "bundle_bytes"} <= set(two["metrics"])
    # per epoch, not a chart
    assert [step for step, _ in two["per_step"]["train_concept_mean_accuracy"]] == [0]
    assert "train_concept_mean_accuracy" not in compared["runs"]["two_stage"].data.metrics
    assert "test_attr_accuracy_Bald" not in compared["runs"]["two_stage"].data.metrics
    table = json.loads(
        Path(client.download_artifacts(compared["runs"]["two_stage"].info.run_id, DETAIL_TABLE)).read_text()
    )
    assert len(table["data"]) == len(two["metrics"])
    # The printed link opens the saved view (sorted by accuracy) in the Model training view.
    assert f"workflowType=machine_learning&viewStateShareKey={VIEW_ID}" in compared["stdout"]


def test_compare_records_a_parent_and_two_nested_children(compared):
    runs, client = compared["runs"], compared["client"]
    assert set(runs) == {"comparison", "two_stage", "direct"}
    parent = runs["comparison"]
    for kind in ("two_stage", "direct"):
        child = runs[kind]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.params["seed"] == runs["two_stage"].data.params["seed"]  # same split and seed
    assert "mlflow.parentRunId" not in parent.data.tags
    m = _all_metrics(client, parent)
    for key in (
        "two_stage_minus_direct",
        "two_stage_minus_direct_ci_low",
        "two_stage_minus_direct_ci_high",
        "inference_ratio_b64",
        "inference_time_ratio",
        "inference_time_ratio_b64",
        "training_time_ratio",
        "size_ratio",
    ):
        assert key in m, key
    assert (
        m["two_stage_minus_direct_ci_low"]
        <= m["two_stage_minus_direct"]
        <= m["two_stage_minus_direct_ci_high"]
    )
    assert m["two_stage_minus_direct"] == pytest.approx(m["accuracy_two_stage"] - m["accuracy_direct"])
    assert "Accuracy drops" in parent.data.tags["mlflow.note.content"]
    assert {"comparison/report.md", "comparison/comparison.png", "comparison/costs.png"} <= _artifacts(
        client, parent.info.run_id
    )
    reports = list((compared["work"] / "runs").glob("compare-*/report.md"))
    assert len(reports) == 1 and "twice as slow" in reports[0].read_text()


def test_compare_measures_worst_groups_and_celeba_c(compared):
    runs, client = compared["runs"], compared["client"]
    m = _all_metrics(client, runs["comparison"])
    for route in ("two_stage", "direct"):
        assert (
            f"worst_group_gap_{route}" in m and f"worst_group_accuracy_{route}" in m
        )  # NaN when groups are small
        assert 0 <= m[f"celeba_c_mean_accuracy_{route}"] <= 1 and f"celeba_c_accuracy_rotate_15_{route}" in m
        assert {"test_worst_group_accuracy", "test_worst_group_gap", "test_group_n_female_no_makeup"} <= set(
            _all_metrics(client, runs[route])
        )
        assert "worst_group" in runs[route].data.tags
        assert {"reports/groups.md", "reports/groups.csv", "plots/group_accuracy.png"} <= _artifacts(
            client, runs[route].info.run_id
        )
    report = runs["comparison"].data.tags["mlflow.note.content"]
    assert "The people the average hides" in report and "CelebA-C" in report and "too few" in report
    assert "comparison/groups.png" in _artifacts(client, runs["comparison"].info.run_id)
    assert "worst-group accuracy" in compared["stdout"] and "CelebA-C mean accuracy" in compared["stdout"]


def test_children_log_the_same_metric_names_and_the_source_studys_artifacts(compared):
    runs, client = compared["runs"], compared["client"]
    two, direct = runs["two_stage"], runs["direct"]
    two_metrics, direct_metrics = _all_metrics(client, two), _all_metrics(client, direct)
    assert SHARED_METRICS <= set(two_metrics) and SHARED_METRICS <= set(direct_metrics)
    assert {"test_concept_mean_accuracy", "test_attr_accuracy_Bald", "test_attr_auc_Eyeglasses"} <= set(
        two_metrics
    )
    history = client.get_metric_history(two.info.run_id, "val_loss")
    assert [h.step for h in history] == [0]  # one point per epoch
    assert two.data.params["backbone"] == "test_efficientnet" and two.data.params["task"] == "attributes"
    assert direct.data.params["task"] == "direct" and direct.data.params["loss"] == "cross_entropy"
    common = {
        "config/config.yaml",
        "history/history.csv",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "plots/predictions_correct.png",
        "plots/predictions_incorrect.png",
        "plots/conv_filters.png",
        "plots/feature_maps.png",
        "reports/classification_report.txt",
        "predictions/test_predictions.csv",
    }
    assert common <= _artifacts(client, direct.info.run_id)
    assert common | {"plots/attribute_importance.png", "plots/attribute_accuracy.png"} <= _artifacts(
        client, two.info.run_id
    )
    report = client.download_artifacts(direct.info.run_id, "reports/classification_report.txt")
    assert "precision" in Path(report).read_text() and "Female" in Path(report).read_text()


def test_default_experiment_keeps_artifacts_beside_the_database(compared):
    location = compared["experiment"].artifact_location
    assert location.endswith("mlartifacts") and str(compared["work"]) in location


def test_output_names_the_results_and_the_ui_line(compared):
    text = compared["stdout"]
    assert f"mlflow ui --backend-store-uri sqlite:///{compared['work']}/mlflow.db" in text
    for kind in ("two_stage", "direct"):
        assert f"[{kind}] run dir:" in text and f"[{kind}] bundle:" in text
        assert compared["runs"][kind].info.run_id in text
        # Synthetic faces: said once per route, naming the bundle the user gets (not MLflow's temporary copy).
        warned = [line for line in text.splitlines() if "trained on synthetic faces" in line]
        assert len([w for w in warned if w.startswith(f"[{kind}] warning:")]) == 1, warned
    assert not any("/artifacts/bundle" in w for w in warned)
    assert compared["runs"]["comparison"].info.run_id in text


def test_logged_pyfunc_predicts_base64_images_and_paths(compared, synth_root, monkeypatch):
    import mlflow

    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", f"sqlite:///{compared['work']}/mlflow.db"
    )  # restored afterwards
    mlflow.set_tracking_uri(f"sqlite:///{compared['work']}/mlflow.db")
    images = sorted((Path(synth_root) / "img_align_celeba").glob("*.jpg"))[:3]
    encoded = [base64.b64encode(p.read_bytes()).decode("ascii") for p in images[:2]]
    frame = pd.DataFrame(
        {
            "image_base64": [encoded[0], "Y29ycnVwdA==", encoded[1], None],
            "path": [None, None, None, str(images[2])],
        }
    )
    for kind in ("two_stage", "direct"):
        model = mlflow.pyfunc.load_model(f"runs:/{compared['runs'][kind].info.run_id}/model")
        # The synthetic images are crops like the training ones: read as they are, a per-request param.
        out = model.predict(frame, params={"align": "none"})
        assert list(out.columns) == ["male_probability", "label", "face_box", "n_faces", "error"]
        assert len(out) == 4 and out["face_box"].isna().all()
        ok = [0, 2, 3]
        assert out["error"][ok].tolist() == ["", "", ""], out["error"].tolist()
        assert out["male_probability"][ok].between(0, 1).all() and set(out["label"][ok]) <= {"Male", "Female"}
        assert "not a readable image" in out["error"][1] and pd.isna(out["male_probability"][1])
        assert model.metadata.signature.inputs.input_names() == ["image_base64", "path"]
        model_dir = Path(
            mlflow.artifacts.download_artifacts(f"runs:/{compared['runs'][kind].info.run_id}/model")
        )
        assert (model_dir / "pyfunc_model.py").is_file()  # models from code ...
        assert not list(model_dir.rglob("*.pkl"))  # ... no pickled Python object
        assert (model_dir / "artifacts" / "bundle" / "pipeline.json").is_file()


def test_compare_two_finished_runs_by_id(compared, monkeypatch, capsys):
    monkeypatch.chdir(compared["work"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{compared['work']}/mlflow.db")
    two, direct = (compared["runs"][k].info.run_id for k in ("two_stage", "direct"))
    assert main_compare(["--mlflow-runs", two, direct, "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "more accurate" in out or "no significant difference" in out
    client = compared["client"]
    latest = client.search_runs(
        [compared["experiment"].experiment_id],
        f"tags.two_stage_run_id = '{two}'",
        order_by=["attributes.start_time DESC"],
    )[0]
    assert latest.data.tags["direct_run_id"] == direct and "comparison" in latest.data.tags
    parent = compared["runs"]["comparison"].data.metrics
    assert latest.data.metrics["two_stage_minus_direct_points"] == pytest.approx(
        parent["two_stage_minus_direct_points"]
    )  # same predictions
    # Swapped: refused, saying which goes first; under the old name too, which still works with a warning.
    assert main_compare(["--runs", direct, two]) == 2
    err = capsys.readouterr().err
    assert "two_stage run first" in err and "--runs is now --mlflow-runs" in err


def test_a_single_pipeline_command(synth_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rc = main_direct(["--data-root", str(synth_root), *FAST, *TINY, "tracking=none", "output_dir=out"])
    out = capsys.readouterr().out
    assert rc == 0 and "MLflow tracking is off" in out
    assert not (tmp_path / "mlflow.db").exists()
    run_dir = next((tmp_path / "out").glob("direct-*"))
    assert (run_dir / "bundle" / "pipeline.json").is_file() and (
        run_dir / "plots" / "confusion_matrix.png"
    ).is_file()
    # The size said is the size on the disk at the end (bundle included), the weights held once.
    said = next(line for line in out.splitlines() if "run dir:" in line)
    assert f"({disk_bytes(run_dir) / 1e6:.1f} MB on disk" in said
    assert os.path.samefile(run_dir / "model" / "model.safetensors", run_dir / "bundle" / "model.safetensors")
    assert not (run_dir / "checkpoints").exists()  # keep_checkpoints=none by default


# --- failing before any work ---


def _nothing_made(folder: Path) -> bool:
    return (
        not (folder / "mlflow.db").exists()
        and not (folder / "runs").exists()
        and not (folder / "data").exists()
    )


@pytest.mark.parametrize("main", [main_two_stage, main_direct, main_compare])
def test_a_bad_data_root_fails_before_any_work(main, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "--data-root" in err and "list_attr_celeba.txt" in err  # names what a root must hold
    assert _nothing_made(tmp_path)


@pytest.mark.parametrize("main", [main_two_stage, main_direct, main_compare])
def test_an_unknown_config_key_fails_before_any_work(main, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["epochz=1"]) == 2
    err = capsys.readouterr().err
    assert "epochz" in err and "did you mean 'epochs'" in err
    assert main(["epochs=many"]) == 2 and "epochs must be an integer" in capsys.readouterr().err
    assert _nothing_made(tmp_path)


def test_the_script_itself_exits_2_with_the_fix_on_stderr(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "run_direct.py"), "--data-root", "missing"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "error: --data-root missing is not a CelebA root" in proc.stderr
    assert proc.stdout == "" and _nothing_made(tmp_path)


def test_fresh_machine_plans_the_smoke_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/celeba here, no --data-root
    two = plan_run("two_stage")
    direct = plan_run("direct", overrides=["epochs=1"])
    assert two.data.synthetic and direct.data.synthetic and two.preset == direct.preset == "smoke"
    assert two.config.task == "attributes"
    assert (direct.config.task, direct.config.loss, direct.config.epochs) == ("direct", "cross_entropy", 1)
    assert not (tmp_path / "data").exists()  # planning makes nothing; the data is made after all checks pass


def test_a_real_root_plans_the_named_presets(synth_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("ATTR2GENDER_WEIGHTS_DIR", str(weights))
    with pytest.raises(WeightsNotFoundError, match="resnet18-f37072fd.pth"):  # before any work
        plan_run("two_stage", preset="two_stage", data_root=str(synth_root))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
    (weights / "resnet18-f37072fd.pth").write_bytes(b"")  # planning only checks that the file is there
    assert plan_run("two_stage", preset="two_stage", data_root=str(synth_root)).preset == "two_stage"
    plan = plan_run("direct", preset="direct", data_root=str(synth_root))
    assert plan.preset == "direct" and not plan.data.synthetic
    assert plan.config.data_root == str(Path(synth_root).resolve())


def test_a_real_root_runs_the_face_backbone_by_default(synth_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    two, direct = (plan_run(kind, data_root=str(synth_root)) for kind in ("two_stage", "direct"))
    assert two.preset == direct.preset == "face"
    assert two.config.backbone == direct.config.backbone == "dlib_resnet"
    assert (two.config.task, direct.config.task) == ("attributes", "direct")
    assert two.config.split_fractions == [0.6, 0.1, 0.3]  # a 30 % test side of the people
    # Naming an image CNN on the command line runs the study's preset for it, not the face preset's keys.
    cnn = plan_run("two_stage", data_root=str(synth_root), overrides=["backbone=efficientnet_lite0"])
    assert (cnn.preset, cnn.config.optimizer, cnn.config.freeze_backbone) == ("two_stage", "adam", False)


def test_compare_takes_a_concept_sweep_preset(synth_root, tmp_path, monkeypatch):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "task: attributes\nruns:\n  - {name: seq, mode: staged}\n  - {name: joint_1, mode: joint, concept_weight: 1.0}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main_compare(
            [
                "--data-root",
                str(synth_root),
                "--config-two-stage",
                str(sweep),
                "--bootstrap",
                "100",
                *FAST,
                *TINY,
            ]
        )
    assert rc == 0
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("attr2gender").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["route"] for r in children) == ["direct", "two_stage", "two_stage"]
    names = {
        r.data.tags["mlflow.runName"].split("-")[0] for r in children if r.data.tags["route"] == "two_stage"
    }
    assert names == {"seq", "joint_1"}
    for child in children:
        if child.data.tags["route"] == "two_stage":
            assert {
                "test_leakage_soft_accuracy",
                "test_leakage_hard_accuracy",
                "test_leakage_soft_minus_hard",
                "test_permutation_drop_Goatee",
            } <= set(_all_metrics(client, child))
            assert "reports/leakage.md" in _artifacts(client, child.info.run_id)
    parent = next(r for r in runs if "comparison" in r.data.tags)
    assert "The concept bottleneck: interventions and leakage" in parent.data.tags["mlflow.note.content"]
    files = _artifacts(client, parent.info.run_id)
    assert sum(f.startswith("comparison/intervention_curve_") and f.endswith(".png") for f in files) == 2
    assert any(k.startswith("intervention_accuracy_k5_uncertainty_") for k in _all_metrics(client, parent))
