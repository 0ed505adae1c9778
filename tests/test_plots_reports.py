"""Plots write readable PNGs for typical and edge-case inputs; report metrics agree with sklearn."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from attr2gender import metrics as R
from attr2gender import plots as P
from attr2gender.models.internals import feature_maps_of
from attr2gender.plots._style import _to_display_image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ATTRS = [f"Attr_{i}" for i in range(39)]


def assert_png(path, min_bytes: int = 3000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is suspiciously small ({len(data)} bytes)"


@pytest.fixture(scope="module")
def binary_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    prob = np.clip(0.5 * y + 0.25 + rng.normal(0, 0.2, 500), 0, 1)
    return y, prob


# --------------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------------


def test_learning_curves_typical_and_edge_cases(tmp_path):
    history = [
        {
            "epoch": e,
            "train_loss": 0.7 * 0.8**e,
            "val_loss": 0.75 * 0.82**e,
            "train_acc": 0.6 + 0.03 * e,
            "val_acc": 0.58 + 0.03 * e,
            "val_auc": 0.7 + 0.02 * e,
            "lr": 1e-3 * 0.9**e,
        }
        for e in range(8)
    ]
    fig = P.plot_learning_curves(history, tmp_path / "lc.png")
    assert isinstance(fig, Figure)
    assert_png(tmp_path / "lc.png")
    titles = {ax.get_title() for ax in fig.axes}
    assert {"Loss", "Accuracy", "ROC AUC", "Learning rate schedule"} <= titles

    P.plot_learning_curves(history[:1], tmp_path / "single.png")  # single epoch: markers
    assert_png(tmp_path / "single.png")

    # DataFrame input, missing columns, Lightning-style separate train/val rows for one epoch
    df = pd.DataFrame(
        [
            {"epoch": 0, "train_loss": 0.5},
            {"epoch": 0, "val_loss": 0.6},
            {"epoch": 1, "train_loss": 0.4},
            {"epoch": 1, "val_loss": 0.55},
        ]
    )
    fig = P.plot_learning_curves(df, tmp_path / "partial.png")
    assert [ax.get_title() for ax in fig.axes] == ["Loss"]
    assert_png(tmp_path / "partial.png")

    P.plot_learning_curves([], tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png", min_bytes=1000)


def test_confusion_matrix_counts_and_percentages(tmp_path):
    y_true = [0, 0, 0, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 1, 1, 1, 1, 0, 1]
    fig = P.plot_confusion_matrix(y_true, y_pred, path=tmp_path / "cm.png", title="Test")
    assert_png(tmp_path / "cm.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "2\n66.7%" in texts and "1\n33.3%" in texts and "4\n80.0%" in texts and "1\n20.0%" in texts

    # single-class input (a row with no samples) must not crash
    P.plot_confusion_matrix([1, 1, 1], [1, 0, 1], path=tmp_path / "cm1.png")
    assert_png(tmp_path / "cm1.png")


def test_prediction_grid_formats_and_empty(tmp_path):
    rng = np.random.default_rng(1)
    uint8_imgs = [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(5)]
    fig = P.plot_prediction_grid(
        uint8_imgs, [1, 0, 1, 0, 1], [1, 0, 0, 0, 1], [0.93, 0.2, 0.4, 0.1, 0.8], path=tmp_path / "grid.png"
    )
    assert_png(tmp_path / "grid.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "pred Male 0.93\ntrue Male"
    assert titles[1] == "pred Female 0.80\ntrue Female"  # probability of the predicted class
    colors = [ax.title.get_color() for ax in fig.axes]
    assert colors[2] == P.WRONG_COLOR and colors[0] == P.CORRECT_COLOR

    tensor_imgs = torch.randn(20, 3, 32, 32)  # ImageNet-normalised CHW floats
    fig = P.plot_prediction_grid(
        tensor_imgs,
        torch.ones(20),
        torch.zeros(20),
        None,
        path=tmp_path / "grid_t.png",
        title="Mistakes",
        max_images=9,
    )
    assert len(fig.axes) == 9
    assert_png(tmp_path / "grid_t.png")

    P.plot_prediction_grid([], [], [], [], path=tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png", min_bytes=1000)


def test_display_image_unnormalises_imagenet():
    img = torch.zeros(3, 4, 4)  # normalised zeros == the ImageNet mean colour
    img[0, 0, 0] = -3.0  # forces the "has negatives" path
    out = _to_display_image(img)
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(out[1, 1], P.IMAGENET_MEAN, atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1


def test_select_prediction_examples():
    y = np.array([0, 1] * 50)
    pred = y.copy()
    pred[:10] = 1 - pred[:10]
    correct, wrong = P.select_prediction_examples(y, pred, n=8, seed=3)
    assert len(correct) == 8 and len(wrong) == 8
    assert np.all(y[correct] == pred[correct]) and np.all(y[wrong] != pred[wrong])
    again = P.select_prediction_examples(y, pred, n=8, seed=3)
    np.testing.assert_array_equal(correct, again[0])
    np.testing.assert_array_equal(wrong, again[1])
    _, few = P.select_prediction_examples(y, pred, n=50)
    np.testing.assert_array_equal(few, np.arange(10))


def test_conv_filters_and_feature_maps(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3), torch.nn.Flatten()
    )
    model.train()
    image = torch.randn(1, 3, 20, 20)
    fm = feature_maps_of(model, image)
    assert fm.shape == (8, 20, 20)
    assert model.training  # mode restored
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    second = feature_maps_of(model, image[0], layer=model[2])
    assert second.shape == (4, 18, 18)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())

    P.plot_conv_filters(model[0].weight, tmp_path / "filters.png")
    assert_png(tmp_path / "filters.png")
    P.plot_conv_filters(model[2].weight.detach().numpy(), tmp_path / "filters_gray.png")  # in=8: gray
    assert_png(tmp_path / "filters_gray.png")
    P.plot_feature_maps(fm, image[0], tmp_path / "fm.png", max_maps=6)
    assert_png(tmp_path / "fm.png")


def test_feature_maps_of_needs_a_conv():
    with pytest.raises(ValueError):
        feature_maps_of(torch.nn.Linear(3, 2), torch.randn(1, 3, 4, 4))


def test_attribute_importance_and_accuracy(tmp_path):
    rng = np.random.default_rng(2)
    coef = pd.Series(rng.normal(size=39), index=ATTRS, name="coefficient")
    fig = P.plot_attribute_importance(coef, tmp_path / "imp.png")
    assert_png(tmp_path / "imp.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "coefficient"
    assert ax.get_legend() is not None
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == coef.abs().idxmax()  # largest |value| on top

    gain = coef.abs().rename("gain")
    P.plot_attribute_importance(gain, tmp_path / "gain.png", top=10)
    assert_png(tmp_path / "gain.png")

    acc = pd.Series(rng.uniform(0.7, 0.99, 39), index=ATTRS)
    P.plot_attribute_accuracy(acc, acc + 0.01, tmp_path / "acc.png", baseline=acc - 0.1)
    assert_png(tmp_path / "acc.png")
    P.plot_attribute_accuracy(acc, path=tmp_path / "acc_only.png")
    assert_png(tmp_path / "acc_only.png")


def test_lr_finder_and_comparison(tmp_path):
    lrs = np.logspace(-6, 0, 60)
    losses = 0.7 - 0.4 * np.tanh(np.log10(lrs) + 4) ** 2 + np.where(lrs > 0.1, 5 * lrs, 0)
    losses[-1] = np.inf
    P.plot_lr_finder(lrs, losses, suggestion=1e-4, path=tmp_path / "lr.png")
    assert_png(tmp_path / "lr.png")
    P.plot_lr_finder(lrs, losses, path=tmp_path / "lr_nosugg.png")
    assert_png(tmp_path / "lr_nosugg.png")

    metrics = {
        "two_stage": {
            "accuracy": 0.962,
            "accuracy_ci_low": 0.958,
            "accuracy_ci_high": 0.966,
            "roc_auc": 0.99,
            "n": 19962,
        },
        "direct": {"accuracy": 0.981, "accuracy_ci_low": 0.978, "accuracy_ci_high": 0.984, "roc_auc": 0.997},
    }
    fig = P.plot_comparison(metrics, tmp_path / "cmp.png")
    assert_png(tmp_path / "cmp.png")
    assert [ax.get_title() for ax in fig.axes] == ["Accuracy", "ROC AUC"]  # one panel per metric
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["two stage", "direct"]
    P.plot_comparison({"a": {"accuracy": 0.9}}, tmp_path / "cmp1.png")
    assert_png(tmp_path / "cmp1.png")


def _png_size(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        return img.size


def test_comparison_is_a_grid_that_fits_a_screen_with_panels_titled_in_words(tmp_path):
    """comparison.png was one 4,237 x 589 px strip with the metric names run together ("Worst group
    accuracyWorst group gap", "Ece"): now a grid of panels at most 1,600 px wide, each titled in words."""
    rng = np.random.default_rng(0)
    keys = [
        "accuracy",
        "balanced_accuracy",
        "roc_auc",
        "f1_male",
        "worst_group_accuracy",
        "worst_group_gap",
        "ece",
        "brier",
    ]
    metrics = {
        name: {
            key: float(v) for key, v in zip(keys, [*rng.uniform(0.9, 0.99, 5), *rng.uniform(0.005, 0.06, 3)])
        }
        | {"accuracy_ci_low": 0.9, "accuracy_ci_high": 0.995}
        for name in ("two_stage", "direct")
    }
    fig = P.plot_comparison(metrics, tmp_path / "comparison.png")
    assert_png(tmp_path / "comparison.png")
    width, height = _png_size(tmp_path / "comparison.png")
    assert width <= 1600 and 0.5 <= width / height <= 2, (width, height)
    assert [ax.get_title() for ax in fig.axes] == [
        "Accuracy",
        "Balanced accuracy",
        "ROC AUC",
        "F1 score (Male)",
        "Worst-group accuracy",
        "Worst-group gap",
        "Calibration error (ECE)",
        "Brier score",
    ]
    # Many metrics (every slice of a real comparison) add rows, never width.
    many = {name: {f"slice_accuracy_s{i}": 0.9 + i / 1000 for i in range(28)} for name in ("a", "b")}
    P.plot_comparison(many, tmp_path / "many.png")
    assert _png_size(tmp_path / "many.png")[0] <= 1600


def test_metric_titles_in_words_with_a_readable_fallback():
    from attr2gender.plots._style import _metric_title

    assert _metric_title("ece") == "Calibration error (ECE)"
    assert _metric_title("worst_slice_gap") == "Worst-slice gap"
    assert _metric_title("slice_accuracy_not_Bald") == "Accuracy (not Bald)"
    assert _metric_title("top5_auc") == "Top5 AUC"  # unknown: words, acronyms in capitals


# --------------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------------


def test_classification_report_matches_sklearn(binary_data):
    y, prob = binary_data
    pred = (prob >= 0.5).astype(int)
    text = R.classification_report_text(y, pred)
    for word in ("Female", "Male", "accuracy", "macro avg", "weighted avg", "precision", "support"):
        assert word in text
    expected = classification_report(y, pred, target_names=["Female", "Male"], digits=2)
    assert text == expected
    male_line = next(line for line in text.splitlines() if line.strip().startswith("Male"))
    nums = [float(x) for x in re.findall(r"\d+\.\d+|\d+", male_line)]
    assert nums[0] == pytest.approx(precision_score(y, pred), abs=0.005)
    assert nums[1] == pytest.approx(recall_score(y, pred), abs=0.005)
    assert nums[3] == int(y.sum())
    # single-class data still lists both classes
    assert "Female" in R.classification_report_text([1, 1], [1, 1])


def test_binary_metrics_match_sklearn(binary_data):
    y, prob = binary_data
    pred = (prob >= 0.5).astype(int)
    m = R.binary_metrics(y, prob)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["precision_female"] == pytest.approx(precision_score(y, pred, pos_label=0))
    assert m["recall_female"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["f1_female"] == pytest.approx(f1_score(y, pred, pos_label=0))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, prob))
    assert m["tn"] + m["fp"] + m["fn"] + m["tp"] == m["n"] == 500


def test_binary_metrics_by_hand():
    # y:    1    1    0    0    1
    # p:   .9   .4   .6   .1   .7   -> pred 1 0 1 0 1 : tp=2 fn=1 fp=1 tn=1
    m = R.binary_metrics([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.7])
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"]) == (2, 1, 1, 1, 5)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["precision_female"] == pytest.approx(1 / 2)
    assert m["recall_female"] == pytest.approx(1 / 2)
    assert m["roc_auc"] == pytest.approx(5 / 6)  # 5 of 6 (pos, neg) pairs ranked right
    m_t = R.binary_metrics([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.7], threshold=0.65)
    assert m_t["fp"] == 0 and m_t["tp"] == 2


def test_binary_metrics_single_class_no_error(recwarn):
    m = R.binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert np.isnan(m["roc_auc"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["precision_female"] == 0.0  # 0/0 -> 0, no warning
    assert not [w for w in recwarn if "sklearn" in str(w.filename)]
    assert R.binary_metrics([-1, 1], [0.2, 0.8])["accuracy"] == 1.0  # CelebA's {-1, 1}


def test_per_attribute_metrics():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, (300, 4))
    y[:, 3] = 0  # one-class attribute
    prob = np.clip(y * 0.6 + rng.uniform(0, 0.5, y.shape), 0, 1)
    df = R.per_attribute_metrics(y, prob, ["a", "b", "c", "d"])
    assert list(df.index) == ["a", "b", "c", "d"]
    assert {"accuracy", "roc_auc", "positive_rate"} <= set(df.columns)
    assert df.loc["a", "roc_auc"] == pytest.approx(roc_auc_score(y[:, 0], prob[:, 0]))
    assert df.loc["b", "accuracy"] == pytest.approx(accuracy_score(y[:, 1], prob[:, 1] >= 0.5))
    assert np.isnan(df.loc["d", "roc_auc"])
    assert df.loc["d", "positive_rate"] == 0.0
    mean_acc = ((prob >= 0.5) == y).mean(axis=0).mean()
    assert R.concept_mean_accuracy(df) == pytest.approx(mean_acc)
    assert R.concept_mean_accuracy(y, prob) == pytest.approx(mean_acc)
    with pytest.warns(DeprecationWarning, match="'concept_mean_accuracy'"):
        assert R.mean_attribute_accuracy(df) == pytest.approx(mean_acc)


def _acc(y, p):
    return float(np.mean(y == p))


def test_bootstrap_ci_properties():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 2000)
    p = np.where(rng.random(2000) < 0.85, y, 1 - y)
    point, lo, hi = R.bootstrap_ci(_acc, y, p, n_boot=400, seed=1)
    assert lo <= point <= hi
    assert point == pytest.approx(_acc(y, p))
    assert (point, lo, hi) == R.bootstrap_ci(_acc, y, p, n_boot=400, seed=1)  # deterministic
    # vectorised path gives the same resamples, hence the same interval
    vec = R.bootstrap_ci(lambda a, b: (a == b).mean(axis=-1), y, p, n_boot=400, seed=1, vectorized=True)
    assert vec == pytest.approx((point, lo, hi))
    # more data -> narrower
    _, lo_s, hi_s = R.bootstrap_ci(_acc, y[:200], p[:200], n_boot=400, seed=1)
    assert (hi - lo) < (hi_s - lo_s)


def test_paired_accuracy_difference_ci():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 3000)
    a = np.where(rng.random(3000) < 0.95, y, 1 - y)
    b = np.where(rng.random(3000) < 0.90, y, 1 - y)
    same = R.paired_accuracy_difference_ci(y, a, a.copy())
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    res = R.paired_accuracy_difference_ci(y, a, b, n_boot=1000, seed=0)
    assert res["difference"] == pytest.approx(np.mean(a == y) - np.mean(b == y))
    assert res["low"] <= res["difference"] <= res["high"]
    assert res["low"] > 0  # a is clearly better
    assert res == R.paired_accuracy_difference_ci(y, a, b, n_boot=1000, seed=0)


def test_markdown_table():
    text = R.markdown_table(
        [
            {"approach": "two|stage", "accuracy": 0.96123, "n": 100},
            {"approach": "direct", "accuracy": float("nan")},
        ]
    )
    lines = text.strip().splitlines()
    assert lines[0] == "| approach | accuracy | n |"
    assert lines[2] == "| two\\|stage | 0.9612 | 100 |"
    assert lines[3] == "| direct |  |  |"
    assert R.markdown_table([{"a": 1}], columns=["a", "b"]).splitlines()[2] == "| 1 |  |"
