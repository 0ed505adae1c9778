"""The concept-bottleneck toolkit: joint training exported as a two-stage bundle, hard bottlenecks,
interventions, the intervention curve and the leakage report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from attr2gender.config import ConfigError, RunConfig, load_preset
from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.pipeline import Attr2GenderPipeline, load_pipeline
from attr2gender.pipeline.concepts import curve_from_probabilities, intervention_curve, leakage_report
from attr2gender.tabular import StageTwoClassifier, logistic_from_coefficients
from attr2gender.training import AttributeModel, train_two_stage
from conftest import STAGE_ONE_RUN, tiny_config

ATTRS = list(STAGE_ONE_ATTRIBUTES)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("cbm") / "celeba", n=300, seed=2, image_size=40)


def _config(root, out, **kw) -> RunConfig:
    return tiny_config(root, out, **(STAGE_ONE_RUN | dict(run_name="", cache_dir=str(out / "cache")) | kw))


@pytest.fixture(scope="module")
def joint(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("joint")
    pipe, report = train_two_stage(_config(synth_root, out, mode="joint", concept_weight=0.5))
    pipe.align = "none"  # the synthetic images are crops like the training images (alignment: test_faces.py)
    return pipe, report


@pytest.fixture(scope="module")
def images(synth_root):
    return sorted((synth_root / "img_align_celeba").glob("*.jpg"))[:8]


# --------------------------------------------------------------------------------------------------
# joint training
# --------------------------------------------------------------------------------------------------


def test_joint_model_exports_its_head_as_a_logistic_stage_two(joint, images, tmp_path):
    pipe, report = joint
    model = report.train_result.model
    head_w = model.male_head.weight.detach().numpy()[0]
    np.testing.assert_allclose(pipe.stage_two.feature_importance().to_numpy(), head_w, rtol=1e-6)
    frame = pipe.predict(images)
    attrs = frame[ATTRS].to_numpy()
    np.testing.assert_allclose(frame["male_probability"], model.male_probability(attrs), rtol=1e-6)
    why = pipe.explain(images)
    logit = np.log(frame["male_probability"] / (1 - frame["male_probability"]))
    np.testing.assert_allclose(
        why.contributions.sum(axis=1).to_numpy(), logit.to_numpy(), rtol=1e-5, atol=1e-6
    )
    loaded = load_pipeline(pipe.save(tmp_path / "b", onnx=False), align="none")
    pd.testing.assert_frame_equal(loaded.predict(images), frame)
    assert pipe.config["mode"] == "joint" and "val_acc" in report.train_result.history.columns


def test_the_joint_loss_trains_both_heads(synth_root, tmp_path):
    from attr2gender.data import build_transforms, collate_skipping_corrupt, load_celeba
    from attr2gender.data.dataset import CelebADataset
    from attr2gender.training.modules import JointModel

    torch.manual_seed(0)
    celeba = load_celeba(synth_root)
    ds = CelebADataset(celeba, celeba.present[:64], build_transforms(32))
    batch = collate_skipping_corrupt([ds[i] for i in range(64)])
    model = JointModel(backbone="test_efficientnet", weights="none", lr=3e-3, concept_weight=1.0)
    optimizer = model.configure_optimizers()
    losses = []
    for _ in range(25):
        loss = model.batch_loss(model(batch["image"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert model.male_head.weight.grad is not None and model.male_head.weight.grad.abs().sum() > 0


def test_hard_bottleneck_reads_only_the_thresholded_concepts(synth_root, tmp_path, images):
    pipe, _ = train_two_stage(_config(synth_root, tmp_path, bottleneck="hard", max_steps=2))
    assert pipe.stage_two.input_kind == "binary"
    frame = pipe.predict(images, align="none")
    attrs = frame[ATTRS].to_numpy()
    nudged = np.clip(np.where(attrs >= 0.5, attrs + 0.01, attrs - 0.01), 0, 1)  # no value crosses 0.5
    np.testing.assert_allclose(pipe.stage_two_probability(nudged), frame["male_probability"])


def test_bottleneck_and_mode_values_are_checked():
    with pytest.raises(ConfigError, match="needs task=attributes"):
        RunConfig(mode="joint", task="direct").validate()
    with pytest.raises(ConfigError, match="the trap"):
        RunConfig(stage_two_fit_on="labels", bottleneck="soft").validate()
    assert RunConfig(stage_two_fit_on="labels").validate().resolved_bottleneck() == "hard"
    assert RunConfig().validate().resolved_bottleneck() == "soft"
    sweep = load_preset("concept_sweep")
    assert [n for n, _ in sweep] == [
        "sequential",
        "independent",
        "joint_0.01",
        "joint_0.1",
        "joint_1",
        "joint_10",
    ]
    assert [c.concept_weight for n, c in sweep if n.startswith("joint")] == [0.01, 0.1, 1.0, 10.0]


# --------------------------------------------------------------------------------------------------
# interventions
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.random((400, 39))
    y = (X[:, ATTRS.index("Goatee")] + X[:, ATTRS.index("Wearing_Lipstick")] < 1.0).astype(int)
    stage_two = StageTwoClassifier().fit(pd.DataFrame(X, columns=ATTRS), y)
    return Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        align="none",
    )


def test_interventions_change_exactly_the_named_columns(pipeline, images):
    plain = pipeline.predict(images)
    edited = pipeline.predict(images, intervene={"Eyeglasses": 1, "Wearing_Lipstick": 0.0})
    changed = [c for c in ATTRS if not np.allclose(edited[c], plain[c])]
    assert set(changed) <= {"Eyeglasses", "Wearing_Lipstick"} and (edited["Eyeglasses"] == 1).all()
    assert (edited["Wearing_Lipstick"] == 0).all()
    np.testing.assert_allclose(edited["male_probability"], plain["male_probability"])  # the original, kept
    expected = pipeline.stage_two_probability(edited[ATTRS].to_numpy())
    np.testing.assert_allclose(edited["male_probability_intervened"], expected)
    assert {"male_probability_intervened", "label_intervened"} <= set(edited.columns)
    per_row = pd.DataFrame({"Smiling": [1.0] + [np.nan] * (len(images) - 1)})
    one = pipeline.predict(images, intervene=per_row)
    assert one["Smiling"][0] == 1 and np.allclose(one["Smiling"][1:], plain["Smiling"][1:])


def test_bad_interventions_name_the_valid_attributes(pipeline, images):
    with pytest.raises(ValueError, match="Eyeglasses"):
        pipeline.predict(images, intervene={"Glasses": 1})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pipeline.predict(images, intervene={"Eyeglasses": 2})
    with pytest.raises(ValueError, match="one row per image"):
        pipeline.predict(images, intervene=pd.DataFrame({"Eyeglasses": [1.0]}))


def _noisy_world(n=600, seed=1):
    """True attributes that determine Male, and stage-one outputs that get some of them wrong."""
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame(rng.integers(0, 2, size=(n, 39)), columns=ATTRS)
    truth["Male"] = ((truth["Goatee"] + (1 - truth["Wearing_Lipstick"])) >= 1).astype(int)
    noise = rng.random((n, 39)) < 0.25  # a quarter of the concepts wrong
    probs = np.where(noise, 1 - truth[ATTRS].to_numpy(), truth[ATTRS].to_numpy()) * 0.8 + 0.1
    probs = np.clip(probs + rng.normal(0, 0.05, probs.shape), 0, 1)
    return truth, probs


def test_intervening_with_the_truth_raises_accuracy_to_the_ceiling(images):
    truth, probs = _noisy_world()
    stage_two = StageTwoClassifier(input_kind="binary").fit(truth[ATTRS].astype(float), truth["Male"])
    torch.manual_seed(0)
    pipe = Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"), stage_two, 32, align="none"
    )
    curve = curve_from_probabilities(pipe, probs, truth)
    assert set(curve["policy"]) == {"random", "uncertainty", "contribution"} and curve["k"].max() == 39
    start = ((pipe.stage_two_probability(probs) >= 0.5) == truth["Male"]).mean()
    ceiling = (
        (pipe.stage_two_probability(truth[ATTRS].to_numpy().astype(float)) >= 0.5) == truth["Male"]
    ).mean()
    for _, part in curve.groupby("policy"):
        acc = part.set_index("k")["accuracy"]
        assert acc[0] == pytest.approx(start) and acc[39] == pytest.approx(
            ceiling
        )  # hard: reaches the ceiling
        assert acc[39] > acc[0] + 0.1
    at5 = curve[curve["k"] == 5].set_index("policy")["accuracy"]
    assert at5["contribution"] > at5["random"]  # a good policy helps sooner
    # On images: the same truth-for-everything intervention gives the ceiling.
    frame = pipe.predict(images, intervene=truth[ATTRS].iloc[: len(images)].astype(float))
    assert frame["male_probability_intervened"].notna().all()


def test_intervention_curve_on_images_checks_its_inputs(pipeline, images):
    truth = pd.DataFrame(0, index=range(len(images)), columns=["Male", *ATTRS])
    curve = intervention_curve(pipeline, images, truth, policy="uncertainty", max_k=3)
    assert list(curve["k"]) == [0, 1, 2, 3] and (curve["n"] == len(images)).all()
    with pytest.raises(ValueError, match="Male"):
        intervention_curve(pipeline, images, truth.drop(columns="Male"))


# --------------------------------------------------------------------------------------------------
# leakage
# --------------------------------------------------------------------------------------------------


def test_leakage_separates_soft_information_from_the_concepts(pipeline):
    rng = np.random.default_rng(3)

    def world(n):
        truth = pd.DataFrame(rng.integers(0, 2, size=(n, 39)), columns=ATTRS)
        truth["Male"] = rng.integers(0, 2, n)
        truth.loc[truth.index[: n // 2], "Goatee"] = truth["Male"][: n // 2]  # the concepts say a little
        probs = truth[ATTRS].to_numpy() * 0.7 + 0.15
        probs[:, ATTRS.index("Blurry")] = 0.1 + 0.3 * truth["Male"]  # sub-threshold: carries Male, never 1
        return truth, probs

    val_truth, val_probs = world(800)
    test_truth, test_probs = world(800)
    stage_two = StageTwoClassifier().fit(pd.DataFrame(val_probs, columns=ATTRS), val_truth["Male"])
    pipe = pipeline.with_stage_two(stage_two)
    leak = leakage_report(pipe, val_probs, val_truth, test_probs, test_truth, n_boot=200)
    m = leak.metrics
    assert m["leakage_soft_accuracy"] > m["leakage_hard_accuracy"] + 0.2  # Blurry leaks Male below 0.5
    assert m["leakage_soft_minus_hard"] == pytest.approx(
        m["leakage_soft_accuracy"] - m["leakage_hard_accuracy"]
    )
    assert leak.permutation.index[0] == "Blurry"
    assert "soft predictions" in leak.markdown() and list(leak.table.index) == [
        "true attributes",
        "hard predictions",
        "soft predictions",
    ]


def test_a_stage_two_from_coefficients_predicts_like_its_formula():
    coef = np.linspace(-1, 1, 39)
    est = logistic_from_coefficients(coef, 0.3, ATTRS)
    X = np.random.default_rng(0).random((5, 39))
    np.testing.assert_allclose(
        est.predict_proba(pd.DataFrame(X, columns=ATTRS))[:, 1], 1 / (1 + np.exp(-(X @ coef + 0.3)))
    )
    with pytest.raises(ValueError, match="39 finite"):
        logistic_from_coefficients(coef[:3], 0.0, ATTRS)
