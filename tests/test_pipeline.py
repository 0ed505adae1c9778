"""Both pipelines: fit on synthetic data, predict on every input kind, save/load, bundles, explain, cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES
from attr2gender.data.images import ImageLoadError
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.pipeline import Attr2GenderPipeline, BundleError, DirectGenderClassifier, load_pipeline
from attr2gender.tabular import InputKindMismatchError, StageTwoClassifier
from attr2gender.training import AttributeModel, train_direct, train_two_stage

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


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("pipe") / "celeba", n=300, seed=1, image_size=40)


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    two, two_report = train_two_stage(
        data_root=str(root), output_dir=str(out), cache_dir=str(out / "cache"), **TINY
    )
    direct, direct_report = train_direct(data_root=str(root), output_dir=str(out), **TINY)
    # The synthetic images are crops like the training images: read as they are (alignment: test_faces.py).
    two.align = direct.align = "none"
    return (two, direct), (two_report, direct_report)


@pytest.fixture(scope="module")
def fitted(trained):
    return trained[0]


@pytest.fixture(scope="module")
def reports(trained):
    """The TrainReports train_two_stage and train_direct return beside the pipelines."""
    return trained[1]


@pytest.fixture(scope="module")
def images(root):
    return sorted((root / "img_align_celeba").glob("*.jpg"))[:6]


def test_fit_reports_metrics_with_shared_names(fitted, reports):
    two, direct = fitted
    two_report, direct_report = reports
    for p in fitted:
        assert {"accuracy", "precision_male", "recall_female", "f1", "roc_auc", "train_seconds"} <= set(
            p.metrics
        )
        assert 0 <= p.metrics["accuracy"] <= 1
    assert 0 <= two.metrics["concept_mean_accuracy"] <= 1 and "attr_auc_Eyeglasses" in two.metrics
    assert two.metrics["stage_two_rows"] == len(two_report.train_result.datamodule.splits.val)
    assert two.stage_two.input_kind == "probability"  # fitted on stage one's held-out probabilities
    assert direct_report.test_male_probability.shape == (len(direct_report.test_ids),)
    # One evaluation per run, computed once in training: the flat metrics and the tables read it.
    for pipe, report in ((two, two_report), (direct, direct_report)):
        evaluation = report.evaluation.to_dict()
        assert evaluation["n"] == len(report.test_ids) and evaluation["accuracy"] == pytest.approx(
            pipe.metrics["accuracy"]
        )
        assert evaluation["ci_low"] <= evaluation["accuracy"] <= evaluation["ci_high"]
        assert report.group_table is report.evaluation.groups
        assert (
            pipe.metrics["ece"] == report.evaluation.ece and pipe.metrics["brier"] == report.evaluation.brier
        )
    with pytest.warns(DeprecationWarning, match="pipeline.kind is now pipeline.route"):
        assert direct.kind == direct.route == "direct"
    with pytest.raises(AttributeError, match="train_two_stage / train_direct return it"):
        direct.report  # noqa: B018  (a pipeline predicts; its training report is returned beside it)


def test_predict_rows_in_input_order(fitted, images):
    two, direct = fitted
    frame = two.predict([images[2], images[0], images[1]])
    assert list(frame["image"]) == [str(images[2]), str(images[0]), str(images[1])]
    assert list(frame.columns[:3]) == ["image", "male_probability", "label"]
    assert list(frame.columns[3:-1]) == list(STAGE_ONE_ATTRIBUTES) and frame.columns[-1] == "error"
    assert set(frame["label"]) <= {"Male", "Female"}
    np.testing.assert_array_equal(frame["label"] == "Male", frame["male_probability"] >= 0.5)
    single = two.predict(images[0])
    assert single["male_probability"].iloc[0] == pytest.approx(frame["male_probability"].iloc[1], abs=1e-6)
    d = direct.predict(images)
    assert list(d.columns) == ["image", "male_probability", "label", "error"]
    proba = direct.predict_proba(images)
    assert proba.shape == (6, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], d["male_probability"])


def test_two_stage_equals_stage_two_of_stage_one(fitted, images):
    two, _ = fitted
    frame = two.predict(images)
    attrs = frame[list(STAGE_ONE_ATTRIBUTES)].to_numpy()
    expected = two.stage_two.predict_proba(pd.DataFrame(attrs, columns=list(STAGE_ONE_ATTRIBUTES)))[:, 1]
    np.testing.assert_allclose(frame["male_probability"], expected)


def test_every_input_kind_gives_the_same_prediction(fitted, images, tmp_path):
    _, direct = fitted
    path = images[0]
    pil = Image.open(path).convert("RGB")
    arr = np.asarray(pil)
    chw = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(path, folder / "a.jpg")
    shutil.copy(images[1], folder / "b.jpg")
    (folder / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    reference = direct.predict(path)["male_probability"].iloc[0]
    for source in (str(path), path, pil, arr, chw, [pil], arr[None], chw[None]):
        got = direct.predict(source)
        assert len(got) == 1 and got["error"].iloc[0] == ""
        assert got["male_probability"].iloc[0] == pytest.approx(reference, abs=2e-3), type(source)
    from_folder = direct.predict(folder)
    assert list(from_folder["image"]) == [str(folder / "a.jpg"), str(folder / "b.jpg")]
    mixed = direct.predict([path, pil, arr, chw, folder])
    assert len(mixed) == 6 and list(mixed["image"][:4]) == [str(path), 1, 2, 3]


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_modes_are_converted(fitted, images, tmp_path, mode):
    _, direct = fitted
    im = Image.open(images[0])
    if mode == "I;16":
        im = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)
        path = tmp_path / "x16.png"
    else:
        im = im.convert(mode)
        path = tmp_path / ("x.jpg" if mode in ("L", "CMYK") else "x.png")
    im.save(path)
    got = direct.predict([path, im])
    assert (got["error"] == "").all() and got["male_probability"].notna().all()


def test_corrupt_and_missing_files_get_error_rows_others_predicted(fitted, images, tmp_path):
    two, _ = fitted
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    missing = tmp_path / "missing.jpg"
    frame = two.predict([images[0], bad, images[1], missing, images[2]])
    assert list(frame["error"] == "") == [True, False, True, False, True]
    assert "bad.jpg" in frame["error"].iloc[1] and "does not exist" in frame["error"].iloc[3]
    assert frame["male_probability"].iloc[[1, 3]].isna().all() and pd.isna(frame["label"].iloc[1])
    good = two.predict([images[0], images[1], images[2]])
    np.testing.assert_allclose(frame["male_probability"].iloc[[0, 2, 4]], good["male_probability"], atol=1e-6)
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        two.predict([images[0], bad], errors="raise")
    with pytest.raises(ImageLoadError):
        two.predict_proba([bad])


def test_save_load_round_trip_is_exact(fitted, images, tmp_path):
    for pipeline in fitted:
        bundle = pipeline.save(tmp_path / pipeline.route)
        loaded = load_pipeline(bundle, align="none")
        assert type(loaded) is type(pipeline)
        before, after = pipeline.predict(images), loaded.predict(images)
        pd.testing.assert_frame_equal(before, after)
        pd.testing.assert_series_equal(
            pd.Series(loaded.metrics, dtype=float).sort_index(),
            pd.Series(pipeline.metrics, dtype=float).sort_index(),
        )
        assert loaded.preprocessing == pipeline.preprocessing
        names = {p.name for p in bundle.iterdir()}
        assert not any(n.endswith((".pkl", ".pickle", ".ckpt", ".pt", ".pth")) for n in names)
        assert "model.safetensors" in names and "pipeline.json" in names
    assert isinstance(load_pipeline(tmp_path / "two_stage"), Attr2GenderPipeline)
    # The pipelines are inference only: the old class-level calls say in one line where they went.
    for call, where in (
        (lambda: DirectGenderClassifier.load, "attr2gender.load_pipeline"),
        (lambda: Attr2GenderPipeline.train, "attr2gender.train_two_stage"),
        (lambda: DirectGenderClassifier.fit, "attr2gender.train_direct"),
    ):
        with pytest.raises(AttributeError, match=where):
            call()


def test_tampered_missing_or_foreign_bundle_fails_clearly(fitted, tmp_path):
    two, _ = fitted
    bundle = two.save(tmp_path / "b")
    (bundle / "stage_two.json").write_text((bundle / "stage_two.json").read_text().replace("1", "2", 1))
    with pytest.raises(BundleError, match="modified after saving"):
        load_pipeline(bundle)
    bundle = two.save(tmp_path / "c")
    (bundle / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_pipeline(bundle)
    bundle = two.save(tmp_path / "d")
    manifest = json.loads((bundle / "pipeline.json").read_text())
    manifest["format"] = 99
    (bundle / "pipeline.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format 99"):
        load_pipeline(bundle)
    with pytest.raises(BundleError, match="not a bundle"):
        load_pipeline(tmp_path)


def test_labels_stage_two_is_applied_to_binarized_probabilities(root, tmp_path, images):
    """The trap: a model fitted on 0/1 labels must not read raw probabilities."""
    two, report = train_two_stage(
        data_root=str(root),
        output_dir=str(tmp_path),
        stage_two_fit_on="labels",
        stage_two_model="lightgbm",
        cache_dir=str(tmp_path / "cache"),
        **TINY,
    )
    two.align = "none"
    assert two.stage_two.input_kind == "binary" and two.stage_two.fit_input_is_binary_
    splits = report.train_result.datamodule.splits
    assert two.metrics["stage_two_rows"] == len(splits.train)  # official train partition rows
    assert two.predict(images)["male_probability"].notna().all()
    # The same model fitted on labels but told its inputs are probabilities refuses to run.
    unsafe = StageTwoClassifier(model="lightgbm", input_kind="probability", n_estimators=20)
    labels = np.random.default_rng(0).integers(0, 2, size=(80, 39)).astype(float)
    unsafe.fit(labels, labels[:, 0].astype(int))
    with pytest.raises(InputKindMismatchError):
        two.with_stage_two(unsafe).predict(images, errors="raise")


def test_stage_one_cache_means_swapping_stage_two_never_reruns_the_cnn(fitted, images, monkeypatch):
    two, _ = fitted
    first, errors = two.attribute_probabilities(list(images))
    calls = []
    monkeypatch.setattr(type(two), "_forward", lambda self, x: calls.append(1) or np.zeros((len(x), 39)))
    swapped = two.with_stage_two(two.stage_two)
    again, _ = swapped.attribute_probabilities(list(images))
    assert calls == [] and np.array_equal(first, again)
    other_list, _ = swapped.attribute_probabilities(list(images[:2]))  # a new image list is computed
    assert calls and other_list.shape == (2, 39)


def test_explain_contributions_sum_to_the_decision(fitted, images):
    two, _ = fitted
    explanation = two.explain(images[:3])
    contrib = explanation.contributions
    assert list(contrib.columns) == [*STAGE_ONE_ATTRIBUTES, "bias"] and len(contrib) == 3
    male = explanation.predictions["male_probability"].to_numpy()
    log_odds = contrib.sum(axis=1).to_numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-log_odds)), male, atol=1e-9)
    ranking = explanation.global_importance
    assert len(ranking) == 39 and ranking.abs().is_monotonic_decreasing
    top = explanation.top(0, 5)
    assert len(top) == 6 and top.index[0].startswith("(intercept")  # where it starts, then 5 pushes
    assert len(explanation.top(0, 5, bias=False)) == 5


def test_from_parts_validates(fitted):
    two, _ = fitted
    with pytest.raises(TypeError, match="AttributeModel"):
        Attr2GenderPipeline.from_parts(torch.nn.Linear(1, 1), two.stage_two)
    with pytest.raises(ValueError, match="fitted"):
        Attr2GenderPipeline.from_parts(two.attribute_model, StageTwoClassifier())
    rebuilt = Attr2GenderPipeline.from_parts(
        AttributeModel(backbone="test_efficientnet", weights="none"), two.stage_two, image_size=32
    )
    assert rebuilt.preprocessing["crop"] == 32


def test_timed_passes_can_skip_the_stage_one_cache(fitted, images):
    two, _ = fitted
    two.attribute_probabilities(images)
    two.attribute_probabilities(images)
    assert two.last_cache_hit  # refits read it
    fresh, _ = two.attribute_probabilities(images, read_cache=False)
    assert not two.last_cache_hit  # timings never do
    np.testing.assert_allclose(fresh, two.attribute_probabilities(images)[0], atol=1e-6)


def test_a_model_trained_on_synthetic_faces_says_so(fitted, images, tmp_path, capsys):
    from attr2gender.cli import main

    two, direct = fitted
    assert two.data_kind == direct.data_kind == "synthetic"
    assert "trained on synthetic" in repr(two) and "two_stage" in repr(two) and "test accuracy" in repr(two)
    bundle = direct.save(tmp_path / "bundle")
    assert json.loads((bundle / "pipeline.json").read_text())["data_kind"] == "synthetic"
    with pytest.warns(UserWarning, match="trained on synthetic faces"):
        load_pipeline(bundle, align="none")
    assert main(["predict", str(bundle), str(images[0]), "--align", "none", "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "synthetic faces" in line] == [
        next(line for line in err if line.startswith("warning:"))
    ]  # exactly one line, and it is the warning
