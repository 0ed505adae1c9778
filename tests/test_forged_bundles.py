"""Re-hashed bundles: a file edited and every hash recomputed, as an attacker who knows the format would (issue
33). The README's guarantee: such a bundle can change a number within the bounds training produces; it
cannot crash the process, hang, read outside memory, swap the answers or hide the concept warnings. Each
row below failed on the main branch before this table: LightGBM segfaulted, looped forever or read past the
row; the other edits loaded and answered, or failed late with a traceback."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attr2gender.errors import BundleError
from attr2gender.pipeline import Attr2GenderPipeline, DirectGenderClassifier, load_pipeline
from attr2gender.pipeline.bundle import _canonical
from attr2gender.tabular import StageTwoClassifier
from attr2gender.training import AttributeModel, DirectModel


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A tiny LightGBM two-stage bundle, a logistic one and a direct one (untrained CNNs: only the files
    matter here)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 39)), rng.integers(0, 2, 200)
    out = tmp_path_factory.mktemp("bundles")
    model = AttributeModel(backbone="test_efficientnet", weights="none")
    lgb = StageTwoClassifier(model="lightgbm", n_estimators=5, num_leaves=4).fit(X, y)
    logistic = StageTwoClassifier().fit(X, y)
    direct = DirectModel(backbone="test_efficientnet", weights="none")
    return {
        "lightgbm": Attr2GenderPipeline(model, lgb, 32, num_workers=0, align="none").save(
            out / "l", onnx=False
        ),
        "logistic": Attr2GenderPipeline(model, logistic, 32, num_workers=0, align="none").save(
            out / "g", onnx=False
        ),
        "direct": DirectGenderClassifier(direct, 32, num_workers=0, align="none").save(out / "d", onnx=False),
    }


def _tree_sizes_fixed(text: str) -> str:
    """The LightGBM header's tree_sizes made to match the trees again, as a careful forger would."""
    body_start, end = text.index("\nTree=0\n") + 1, text.index("end of trees")
    blocks = re.split(r"(?=^Tree=\d+\n)", text[body_start:end], flags=re.M)
    sizes = " ".join(str(len(b)) for b in blocks if b)
    return re.sub(r"tree_sizes=[^\n]*", f"tree_sizes={sizes}", text, count=1)


def rehash(bundle: Path, fix_tree_sizes: bool = True) -> Path:
    """Recompute every hash a bundle holds (and LightGBM's tree_sizes): the LightGBM text's in
    stage_two.json, each file's in the manifest, and the manifest's own."""
    stage_two = bundle / "stage_two.json"
    text_file = bundle / "stage_two_lightgbm.txt"
    if text_file.is_file() and fix_tree_sizes:
        text_file.write_text(_tree_sizes_fixed(text_file.read_text()))
    if (bundle / "stage_two_lightgbm.txt").is_file():
        d = json.loads(stage_two.read_text())
        d["lightgbm"]["sha256"] = hashlib.sha256((bundle / "stage_two_lightgbm.txt").read_bytes()).hexdigest()
        stage_two.write_text(json.dumps(d))
    manifest = json.loads((bundle / "pipeline.json").read_text())
    manifest["files"] = {
        name: hashlib.sha256((bundle / name).read_bytes()).hexdigest() for name in manifest["files"]
    }
    manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    (bundle / "pipeline.json").write_text(json.dumps(manifest))
    return bundle


def _tree_field(text: str, field: str, change) -> str:
    """``text`` with the first tree's ``field`` values replaced by ``change(values)``."""
    start = text.index("Tree=0\n")
    line = re.compile(rf"^{field}=(.*)$", re.M).search(text, start)
    values = line.group(1).split()
    return text[: line.start(1)] + " ".join(change(values)) + text[line.end(1) :]


def _set(index: int, value: str):
    return lambda values: [value if i == index else v for i, v in enumerate(values)]


def _own_child(values: list[str]) -> list[str]:
    return ["0", *values[1:]]  # node 0's left child is node 0: an endless loop in LightGBM


LIGHTGBM_CASES = [
    ("leaf_value=nan", lambda t: _tree_field(t, "leaf_value", _set(0, "nan")), "not finite"),
    (
        "split_feature past the row",
        lambda t: _tree_field(t, "split_feature", _set(0, "100000")),
        "not a column",
    ),
    ("left_child -100", lambda t: _tree_field(t, "left_child", _set(0, "-100")), "not in the tree"),
    ("left_child 500 (segfault)", lambda t: _tree_field(t, "left_child", _set(0, "500")), "not in the tree"),
    ("a node its own child (endless loop)", lambda t: _tree_field(t, "left_child", _own_child), "cycle"),
    ("threshold inf", lambda t: _tree_field(t, "threshold", _set(0, "inf")), "not finite"),
    ("a categorical split", lambda t: _tree_field(t, "decision_type", _set(0, "1")), "decision_type"),
    (
        "tree_sizes edited",
        lambda t: re.sub(r"tree_sizes=(\d+)", lambda m: f"tree_sizes={int(m.group(1)) + 7}", t, count=1),
        "tree_sizes",
    ),
    (
        "num_leaves 10^9",
        lambda t: t.replace("num_leaves=", "num_leaves=1000000000#", 1).replace("#", ""),
        "num_leaves",
    ),
]


@pytest.mark.parametrize("name,edit,says", LIGHTGBM_CASES, ids=[c[0] for c in LIGHTGBM_CASES])
def test_a_forged_lightgbm_tree_is_refused_before_lightgbm_reads_it(name, edit, says, bundles, tmp_path):
    forged = tmp_path / "forged"
    shutil.copytree(bundles["lightgbm"], forged)
    text_file = forged / "stage_two_lightgbm.txt"
    text_file.write_text(edit(text_file.read_text()))
    with pytest.raises(BundleError, match=says):
        load_pipeline(rehash(forged, fix_tree_sizes=name != "tree_sizes edited"))


def _json_edit(name: str, change):
    def edit(bundle: Path) -> None:
        path = bundle / name
        d = json.loads(path.read_text())
        change(d)
        path.write_text(json.dumps(d))

    return edit


def _template(change):
    return _json_edit("template.json", change)


VALUE_CASES = [
    # (name, which bundle, edit of the copy, what the BundleError names)
    (
        "stage-two classes F and M",
        "logistic",
        _json_edit("stage_two.json", lambda d: d.update(classes=["F", "M"], classes_dtype="<U1")),
        "classes",
    ),
    (
        "stage-two classes swapped",
        "logistic",
        _json_edit("stage_two.json", lambda d: d.update(classes=[1, 0])),
        "classes",
    ),
    (
        "a logistic coefficient 1e300",
        "logistic",
        _json_edit("stage_two.json", lambda d: d["logistic"]["coef"].__setitem__(0, 1e300)),
        "coefficients",
    ),
    (
        "threshold 1e-9",
        "logistic",
        _json_edit("pipeline.json", lambda d: d.update(threshold=1e-9)),
        "threshold",
    ),
    (
        "stage two's threshold 0.999999",
        "logistic",
        _json_edit("stage_two.json", lambda d: d["params"].update(threshold=0.999999)),
        "threshold",
    ),
    (
        "preprocessing 4096 px",
        "direct",
        _json_edit("pipeline.json", lambda d: d["preprocessing"].update(resize=4096, crop=4096)),
        "preprocessing",
    ),
    ("template size Infinity", "direct", _template(lambda d: d.update(size=[float("inf"), 150])), "template"),
    ("template n_images a list", "direct", _template(lambda d: d.update(n_images=[1, 2])), "template"),
    (
        "template mirrored",
        "direct",
        _template(lambda d: d.update(landmarks=[d["landmarks"][1], d["landmarks"][0], *d["landmarks"][2:]])),
        "template",
    ),
    ("template degenerate", "direct", _template(lambda d: d.update(landmarks=[[0.5, 0.5]] * 5)), "template"),
    (
        "claims face weights for an image CNN",
        "direct",
        _json_edit(
            "pipeline.json",
            lambda d: d.update(
                backbone_weights={"backbone": "dlib_resnet", "licence": "CC0-1.0", "sha256": "0" * 64}
            ),
        ),
        "backbone_weights",
    ),
    (
        "a config nested 600 deep",
        "direct",
        _json_edit(
            "pipeline.json", lambda d: d["config"].update(nested=json.loads('{"a":' * 600 + "1" + "}" * 600))
        ),
        "config.nested",
    ),
    (
        "a forged config.backbone",
        "direct",
        _json_edit("pipeline.json", lambda d: d["config"].update(backbone="no_such_network")),
        "config.backbone",
    ),
    (
        "adapted C 1e-300",
        "direct",
        _json_edit(
            "pipeline.json",
            lambda d: d.update(
                adapted={"n_photos": 40, "n_holdout": 8, "photos_sha256": "0" * 64, "C": 1e-300}
            ),
        ),
        "adapted",
    ),
    (
        "adapted original_weight 5",
        "direct",
        _json_edit(
            "pipeline.json",
            lambda d: d.update(
                adapted={"n_photos": 40, "n_holdout": 8, "photos_sha256": "0" * 64, "original_weight": 5.0}
            ),
        ),
        "adapted",
    ),
]


@pytest.mark.parametrize("name,which,edit,says", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_a_rehashed_value_out_of_bounds_is_a_bundle_error(name, which, edit, says, bundles, tmp_path):
    forged = tmp_path / "forged"
    shutil.copytree(bundles[which], forged)
    edit(forged)
    with pytest.raises(BundleError, match=says):
        load_pipeline(rehash(forged))


def test_a_two_stage_bundle_without_its_concept_record_says_its_quality_is_unknown(bundles, tmp_path):
    forged = tmp_path / "forged"
    shutil.copytree(bundles["logistic"], forged)
    _json_edit("pipeline.json", lambda d: d.pop("concepts", None))(forged)
    with pytest.warns(UserWarning, match="concept quality"):
        pipe = load_pipeline(rehash(forged))
    assert pipe.concepts is None


def test_an_untouched_bundle_still_loads_and_its_lightgbm_answers(bundles):
    pipe = load_pipeline(rehash(bundles["lightgbm"]))  # re-hashing changes nothing by itself
    probs = np.random.default_rng(1).random((5, 39))
    assert np.isfinite(pipe.stage_two.predict_proba(probs)).all()


def test_the_write_probe_never_follows_a_planted_link(tmp_path):
    """The writability probe of output_dir and `data synth --out` is created exclusively, under a random
    name, never through a link: a link planted under the old predictable name writes nothing elsewhere."""
    import os

    from attr2gender.files import check_writable

    target = tmp_path / "elsewhere" / "victim.txt"
    target.parent.mkdir()
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / f".attr2gender-write-test-{os.getpid()}").symlink_to(target)
    check_writable(folder)
    assert not target.exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        f".attr2gender-write-test-{os.getpid()}"
    ]  # nothing left
