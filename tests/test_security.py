"""Nothing the library reads runs code, and a bundle cannot lie: planted pickles in checkpoints and caches
are never executed, and every edit to a bundle (its manifest included) is refused."""

from __future__ import annotations

import ast
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attr2gender.config import ConfigError, RunConfig
from attr2gender.data.synth import make_synthetic_celeba
from attr2gender.pipeline import Attr2GenderPipeline, BundleError, DirectGenderClassifier, load_pipeline
from attr2gender.pipeline.bundle import _canonical
from attr2gender.pipeline.cache import StageOneCache
from attr2gender.tabular import StageTwoClassifier
from attr2gender.training import AttributeModel, DirectModel, train
from conftest import tiny_config


class _Planted:
    """Unpickling this creates a file: the proof that a loader executed a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# --------------------------------------------------------------------------------------------------
# checkpoints and the stage-one cache
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synthetic_celeba(tmp_path_factory.mktemp("sec") / "celeba", n=160, seed=0, image_size=40)


def _config(root, out, **kw) -> RunConfig:
    return tiny_config(root, out, **(dict() | kw))


def test_resume_refuses_a_planted_checkpoint_without_running_it(synth_root, tmp_path):
    marker = tmp_path / "pwned"
    checkpoints = tmp_path / "runs" / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"state_dict": {}, "payload": _Planted(marker)}, checkpoints / "last.ckpt")
    with pytest.raises(ConfigError, match="never unpickles") as refused:
        train(_config(synth_root, tmp_path / "runs", resume=True))
    assert not marker.exists()
    # torch's advice to load it anyway (weights_only=False, "if you trust the source") is never relayed
    assert "weights_only=False" not in str(refused.value) and "set to `False`" not in str(refused.value)
    assert "trust" not in str(refused.value)


def test_a_real_checkpoint_resumes_with_weights_only(synth_root, tmp_path):
    train(_config(synth_root, tmp_path, epochs=1, max_steps=-1, keep_checkpoints="last"))  # resume needs last
    torch.load(
        tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True
    )  # plain tensors and containers
    resumed = train(_config(synth_root, tmp_path, epochs=2, max_steps=-1, resume=True))
    assert resumed.epochs_run == 2


@pytest.fixture(scope="module")
def two_stage():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stage_two = StageTwoClassifier().fit(rng.random((40, 39)), rng.integers(0, 2, 40))
    return Attr2GenderPipeline(
        AttributeModel(backbone="test_efficientnet", weights="none"),
        stage_two,
        32,
        num_workers=0,
        align="none",
    )


def test_planted_pickles_in_the_stage_one_cache_never_run(two_stage, synth_root, tmp_path):
    paths = sorted((Path(synth_root) / "img_align_celeba").glob("*.jpg"))[:4]
    pipe = two_stage.with_stage_two(two_stage.stage_two)
    pipe.cache_dir = tmp_path / "cache"
    expected, _ = pipe.attribute_probabilities(paths)
    assert not pipe.last_cache_hit
    cached, _ = pipe.attribute_probabilities(paths)
    assert pipe.last_cache_hit
    np.testing.assert_array_equal(cached, expected)
    assert not list((tmp_path / "cache").rglob("*.pkl"))  # nothing pickled is written

    marker = tmp_path / "pwned"
    cache = StageOneCache(tmp_path / "cache")
    key, _ = cache.key(pipe.model_hash, pipe.preprocessing, paths)
    planted = np.empty(1, dtype=object)
    planted[0] = _Planted(marker)
    with open(cache.directory / f"{key}.npy", "wb") as f:
        np.save(f, planted, allow_pickle=True)
    (tmp_path / "cache" / "stage_one" / "output.pkl").write_bytes(
        pickle.dumps(_Planted(marker))
    )  # joblib's name
    with pytest.warns(UserWarning, match="ignoring unreadable cache entry"):
        again, _ = pipe.attribute_probabilities(paths)
    assert not marker.exists() and not pipe.last_cache_hit
    np.testing.assert_allclose(again, expected)
    pipe.attribute_probabilities(paths)
    assert pipe.last_cache_hit  # the entry was rewritten as plain numbers


def _calls(name: str):
    """(file, line, call) for every call of ``name`` (e.g. ``torch.load``) in the library's source."""
    src = Path(__file__).resolve().parents[1] / "src" / "attr2gender"
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.name, node.lineno, node


def _keyword(call: ast.Call, name: str):
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == name), None)


def test_every_torch_load_says_weights_only_true():
    """Read through the syntax tree, not grepped: a bare ``torch.load(p)`` unpickles anything on the torch
    versions pyproject allows (before 2.6 the default was weights_only=False)."""
    calls = list(_calls("torch.load"))
    assert calls  # the check looks at real calls
    unsafe = [f"{f}:{line}" for f, line, call in calls if _keyword(call, "weights_only") is not True]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


def test_numpy_never_loads_pickles_and_nothing_imports_a_pickle_loader():
    unsafe = [f"{f}:{line}" for f, line, call in _calls("np.load") if _keyword(call, "allow_pickle")]
    assert not unsafe, f"np.load with allow_pickle: {unsafe}"
    src = Path(__file__).resolve().parents[1] / "src" / "attr2gender"
    loaders = {
        "pickle.load",
        "pickle.loads",
        "joblib.load",
        "cloudpickle.load",
        "dill.load",
        "torch.jit.load",
    }
    found = [f"{f}:{line} {name}" for name in loaders for f, line, _ in _calls(name)]
    imported = [
        f"{p.name}: {alias.name}"
        for p in src.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if (getattr(node, "module", None) or alias.name).split(".")[0] in ("joblib", "cloudpickle", "dill")
    ]
    assert not found and not imported, found + imported


# --------------------------------------------------------------------------------------------------
# a bundle that cannot lie
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(two_stage, tmp_path_factory):
    return two_stage.save(tmp_path_factory.mktemp("bundle") / "b", onnx=False)


@pytest.fixture
def copy(bundle, tmp_path):
    target = tmp_path / "b"
    shutil.copytree(bundle, target)
    return target


def _edit(directory: Path, change, rehash: bool = True) -> None:
    """Edit pipeline.json; with ``rehash`` also recompute its own hash, as a careful forger would."""
    path = directory / "pipeline.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    if rehash:
        manifest["manifest_sha256"] = hashlib.sha256(_canonical(manifest)).hexdigest()
    path.write_text(json.dumps(manifest))


def test_an_edited_threshold_is_refused(copy):
    _edit(copy, lambda m: m.update(threshold=0.99), rehash=False)
    with pytest.raises(BundleError, match="pipeline.json was modified after saving"):
        load_pipeline(copy)


def test_an_absurd_preprocessing_is_refused_even_with_a_matching_hash(copy):
    _edit(copy, lambda m: m["preprocessing"].update(resize=20_000))
    with pytest.raises(BundleError, match=r"preprocessing.resize 20000 must be an integer from 16 to 1170"):
        load_pipeline(copy)


def test_deleting_a_files_entry_does_not_turn_its_check_off(copy):
    _edit(copy, lambda m: m["files"].pop("model.safetensors"))
    with pytest.raises(BundleError, match=r"does not list \['model.safetensors'\]"):
        load_pipeline(copy)


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/proc/self/environ", "..", "sub/model.json", "..\\evil", "extra.bin"]
)
def test_file_names_outside_the_bundle_are_refused_without_reading_them(copy, name):
    def add(m):
        m["files"][name] = "0" * 64

    _edit(copy, add)
    with pytest.raises(BundleError) as info:
        load_pipeline(copy)
    assert (
        repr(name) in str(info.value)
        and "SHA-256" not in str(info.value)
        and "missing" not in str(info.value)
    )


def test_the_error_does_not_tell_whether_an_outside_file_exists(copy):
    (copy.parent / "secret.txt").write_text("x")
    messages = []
    for name in ("../secret.txt", "../no-such-file.txt"):
        _edit(copy, lambda m, name=name: m["files"].update({name: "0" * 64}))
        with pytest.raises(BundleError) as info:
            load_pipeline(copy)
        messages.append(str(info.value).replace(name, "NAME"))
        _edit(copy, lambda m, name=name: m["files"].pop(name))
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    "change,field",
    [
        (lambda m: m.update(threshold="high"), "threshold"),
        (lambda m: m.update(kind="gan"), "kind"),
        (lambda m: m.pop("preprocessing"), "preprocessing"),
        (lambda m: m["preprocessing"].update(mean=[0.5]), "preprocessing.mean"),
        (lambda m: m["preprocessing"].update(std=[0, 1, 1]), "preprocessing.std"),
        (lambda m: m.update(files=["model.json"]), "files"),
        (lambda m: m.update(metrics=[1, 2]), "metrics"),
        (lambda m: m.update(surprise=1), "fields"),
        (lambda m: m.pop("stage_two"), "stage_two.model"),
    ],
)
def test_malformed_manifest_values_give_a_bundle_error(copy, change, field):
    _edit(copy, change)
    with pytest.raises(BundleError, match=field.replace(".", r"\.")):
        load_pipeline(copy)


def test_a_manifest_that_is_not_an_object_or_an_old_format(copy):
    (copy / "pipeline.json").write_text("[1, 2, 3]")
    with pytest.raises(BundleError, match="JSON object"):
        load_pipeline(copy)
    (copy / "pipeline.json").write_text(json.dumps({"format": 1, "library_version": "0.1.0"}))
    with pytest.raises(BundleError, match="format 1"):
        load_pipeline(copy)


def test_a_tampered_weights_file_and_a_wrong_model_kind(copy, tmp_path):
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.safetensors was modified"):
        load_pipeline(copy)
    torch.manual_seed(0)
    direct = DirectGenderClassifier(DirectModel(backbone="test_efficientnet", weights="none"), 32).save(
        tmp_path / "d", onnx=False
    )
    _edit(direct, lambda m: m.update(kind="two_stage", stage_two={"model": "logistic"}, attribute_names=[]))
    with pytest.raises(BundleError, match="stage_two.json"):
        load_pipeline(direct)
