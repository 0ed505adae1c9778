"""The evaluation a reviewer asks for: per-attribute table, fairness slices, calibration, temperature."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from attr2gender.data.groups import SLICE_ATTRIBUTES, masks_from_frame, slice_masks
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.metrics import (
    attribute_table_markdown,
    brier_score,
    calibration_bins,
    expected_calibration_error,
    expected_calibration_error_ci,
    per_attribute_metrics,
    slice_metrics,
    slice_table,
    slice_table_markdown,
)
from attr2gender.pipeline import DirectGenderClassifier, load_pipeline
from attr2gender.pipeline.calibration import apply_temperature
from attr2gender.training import train_direct
from attr2gender.training.calibration import fit_temperature


def _truth(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.integers(0, 2, n) for c in (*SLICE_ATTRIBUTES, "Male", "Blond_Hair")})
    frame["Bald"] = (rng.random(n) < 0.02).astype(int)  # rare, as in CelebA
    return frame


# --- slices -----------------------------------------------------------------------------------------


def test_small_slices_say_too_few_instead_of_a_number():
    truth = _truth(400)
    y = truth["Male"].to_numpy()
    prob = np.where(y == 1, 0.8, 0.2)
    table = slice_table(y, prob, slice_masks(truth), n_boot=200)
    bald = table.loc["Bald"]
    assert bald["n"] < 30 and not bald["enough"]
    assert np.isnan(bald["accuracy"]) and np.isnan(bald["false_male_rate"])
    assert "too few" in bald["note"]
    md = slice_table_markdown(table)
    assert "| Bald |" in md and "too few" in md.split("| Bald |")[1].split("\n")[0]
    # Every pair covers everyone; the four blond groups too.
    assert table.loc["Young", "n"] + table.loc["not_Young", "n"] == 400
    assert {"female_blond", "male_no_blond"} <= set(table.index)


def test_slice_rates_count_the_right_mistakes():
    truth = _truth(600, seed=1)
    y = truth["Male"].to_numpy()
    pred = y.copy()
    glasses = truth["Eyeglasses"].to_numpy() == 1
    pred[glasses & (y == 0)] = 1  # every woman with glasses is called a man
    table = slice_table(y, pred.astype(float), slice_masks(truth), n_boot=200)
    assert table.loc["Eyeglasses", "false_male_rate"] == pytest.approx(1.0)
    assert table.loc["Eyeglasses", "false_female_rate"] == pytest.approx(0.0)
    assert table.loc["not_Eyeglasses", "accuracy"] == pytest.approx(1.0)
    flat = slice_metrics(table, float((pred == y).mean()))
    assert flat["worst_slice_accuracy"] == pytest.approx(table.loc[table["enough"], "accuracy"].min())
    assert flat["worst_slice_accuracy"] <= table.loc["Eyeglasses", "accuracy"] < 0.6
    assert flat["worst_slice_gap"] > 0


def test_slice_masks_name_the_missing_attribute():
    with pytest.raises(ValueError, match="Pale_Skin"):
        slice_masks(_truth(10).drop(columns=["Pale_Skin"]))


def test_user_groups_boolean_and_categorical():
    groups = pd.DataFrame({"glasses": [True, False, True, None], "age": ["20s", "30s", "20s", "40s"]})
    masks = masks_from_frame(groups)
    assert masks["glasses"].tolist() == [True, False, True, False]
    assert masks["not_glasses"].tolist() == [False, True, False, False]  # unknown is in neither
    assert masks["age=20s"].tolist() == [True, False, True, False]
    assert set(masks) == {"glasses", "not_glasses", "age=20s", "age=30s", "age=40s"}


# --- calibration ------------------------------------------------------------------------------------


def test_a_perfectly_calibrated_toy_has_ece_near_zero():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(p.size) < p).astype(int)  # P(Male) is exactly the chance of being male
    assert expected_calibration_error(y, p) < 0.005
    overconfident = np.where(p >= 0.5, 1.0, 0.0)
    assert expected_calibration_error(y, overconfident) > 0.2
    point, low, high = expected_calibration_error_ci(y[:2000], p[:2000], n_boot=200)
    assert low <= point <= high and high < 0.06
    bins = calibration_bins(y, p)
    assert len(bins) == 15 and bins["n"].sum() == p.size
    assert np.allclose(bins["male_rate"], bins["mean_probability"], atol=0.02)
    assert brier_score([1, 0], [1.0, 0.0]) == 0.0 and brier_score([1, 0], [0.5, 0.5]) == 0.25


def test_temperature_never_changes_a_label_at_one_half():
    rng = np.random.default_rng(1)
    p = rng.random(5000)
    p[:3] = [0.5, 0.0, 1.0]
    for t in (0.1, 0.5, 1.7, 9.0):
        q = apply_temperature(p, t)
        assert np.array_equal(q >= 0.5, p >= 0.5)
    assert np.isnan(apply_temperature(np.array([np.nan, 0.3]), 2.0)[0])


def test_fitted_temperature_softens_an_overconfident_model():
    rng = np.random.default_rng(2)
    true_p = rng.random(20_000)
    y = (rng.random(true_p.size) < true_p).astype(int)
    logit = np.log(true_p) - np.log1p(-true_p)
    overconfident = 1 / (1 + np.exp(-3 * logit))  # logits 3x too large
    t = fit_temperature(y, overconfident)
    assert 2.5 < t < 3.5
    assert expected_calibration_error(
        y, apply_temperature(overconfident, t)
    ) < 0.3 * expected_calibration_error(y, overconfident)
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(np.ones(10), np.full(10, 0.9))


# --- per attribute ----------------------------------------------------------------------------------


def test_per_attribute_table_flags_below_majority_and_sorts_worst_first():
    rng = np.random.default_rng(3)
    n = 1000
    rare = (rng.random(n) < 0.1).astype(int)  # 10 % prevalence
    common = rng.integers(0, 2, n)
    y = np.stack([rare, common], axis=1)
    prob = np.stack([rng.random(n), np.where(common == 1, 0.9, 0.1)], axis=1)  # noise; perfect
    table = per_attribute_metrics(y, prob, ["Rare", "Common"])
    assert table.loc["Rare", "below_majority"] and not table.loc["Common", "below_majority"]
    assert table.loc["Common", "balanced_accuracy"] == pytest.approx(1.0)
    assert table.loc["Rare", "balanced_accuracy"] == pytest.approx(0.5, abs=0.06)
    assert table.loc["Common", "f1"] == pytest.approx(1.0)
    md = attribute_table_markdown(table)
    assert md.index("| Rare |") < md.index("| Common |")  # worst first
    assert " !" in md.split("| Rare |")[1].split("\n")[0]


# --- end to end: calibrate: true, slices in the report, slice_report ------------------------------


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
def calibrated(tmp_path_factory):
    root = make_synthetic_celeba(tmp_path_factory.mktemp("cal") / "celeba", n=240, seed=4, image_size=40)
    out = tmp_path_factory.mktemp("runs")
    pipe, report = train_direct(
        data_root=str(root), output_dir=str(out), calibrate=True, face_template_images=0, **TINY
    )
    pipe.align = "none"
    return root, pipe, report


def test_calibrate_true_stores_the_temperature_and_predict_applies_it(calibrated, tmp_path):
    root, pipe, report = calibrated
    assert pipe.temperature != 1.0 and pipe.metrics["temperature"] == pipe.temperature
    assert {"ece", "brier", "worst_slice_accuracy"} <= set(pipe.metrics)
    assert report.slice_table is not None and "Eyeglasses" in report.slice_table.index
    images = sorted((root / "img_align_celeba").glob("*.jpg"))[:8]
    calibrated_frame = pipe.predict(images, progress=False)
    bundle = pipe.save(tmp_path / "bundle")
    assert json.loads((bundle / "pipeline.json").read_text())["temperature"] == pytest.approx(
        pipe.temperature
    )
    loaded = load_pipeline(bundle, align="none")
    assert loaded.temperature == pytest.approx(pipe.temperature)
    again = loaded.predict(images, progress=False)
    assert np.allclose(again["male_probability"], calibrated_frame["male_probability"], atol=1e-5)
    pipe.temperature = 1.0  # the same network without its temperature: other probabilities, same labels
    try:
        uncalibrated = pipe.predict(images, progress=False)
    finally:
        pipe.temperature = loaded.temperature
    assert not np.allclose(uncalibrated["male_probability"], calibrated_frame["male_probability"])
    assert (uncalibrated["label"] == calibrated_frame["label"]).all()


def test_slice_report_on_user_groups(calibrated):
    import attr2gender

    root, pipe, _ = calibrated
    images = sorted((root / "img_align_celeba").glob("*.jpg"))[:80]
    attrs = pd.read_csv(root / "list_attr_celeba.txt", sep=r"\s+", skiprows=1)
    rows = attrs.loc[[p.name for p in images]]
    groups = pd.DataFrame(
        {"glasses": rows["Eyeglasses"].to_numpy() > 0, "hat": rows["Wearing_Hat"].to_numpy()}
    )
    table = attr2gender.slice_report(pipe, images, rows["Male"].to_numpy(), groups, n_boot=100)
    assert {"all", "glasses", "not_glasses", "hat=1", "hat=-1"} <= set(table.index)
    assert table.loc["all", "n"] == 80 and table.attrs["skipped"] == 0
    assert {"false_male_rate", "false_female_rate"} <= set(table.columns)
    with pytest.raises(ValueError, match="one label and one groups row per image"):
        attr2gender.slice_report(pipe, images, rows["Male"].to_numpy()[:5], groups)


# --- one entry point: evaluate_pipeline --------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """40 synthetic crops, their CelebA attribute rows (-1/1, as in the file) and one missing file."""
    root = make_synthetic_celeba(tmp_path_factory.mktemp("eval") / "celeba", n=60, seed=5, image_size=40)
    images = sorted((root / "img_align_celeba").glob("*.jpg"))[:40]
    attrs = pd.read_csv(root / "list_attr_celeba.txt", sep=r"\s+", skiprows=1).loc[[p.name for p in images]]
    return images, attrs


@pytest.fixture(scope="module")
def untrained():
    """Untrained tiny pipelines of both routes (an evaluation needs no good model), reading crops as they are."""
    import torch

    from attr2gender.pipeline import Attr2GenderPipeline
    from attr2gender.tabular import StageTwoClassifier
    from attr2gender.training import AttributeModel, DirectModel

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stage_two = StageTwoClassifier().fit(rng.random((40, 39)), rng.integers(0, 2, 40))
    two = Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        align="none",
    )
    direct = DirectGenderClassifier(
        DirectModel(backbone="test_efficientnet", weights="none"), 32, num_workers=0, align="none"
    )
    return {"two_stage": two, "direct": direct}


def test_evaluate_pipeline_agrees_with_a_hand_count(labelled, untrained, tmp_path):
    import attr2gender
    from attr2gender.pipeline.evaluation import evaluate_pipeline

    assert attr2gender.evaluate_pipeline is evaluate_pipeline  # on the public surface, next to slice_report

    images, attrs = labelled
    pipe = untrained["direct"]
    missing = tmp_path / "missing.jpg"  # unreadable: left out of every number, counted as skipped
    male = np.append(attrs["Male"].to_numpy(), 1)  # CelebA's -1/1
    groups = pd.DataFrame({"glasses": np.append(attrs["Eyeglasses"].to_numpy() > 0, False)})
    ev = evaluate_pipeline(
        pipe, [*images, missing], male, groups=groups, corruptions=("grayscale", "rotate_15"), n_boot=200
    )

    prob = pipe.predict(images, progress=False)["male_probability"].to_numpy()
    right = (prob >= pipe.threshold) == (attrs["Male"].to_numpy() > 0)
    assert ev.n == 40 and ev.skipped == 1
    assert ev.accuracy == pytest.approx(right.mean())
    assert ev.ci_low <= ev.accuracy <= ev.ci_high
    assert ev.ece == pytest.approx(expected_calibration_error(attrs["Male"].to_numpy() > 0, prob))
    assert 0 <= ev.auc <= 1 and 0 <= ev.brier <= 1
    # CelebA-C: the clean row reads the same crops the same way, so it is the same accuracy.
    assert list(ev.corruptions.index) == ["clean", "grayscale", "rotate_15", "mean"]
    assert (ev.corruptions["n"] == 40).all()
    assert ev.corruptions.loc["clean", "accuracy"] == pytest.approx(ev.accuracy)
    # The user's slices: slice_report's table over the scored images.
    assert ev.slices.loc["all", "n"] == 40 and ev.slices.attrs["skipped"] == 1
    assert ev.slices.loc["glasses", "n"] + ev.slices.loc["not_glasses", "n"] == 40
    # Not asked for: no groups without the true attributes, no concepts for the direct route.
    assert ev.groups is None and ev.concepts is None and ev.worst_group == ""
    summary = ev.summary()
    assert summary["accuracy"] == ev.accuracy and summary["skipped"] == 1
    assert {"corruption_grayscale", "corruption_mean", "worst_slice_accuracy"} <= set(summary)


def test_concept_quality_only_for_two_stage_given_the_attributes(labelled, untrained):
    from attr2gender.data import STAGE_ONE_ATTRIBUTES
    from attr2gender.metrics import concept_quality
    from attr2gender.pipeline.evaluation import evaluate_pipeline

    images, attrs = labelled
    male = attrs["Male"].to_numpy()
    two = untrained["two_stage"]
    ev = evaluate_pipeline(two, images, male, attributes=attrs, n_boot=100)
    outputs = two.predict(images, progress=False)[list(STAGE_ONE_ATTRIBUTES)].to_numpy()
    expected = concept_quality(
        (attrs[list(STAGE_ONE_ATTRIBUTES)] > 0).astype(int), outputs, STAGE_ONE_ATTRIBUTES
    )
    worst, concepts = expected.pop("concept_worst"), dict(ev.concepts)
    assert len(concepts["concept_worst"]) == 5 and concepts.pop("concept_worst") == pytest.approx(worst)
    assert concepts == pytest.approx(expected)
    # The true attributes also give CelebA's groups, every image in one group of each grouping.
    assert {"female_no_makeup", "male_makeup", "female_blond", "male_no_blond"} <= set(ev.groups.index)
    assert (
        ev.groups.loc[["female_no_makeup", "female_makeup", "male_no_makeup", "male_makeup"], "n"].sum() == 40
    )
    assert ev.corruptions is None and ev.slices is None  # not asked for

    assert evaluate_pipeline(two, images, male, n_boot=50).concepts is None  # no attributes
    direct = evaluate_pipeline(untrained["direct"], images, male, attributes=attrs, n_boot=50)
    assert direct.concepts is None and direct.groups is not None  # no concepts in the direct route


def test_evaluate_pipeline_refuses_bad_input_before_predicting(labelled, untrained):
    from attr2gender.pipeline.evaluation import evaluate_pipeline

    images, attrs = labelled
    pipe = untrained["direct"]
    with pytest.raises(ValueError, match="unknown corruption"):
        evaluate_pipeline(pipe, images, attrs["Male"], corruptions=("fog",))
    with pytest.raises(ValueError, match="40 images but 5 Male labels"):
        evaluate_pipeline(pipe, images, attrs["Male"].to_numpy()[:5])
    with pytest.raises(TypeError, match="groups must be a pandas DataFrame"):
        evaluate_pipeline(pipe, images, attrs["Male"], groups=[1, 2])


def test_nothing_scored_gives_nan_not_a_number_that_looks_measured():
    from attr2gender.pipeline.evaluation import evaluate_probabilities

    ev = evaluate_probabilities(
        [1, 0, 1], [np.nan] * 3, attributes=_truth(3).assign(Heavy_Makeup=0, Wearing_Lipstick=1)
    )
    assert ev.n == 0 and ev.skipped == 3
    assert all(np.isnan(v) for v in (ev.accuracy, ev.ci_low, ev.ece, ev.brier, ev.auc))
    assert (ev.groups["note"] == "empty").all() and ev.worst_group == ""


def test_accuracy_ci_and_the_corruption_table_agree_with_the_bootstrap():
    from attr2gender.metrics import accuracy_ci, bootstrap_ci
    from attr2gender.pipeline.robustness import corruption_table

    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 300)
    prob = rng.random(300)
    correct = ((prob >= 0.4) == y).astype(float)
    expected = bootstrap_ci(lambda c: c.mean(axis=-1), correct, n_boot=300, seed=2, vectorized=True)
    assert accuracy_ci(y, prob, 0.4, n_boot=300, seed=2) == expected
    assert accuracy_ci(2 * y - 1, prob, 0.4, n_boot=300, seed=2) == expected  # CelebA's -1/1
    assert np.isnan(accuracy_ci([], [])).all()
    table = corruption_table(y, {"clean": prob, "a": 1 - prob, "b": prob}, threshold=0.4, n_boot=0)
    assert list(table.index) == ["clean", "a", "b", "mean"]
    assert table.loc["clean", "accuracy"] == expected[0] and np.isnan(table.loc["clean", "ci_low"])
    assert table.loc["mean", "accuracy"] == pytest.approx((table.loc["a", "accuracy"] + expected[0]) / 2)


def test_numbers_shown_to_a_person_carry_only_the_digits_their_uncertainty_supports():
    from attr2gender.metrics import shown

    assert shown(0.12749999999999995, n=200) == "13 %"  # what a run description once printed in full
    assert shown(0.9824, 0.978, 0.9862) == "98.2 % [97.8, 98.6]"
    assert shown(0.98241, n=100_000) == "98.24 %"  # more images, one more digit
    assert shown(float("nan")) == "n/a" and shown(None) == "None"


def test_a_renamed_metric_still_reads_with_a_warning_naming_the_new_one():
    from attr2gender.metrics import MetricsDict

    metrics = MetricsDict({"concept_mean_accuracy": 0.9})
    with pytest.warns(DeprecationWarning, match="'attr_mean_accuracy' is now 'concept_mean_accuracy'"):
        assert metrics["attr_mean_accuracy"] == 0.9
    with pytest.warns(DeprecationWarning, match="'concept_mean_accuracy'"):
        assert metrics.get("attr_mean_accuracy") == 0.9
    assert metrics.get("no_such_metric", -1) == -1
    with pytest.raises(KeyError):
        metrics["no_such_metric"]  # noqa: B018
