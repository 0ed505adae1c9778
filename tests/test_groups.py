"""CelebA's shortcut: worst-group metrics, CelebA-C corruptions, concept editing, worst-group stage two,
and group-robust training (balanced batches, reweighted losses, GroupDRO, strong augmentation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attr2gender.config import ConfigError, RunConfig, parse_overrides
from attr2gender.data.attributes import ATTRIBUTE_NAMES, STAGE_ONE_ATTRIBUTES
from attr2gender.data.corruptions import CORRUPTIONS, corrupt
from attr2gender.data.groups import group_ids, group_masks, group_names, inverse_frequency_weights
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.data.transforms import build_transforms
from attr2gender.metrics import group_accuracy_table, group_metrics
from attr2gender.pipeline import load_pipeline
from attr2gender.tabular import StageTwoClassifier, load_stage_two, save_stage_two
from attr2gender.tabular.robust import fit_group_dro, fit_worst_group, group_dro_weights, worst_group_accuracy
from attr2gender.training import train, train_two_stage
from attr2gender.training.datamodule import CelebADataModule
from attr2gender.training.robust import GroupDRO, GroupReweightedLoss
from conftest import STAGE_ONE_RUN, tiny_config

# --------------------------------------------------------------------------------------------------
# the worst-group metric
# --------------------------------------------------------------------------------------------------


def test_group_table_reports_too_few_and_empty_groups_without_a_number():
    y = np.array([1] * 40 + [0] * 40)
    prob = np.where(np.arange(80) % 10 == 0, 1 - y, y).astype(float)  # 90 % right everywhere
    masks = {"big": np.arange(80) < 60, "small": np.arange(80) >= 60, "empty": np.zeros(80, bool)}
    table = group_accuracy_table(y, prob, masks, n_boot=300)
    assert table.loc["big", "enough"] and table.loc["big", "accuracy"] == pytest.approx(0.9)
    assert table.loc["big", "ci_low"] <= 0.9 <= table.loc["big", "ci_high"] < 1.0
    assert not table.loc["small", "enough"] and np.isnan(table.loc["small", "accuracy"])
    assert table.loc["small", "note"] == "too few (20 < 30)" and table.loc["empty", "note"] == "empty"
    flat = group_metrics(table, overall_accuracy=0.9)
    assert flat["worst_group_accuracy"] == pytest.approx(0.9) and flat["worst_group_gap"] == pytest.approx(
        0.0
    )
    assert "group_accuracy_small" not in flat and flat["group_n_small"] == 20 and flat["group_n_empty"] == 0


def test_worst_group_is_the_lowest_eligible_group_and_nan_when_none_is():
    y = np.ones(100, dtype=int)
    prob = np.ones(100)
    prob[:20] = 0  # 20 of the first 50 wrong: 60 % there, 100 % in the rest
    masks = {"a": np.arange(100) < 50, "b": np.arange(100) >= 50}
    flat = group_metrics(group_accuracy_table(y, prob, masks, n_boot=200), overall_accuracy=0.8)
    assert flat["worst_group_accuracy"] == pytest.approx(0.6) and flat["worst_group_gap"] == pytest.approx(
        0.2
    )
    tiny = group_metrics(group_accuracy_table(y[:10], prob[:10], {"a": np.ones(10, bool)}), 0.0)
    assert np.isnan(tiny["worst_group_accuracy"])


def test_group_ids_from_frames_and_arrays():
    frame = pd.DataFrame(0, index=range(4), columns=list(ATTRIBUTE_NAMES))
    frame.loc[1, "Wearing_Lipstick"] = 1  # female, makeup
    frame.loc[2, "Male"] = 1  # male, none
    frame.loc[3, ["Male", "Heavy_Makeup"]] = 1  # male, makeup
    assert group_ids(frame).tolist() == [0, 1, 2, 3]
    assert group_names("makeup") == ("female_no_makeup", "female_makeup", "male_no_makeup", "male_makeup")
    assert group_ids(frame.to_numpy()).tolist() == [0, 1, 2, 3]
    stage_one = frame[list(STAGE_ONE_ATTRIBUTES)].to_numpy()
    assert group_ids(stage_one, male=frame["Male"]).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="male="):
        group_ids(stage_one)
    masks = group_masks(frame)
    assert (
        set(masks) == {*group_names("makeup"), *group_names("blond")} and masks["female_no_blond"].sum() == 2
    )


def test_inverse_frequency_weights_give_every_group_the_same_mass():
    ids = np.array([0] * 90 + [1] * 9 + [3])
    w = inverse_frequency_weights(ids)
    assert w.mean() == pytest.approx(1.0)
    mass = [w[ids == g].sum() for g in (0, 1, 3)]
    assert mass == pytest.approx([mass[0]] * 3)


# --------------------------------------------------------------------------------------------------
# CelebA-C
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_is_deterministic_for_a_seed(name):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(60, 50, 3), dtype=np.uint8))
    a, b = corrupt(image, name, seed=3, index=7), corrupt(image, name, seed=3, index=7)
    assert a.size == image.size and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(image))


def test_random_corruptions_vary_with_the_seed_and_unknown_names_fail():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(40, 40, 3), dtype=np.uint8))
    outs = {np.asarray(corrupt(image, "brightness", seed=s)).mean().round(3) for s in range(12)}
    assert len(outs) == 2  # brighter or darker, chosen by the seed
    with pytest.raises(ValueError, match="grayscale"):
        corrupt(image, "fog")


# --------------------------------------------------------------------------------------------------
# concept editing and the worst-group stage two (tabular, synthetic shortcut)
# --------------------------------------------------------------------------------------------------


def shortcut_data(n: int, correlated: bool, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A 'makeup' column that matches gender in training and is independent of it in test, next to a
    weaker real cue and noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    real = np.clip(np.where(rng.random(n) < 0.8, y, 1 - y) * 0.6 + rng.random(n) * 0.4, 0, 1)
    makeup = np.where(rng.random(n) < 0.97, 1 - y, y) if correlated else rng.integers(0, 2, n)
    X = pd.DataFrame(
        {"real": real, "makeup": np.clip(makeup * 0.8 + rng.random(n) * 0.2, 0, 1), "noise": rng.random(n)}
    )
    return X, y


@pytest.mark.parametrize("model", ["logistic", "lightgbm"])
def test_concept_editing_raises_accuracy_where_the_shortcut_breaks(model):
    X, y = shortcut_data(2000, correlated=True, seed=0)
    X_test, y_test = shortcut_data(2000, correlated=False, seed=1)
    plain = StageTwoClassifier(model=model, n_estimators=50).fit(X, y)
    edited = StageTwoClassifier(model=model, n_estimators=50, exclude=("makeup",)).fit(X, y)
    assert (edited.predict(X_test) == y_test).mean() > (plain.predict(X_test) == y_test).mean() + 0.1
    assert edited.feature_importance()["makeup"] == 0
    contributions = edited.contributions(X_test)
    assert (contributions[:, 1] == 0).all()
    np.testing.assert_allclose(contributions.sum(axis=1), edited.decision_function(X_test))


@pytest.mark.parametrize("model", ["logistic", "lightgbm"])
def test_excluded_attributes_survive_save_and_load(model, tmp_path):
    X, y = shortcut_data(500, correlated=True, seed=2)
    est = StageTwoClassifier(model=model, n_estimators=30, exclude=("makeup",)).fit(X, y)
    loaded = load_stage_two(save_stage_two(est, tmp_path))
    assert tuple(loaded.exclude) == ("makeup",)
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))


def test_exclude_names_the_valid_features():
    X, y = shortcut_data(100, correlated=True, seed=3)
    with pytest.raises(ValueError, match="'real', 'makeup', 'noise'"):
        StageTwoClassifier(exclude=("lipstick",)).fit(X, y)
    with pytest.raises(ValueError, match="every feature"):
        StageTwoClassifier(exclude=("real", "makeup", "noise")).fit(X, y)


def minority_data(seed: int):
    """Group 1 (10 % of rows) follows the opposite rule on one feature; ERM sacrifices it."""
    rng = np.random.default_rng(seed)
    n = 3000
    groups = (rng.random(n) < 0.1).astype(int)
    y = rng.integers(0, 2, n)
    a = np.where(groups == 0, y, 1 - y) * 0.7 + rng.random(n) * 0.3
    b = np.where(rng.random(n) < 0.75, y, 1 - y) * 0.5 + rng.random(n) * 0.5
    return pd.DataFrame({"a": a, "b": b, "g": groups * 0.9 + rng.random(n) * 0.1}), y, groups


def test_worst_group_fit_beats_erm_on_the_worst_group():
    X, y, groups = minority_data(0)
    X_test, y_test, g_test = minority_data(1)
    erm = StageTwoClassifier().fit(X, y)
    chosen = fit_worst_group(X, y, groups, folds=3)
    assert (
        set(chosen.cv_worst_group_accuracy) == {"reweighted", "group_dro"}
        and chosen.method in chosen.cv_accuracy
    )
    wga = worst_group_accuracy(y_test, chosen.estimator.predict(X_test), g_test)
    assert wga > worst_group_accuracy(y_test, erm.predict(X_test), g_test) + 0.05


def test_group_dro_moves_weight_to_the_worst_group():
    q = group_dro_weights(np.full(4, 0.25), [0.1, 2.0, 0.3, 0.2], step=1.0)
    assert q.argmax() == 1 and q.sum() == pytest.approx(1.0) and q[1] > 0.25
    X, y, groups = minority_data(2)
    dro = fit_group_dro(X, y, groups, step=2.0, rounds=10)
    erm = StageTwoClassifier().fit(X, y)
    assert (dro.predict(X)[groups == 1] == y[groups == 1]).mean() > (
        erm.predict(X)[groups == 1] == y[groups == 1]
    ).mean()


# --------------------------------------------------------------------------------------------------
# group-robust image training
# --------------------------------------------------------------------------------------------------


def test_group_dro_module_moves_weight_toward_the_worst_group():
    dro = GroupDRO(n_groups=4, step_size=0.5).train()
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    losses = torch.tensor([0.1, 0.1, 3.0, 3.0, 0.2, 0.2, 0.1, 0.1], requires_grad=True)
    for _ in range(5):
        loss = dro(losses, groups)
    assert dro.q.argmax().item() == 1 and dro.q.sum().item() == pytest.approx(1.0)
    loss.backward()
    assert losses.grad[2] > losses.grad[0]  # the worst group's samples get the largest gradient
    dro.eval()
    before = dro.q.clone()
    dro(losses, groups)
    assert torch.equal(before, dro.q)  # validation does not move the weights


def test_reweighted_loss_weights_by_inverse_group_frequency():
    loss = GroupReweightedLoss([90, 10, 0, 0])
    per_sample = torch.ones(4)
    assert loss.weights[1] == pytest.approx(9 * loss.weights[0]) and loss.weights[2] == 0
    assert loss(per_sample, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(
        (2 * 50 / 90 + 2 * 50 / 10) / 4
    )


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("groups") / "celeba", n=400, seed=3, image_size=40)


def _config(root, out, **kw) -> RunConfig:
    return tiny_config(root, out, **(STAGE_ONE_RUN | dict(run_name="g") | kw))


def _group_shares(dm, draws: int = 12) -> np.ndarray:
    counts = np.zeros(4)
    for _ in range(draws):
        for batch in dm.train_dataloader():
            counts += np.bincount(batch["group"].numpy(), minlength=4)
    return counts / counts.sum()


def test_balanced_groups_sampling_equalises_batch_composition(synth_root, tmp_path):
    natural = CelebADataModule(_config(synth_root, tmp_path))
    natural.setup("fit")
    balanced = CelebADataModule(_config(synth_root, tmp_path, balance="groups"))
    balanced.setup("fit")
    counts = np.bincount(natural.datasets["train"].groups.numpy(), minlength=4)
    assert counts.min() < 0.15 * counts.sum()  # the synthetic data reproduces CelebA's rare groups
    present = counts > 0
    shares = _group_shares(balanced)
    n = 12 * len(balanced.datasets["train"])
    expected = 1 / present.sum()
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n)  # binomial: 4 standard errors
    assert np.all(np.abs(shares[present] - expected) < tolerance), shares
    assert abs(_group_shares(natural, 2)[counts.argmin()] - counts.min() / counts.sum()) < 0.02


@pytest.mark.parametrize(
    "keys",
    [
        {"balance": "groups", "augment": "strong"},
        {"robust": "group_dro"},
        {"loss_reweighting": "groups", "task": "attributes"},
    ],
)
def test_group_robust_training_checkpoints_on_worst_group_accuracy(synth_root, tmp_path, keys):
    config = _config(synth_root, tmp_path, **({"task": "direct", "keep_checkpoints": "best"} | keys))
    assert config.resolved_checkpoint_metric() == "val_worst_group_acc"
    result = train(config)
    assert "val_worst_group_acc" in result.history.columns
    assert 0 <= result.history["val_worst_group_acc"].iloc[-1] <= 1
    assert (tmp_path / "g" / "checkpoints" / "best.ckpt").is_file()
    state = torch.load(tmp_path / "g" / "checkpoints" / "best.ckpt", weights_only=True)
    assert any("'monitor': 'val_worst_group_acc'" in str(k) for k in state["callbacks"])


def test_strong_augmentation_is_seeded_and_stronger():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(80, 70, 3), dtype=np.uint8))
    strong = build_transforms(32, train=True, augment="strong")
    torch.manual_seed(5)
    a = torch.stack([strong(image) for _ in range(8)])
    torch.manual_seed(5)
    b = torch.stack([strong(image) for _ in range(8)])
    assert torch.equal(a, b)
    standard = build_transforms(32, train=True)
    torch.manual_seed(5)
    c = torch.stack([standard(image) for _ in range(8)])
    assert a.std(dim=0).mean() > c.std(dim=0).mean()  # more varied views of the same image
    with pytest.raises(ValueError, match="strong"):
        build_transforms(32, train=True, augment="heavy")


def test_config_keys_for_shortcut_work():
    assert RunConfig(balance=True).validate().balance == "male"  # the source study's key keeps working
    assert parse_overrides(["stage_two_exclude=Heavy_Makeup,Wearing_Lipstick"]) == {
        "stage_two_exclude": ["Heavy_Makeup", "Wearing_Lipstick"]
    }
    with pytest.raises(ConfigError, match="did you mean 'Heavy_Makeup'"):
        RunConfig(stage_two_exclude=["Heavy_Makeupp"]).validate()
    with pytest.raises(ConfigError, match="group_dro"):
        RunConfig(robust="dro").validate()
    assert RunConfig().validate().resolved_checkpoint_metric() == "val_loss"


# --------------------------------------------------------------------------------------------------
# the pipeline: without_attributes, importance before and after, the preset
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    return train_two_stage(_config(synth_root, out, cache_dir=str(out / "cache"), max_steps=4))


def test_without_attributes_refits_stage_two_only(fitted, monkeypatch, tmp_path):
    fitted, report = fitted
    assert {"worst_group_accuracy", "worst_group_gap", "group_n_female_no_makeup"} <= set(fitted.metrics)
    calls = []
    monkeypatch.setattr(type(fitted), "_forward", lambda self, x: calls.append(1) or np.zeros((len(x), 39)))
    edited = fitted.without_attributes(["Heavy_Makeup", "Wearing_Lipstick"], data=report.stage_two_data)
    assert not calls  # stage one is not run again: the kept rows are reused
    coef = edited.global_importance()
    assert coef["Heavy_Makeup"] == 0 and coef["Wearing_Lipstick"] == 0 and (coef != 0).sum() == 37
    change = edited.importance_change()
    assert list(change.columns) == ["before", "after"]
    assert change.loc["Wearing_Lipstick", "after"] == 0 and change["before"].notna().all()
    assert edited.attribute_model is fitted.attribute_model and edited.config["stage_two_exclude"]
    with pytest.raises(ValueError, match="Heavy_Makeup"):
        fitted.without_attributes(["Heavy_Makup"], data=report.stage_two_data)
    monkeypatch.undo()
    loaded = load_pipeline(edited.save(tmp_path / "b", onnx=False))
    assert tuple(loaded.stage_two.exclude) == ("Heavy_Makeup", "Wearing_Lipstick")
    with pytest.raises(ValueError, match="data=report.stage_two_data"):
        loaded.without_attributes(["Smiling"])
